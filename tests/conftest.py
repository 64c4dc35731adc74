import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "planar3d",
    deadline=None,
    max_examples=int(os.environ.get("PLANAR3D_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("planar3d")

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


def pytest_configure(config):
    """Under pytest-xdist each worker gets one torch thread: two workers on two cores with two
    threads each oversubscribe the machine (measured 5-10x slower on small models)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)

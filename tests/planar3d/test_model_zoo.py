"""Coverage sweep: every timm family and every torchvision CNN classifier, in every mode.

Random weights (made informative by `randomize`), eval mode, batch 2, depth 3, the smallest
input the 2D model accepts. A family either converts and satisfies its mode's properties, or
`convert` raises UnsupportedModuleError: EXPECTED_UNSUPPORTED lists those, and the README's
coverage table (scripts/coverage_table.py) is built from the results.
"""

from pathlib import Path

import pytest
import timm
import torchvision
from token_families import small_token_model
from zoo import check_model, timm_families

# Families that convert() refuses with UnsupportedModuleError (the coverage table shows each
# reason): none of the 115 since token models (vision transformers, MLP-mixers) convert.
EXPECTED_UNSUPPORTED: set[str] = set()

# Built with fewer blocks than the registry's smallest model (the same block code), so that the
# sweep fits CI's 2 cores and 24 GiB: deepseek_vit_412m alone took over 15 minutes. The token
# families' small configurations are in token_families.py.
SMALLER = {"deepseek_vit": {"depth": 2}}

TORCHVISION = dict(
    line.split() for line in
    (Path(__file__).with_name("torchvision_families.txt")).read_text().splitlines()
    if line and not line.startswith("#"))


def _assert_outcome(record: dict, family: str) -> None:
    planar = record["modes"]["planar"]
    if family in EXPECTED_UNSUPPORTED:
        assert planar["status"] == "unsupported", f"{family} now converts: update the list"
        return
    for mode, entry in record["modes"].items():
        assert entry["status"] == "exact", f"{mode}: {entry}"


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(TORCHVISION))
def test_torchvision_family(family):
    name = TORCHVISION[family]
    record = check_model("torchvision", family, name,
                         lambda: getattr(torchvision.models, name)(weights=None))
    _assert_outcome(record, family)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(timm_families()))
def test_timm_family(family):
    name, kwargs = timm_families()[family], SMALLER.get(family, {})
    label = name + "".join(f" ({k}={v})" for k, v in kwargs.items())
    label, build = small_token_model(family, name) or (
        label, lambda: timm.create_model(name, pretrained=False, **kwargs))
    record = check_model("timm", family, label, build)
    _assert_outcome(record, family)

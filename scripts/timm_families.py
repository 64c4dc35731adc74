"""Print the smallest model of every timm registry module (the coverage sweep's timm list).

Run:  .venv/bin/python scripts/timm_families.py > tests/planar3d/timm_families.txt
Models are built on the meta device, so this takes a couple of minutes and no memory.
"""

from __future__ import annotations

import collections
import warnings

import timm
import torch
from timm.models._registry import _model_to_module


def smallest_per_family() -> dict[str, str]:
    families: dict[str, list[str]] = collections.defaultdict(list)
    for name in timm.list_models():
        families[_model_to_module[name]].append(name)
    best: dict[str, str] = {}
    for family, names in sorted(families.items()):
        sizes = []
        for name in names:
            try:
                with torch.device("meta"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = timm.create_model(name)
            except Exception:  # a model needing extra packages or arguments: skip it
                continue
            sizes.append((sum(p.numel() for p in model.parameters()), name))
        if sizes:
            best[family] = min(sizes)[1]
    return best


if __name__ == "__main__":
    version = timm.__version__
    print(f"# smallest model per timm {version} registry module (scripts/timm_families.py)")
    for family, name in smallest_per_family().items():
        print(family, name)

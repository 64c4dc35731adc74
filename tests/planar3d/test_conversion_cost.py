"""What a conversion costs, counted in forward passes of the network (not in seconds: the
machine is shared).

A forward pass is counted as the calls of the network's leaf modules (layers without children)
that one 2D forward on the example makes; probes of single modules count for the share of the
network they run. Every check stays; a network without repairs is converted in at most
MAX_PASSES passes: the record, the probes, and the end-to-end check (its 2D reference once per
mode, its eval run shared with the root's probe where the inputs are the same).
"""

import pytest
import timm
import torch
import torchvision
from torch import nn

import planar3d

MAX_PASSES = 6


def forward_passes(model: nn.Module, example: torch.Tensor) -> float:
    """Leaf-module calls during `planar3d.convert(model, example_input=example)`, in units of
    one 2D forward on the example."""
    calls = [0]

    def count(module, args):
        if next(module.children(), None) is None:
            calls[0] += 1

    handle = nn.modules.module.register_module_forward_pre_hook(count)
    try:
        planar3d.convert(model, example_input=example)
        during = calls[0]
        calls[0] = 0
        with torch.no_grad():
            model(example)
    finally:
        handle.remove()
    return during / calls[0]


@pytest.mark.parametrize("build", [
    lambda: torchvision.models.resnet18(), lambda: timm.create_model("resnet18"),
    lambda: timm.create_model("efficientnet_b0"),
    lambda: torchvision.models.mobilenet_v3_small()],
    ids=["tv_resnet18", "timm_resnet18", "timm_efficientnet_b0", "tv_mobilenet_v3_small"])
def test_a_network_without_repairs_converts_in_few_passes(build):
    torch.manual_seed(0)
    model = build().eval()
    example = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    passes = forward_passes(model, example)
    assert passes <= MAX_PASSES, f"{passes:.1f} forward passes"

"""Thickening: give an already converted (and possibly fine-tuned) planar network depth kernels.

"Train planar first, then let the network learn depth": every planar convolution with a spatial
kernel becomes a `ThickConv3d` of depth k built from its *current* weights, by centre
initialisation (outputs kept, docs/design.md P3) or I3D inflation. Rewritten modules' functional
convolutions switch too. Folded modules run their 2D forward per slice and keep planar kernels;
the report lists them. A token model can also be given depth layers (a depth position
embedding, divided depth attention whose q/k/v start from the current spatial ones), at zero.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ._axis import drop, parse_axis
from ._mode_kernels import ModeKernels, spatial
from ._rewrite.forward import set_kernels
from ._state import state, type_name
from ._tree import rebuild
from .context import DEPTH_LAYERS, ConversionContext, DepthLayer
from .kernels import kernel_to_2d
from .layers.fold import is_folded
from .layers.planar_conv import PlanarConv3d
from .layers.thick_conv import THICK_INITS, ThickInit
from .report import conversion_report
from .tokens.apply import add_depth
from .tokens.sites import DepthSites

__all__ = ["planar_to_2d", "thicken"]


def planar_to_2d(conv: PlanarConv3d) -> nn.Conv2d:
    """The 2D convolution a `PlanarConv3d` computes on each slice (its current weights).

    Raises:
        ValueError: if the layer strides along its planar axis (no 2D equivalent).
    """
    a = conv.axis
    if conv.stride[a - 2] != 1:
        raise ValueError(f"{conv} strides along its planar axis; it has no 2D equivalent")
    padding = conv.padding if isinstance(conv.padding, str) else drop(conv.padding, a)
    layer = nn.Conv2d(
        conv.in_channels, conv.out_channels, drop(conv.kernel_size, a), drop(conv.stride, a),
        padding, drop(conv.dilation, a), conv.groups, conv.bias is not None, conv.padding_mode,
        device="meta",
    )
    layer.weight = nn.Parameter(kernel_to_2d(conv.weight.detach(), axis=a),
                                conv.weight.requires_grad)
    if conv.bias is not None:
        layer.bias = conv.bias
    return layer.train(conv.training)


def thicken(
    model: nn.Module, *, init: ThickInit = "center", kernel_depth: int = 3,
    depth_layers: Sequence[DepthLayer] = (), inplace: bool = False
) -> nn.Module:
    """Turn the planar kernels of a converted network into depth-`kernel_depth` kernels.

    Args:
        model: a network produced by `planar3d.convert(..., mode="planar")`.
        init: "center" (outputs unchanged) or "inflate" (I3D: kernel / k repeated k times).
        kernel_depth: kernel size along the planar axis (odd for "center").
        depth_layers: layers that learn depth to add to a token model, at zero (as for
            `convert`): "position", "attention".
        inplace: change `model` instead of a deep copy.
    Returns:
        The thickened network; its conversion report lists the thickened layers and the added
        depth layers.
    Raises:
        ValueError: for an unknown init, an invalid depth or depth layer, or a model not
            produced by convert.
        UnsupportedModuleError: a depth layer has no site in the network (see `convert`).
    """
    report = conversion_report(model)
    layers = tuple(dict.fromkeys(depth_layers))
    if isinstance(depth_layers, str) or any(layer not in DEPTH_LAYERS for layer in layers):
        raise ValueError(f"depth_layers must be a sequence of {DEPTH_LAYERS}, got "
                         f"{depth_layers!r}")
    if init not in THICK_INITS:
        raise ValueError(f"init must be one of {THICK_INITS}, got {init!r}")
    if not isinstance(kernel_depth, int) or kernel_depth < 1 or (
        init == "center" and kernel_depth % 2 == 0
    ):
        raise ValueError(
            f"kernel_depth must be a positive int (odd for init='center'), got {kernel_depth!r}"
        )
    if not inplace:
        model = copy.deepcopy(model)
        report = conversion_report(model)
    kernels = ModeKernels(init, kernel_depth)

    def visit(module: nn.Module, path: str) -> nn.Module | None:
        if is_folded(module):
            if any(isinstance(m, nn.Conv2d) and spatial(m.kernel_size) for m in module.modules()):
                report.add(path, type_name(module), "folded",
                           "runs per slice: its kernels stay planar after thickening")
            return module
        if isinstance(module, PlanarConv3d) and spatial(module.kernel_size):
            depth_stride = module.stride[module.axis - 2]
            base = copy.copy(module)
            base.stride = tuple(1 if i == module.axis - 2 else s
                                for i, s in enumerate(module.stride))
            with torch.no_grad():
                new = kernels.layer(planar_to_2d(base), axis=module.axis,
                                    depth_stride=depth_stride)
            new._forward_hooks, new._forward_pre_hooks = module._forward_hooks, (
                module._forward_pre_hooks)
            report.add(path, "Conv2d", "swapped", f"ThickConv3d ({init}, thickened)")
            return new
        set_kernels(module, kernels)
        return None

    model = rebuild(model, visit)
    if layers:
        sites = state(model).depth_sites
        ctx = ConversionContext(mode=init, axis=parse_axis(report.axis),
                                kernel_depth=kernel_depth, depth_layers=layers)
        add_depth(model, sites=sites or DepthSites(), ctx=ctx, source=model,
                  decide=report.add)
    return model

"""The naive 2D-to-3D module swap, the baseline that generic converters give users.

Conv2d -> Conv3d with a (1, kh, kw) kernel, BatchNorm2d -> BatchNorm3d, MaxPool2d/AvgPool2d ->
3D pools with window 1 along depth, AdaptiveAvgPool2d/AdaptiveMaxPool2d (h, w) -> 3D adaptive
pools of output (1, h, w) (a classifier's global pool then pools depth too). Modules are matched
with `isinstance`, as such converters do, so a subclass that overrides `forward` (timm's
BatchNormAct2d, Conv2dSame) loses its own behaviour, and functional 2D code in a `forward` is left
as it is: the swapped network may fail or silently compute something else. Not part of planar3d.
"""

from __future__ import annotations

import copy

from torch import nn


def _planar(value) -> tuple:
    pair = value if isinstance(value, tuple) else (value, value)
    return (1, *pair)


def _zero_depth(value) -> tuple:
    pair = value if isinstance(value, tuple) else (value, value)
    return (0, *pair)


def _swap_conv(m: nn.Conv2d) -> nn.Conv3d:
    new = nn.Conv3d(
        m.in_channels, m.out_channels, _planar(m.kernel_size), _planar(m.stride),
        m.padding if isinstance(m.padding, str) else _zero_depth(m.padding),
        _planar(m.dilation), m.groups, m.bias is not None, m.padding_mode,
    )
    new.weight = nn.Parameter(m.weight.detach().unsqueeze(2), m.weight.requires_grad)
    if m.bias is not None:
        new.bias = m.bias
    return new


def _swap_bn(m: nn.BatchNorm2d) -> nn.BatchNorm3d:
    new = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    new.load_state_dict(m.state_dict())
    return new


def _swap(m: nn.Module) -> nn.Module | None:
    if isinstance(m, nn.Conv2d):
        return _swap_conv(m)
    if isinstance(m, nn.BatchNorm2d):
        return _swap_bn(m)
    if isinstance(m, nn.MaxPool2d):
        return nn.MaxPool3d(_planar(m.kernel_size), _planar(m.stride), _zero_depth(m.padding),
                            _planar(m.dilation), m.return_indices, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return nn.AvgPool3d(_planar(m.kernel_size), _planar(m.stride), _zero_depth(m.padding),
                            m.ceil_mode, m.count_include_pad, m.divisor_override)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(_planar(m.output_size))
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(_planar(m.output_size), m.return_indices)
    return None


def naive_swap(model: nn.Module) -> nn.Module:
    """A copy of `model` with its 2D layers swapped for 3D ones (no checks, no folding).

    Args:
        model: a 2D network.
    Returns:
        The swapped copy, for (N, C, D, H, W) volumes; train/eval flags are kept.
    """
    model = copy.deepcopy(model)

    def walk(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            new = _swap(child)
            if new is None:
                walk(child)
            else:
                setattr(module, name, new.train(child.training))

    walk(model)
    return model

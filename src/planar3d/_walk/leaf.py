"""A module whose exact type has a converter: replaced by the converter's result.

planar3d's own converters are called in planar terms (the mode pass gives the mode's kernels
later); a user's converter gets the real settings, and its result is probed against the 2D
layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .._judge.probe import probe_constant, probe_slices
from .._record import CallRecord, is_standard
from ..errors import UnsupportedModuleError
from ..layers.fold import is_folded, is_slice_wise
from ..layers.planar_pool import HeadAdaptiveAvgPool2d, HeadAdaptiveMaxPool2d
from ..registry import Converter, is_builtin
from .session import Session, short

__all__ = ["HEAD_POOLS", "computes_its_weights", "convert_leaf"]

# the head pools, by the kind of site they are for the reference
HEAD_POOLS = {HeadAdaptiveAvgPool2d: "mean", HeadAdaptiveMaxPool2d: "amax"}


def computes_its_weights(module: nn.Module) -> bool:
    """Whether the module's weights are computed at each call, by a parametrization or by the
    forward pre-hook of `torch.nn.utils.spectral_norm` / `weight_norm`."""
    if parametrize.is_parametrized(module):
        return True
    hook_types = tuple(t for t in (
        getattr(torch.nn.utils.spectral_norm, "SpectralNorm", None),
        getattr(torch.nn.utils.weight_norm, "WeightNorm", None),
    ) if t is not None)
    return any(isinstance(hook, hook_types) for hook in module._forward_pre_hooks.values())


def convert_leaf(s: Session, module: nn.Module, path: str, region: str, in_head: bool,
                 converter: Converter, record: CallRecord | None) -> nn.Module:
    """The converter's result for `module` (region "body" or "head"; `in_head`: its parent is
    in the head, where an adaptive pool is the head pool)."""
    builtin = is_builtin(type(module), converter)
    ctx = s.ctx.replace(region=region, in_head=in_head, path=path)
    if builtin:  # the structure is decided in planar terms; the mode pass applies mode and depth
        ctx = ctx.replace(mode="planar", depth="keep")
    name = type(module).__name__  # before the converter, which may change it in place
    new = converter(module, ctx)
    if not isinstance(new, nn.Module):
        raise TypeError(
            f"the converter for {type(module).__qualname__} returned "
            f"{type(new).__name__}, not an nn.Module"
        )
    if not builtin and record is not None:
        _check_user_converter(s, new, path, module, region, s.records.in_eval(record, path))
    if type(new) in HEAD_POOLS:
        s.plan.sites[path] = HEAD_POOLS[type(new)]
    s.plan.decide(path, name, *_describe(module, new))
    return new


def _describe(old: nn.Module, new: nn.Module) -> tuple[str, str]:
    if is_folded(new):
        return ("slice-wise" if is_slice_wise(new) else "folded"), ""
    if new is old:
        return "kept", ""
    if type(new) in HEAD_POOLS:
        return "head pool", type(new).__name__
    return "swapped", type(new).__name__


def _check_user_converter(s: Session, new: nn.Module, path: str, old: nn.Module, region: str,
                          record: CallRecord) -> None:
    new.eval()
    if not is_standard((record.args, record.kwargs), s.batch):
        return
    planar = s.ctx.depth == "keep" and s.ctx.mode == "planar"
    if region == "body" and planar and is_standard(record.output, s.batch):
        result = probe_slices(new, record, axis=s.axis, volumes=s.volumes, loose=True)
    else:
        result = probe_constant(new, record, axis=s.axis, loose=True)
    if not result.ok:
        raise UnsupportedModuleError(
            path, type(old).__name__,
            f"the converter registered for it returns a {type(new).__name__} that does not "
            f"reproduce the 2D layer ({short(result.reason)})",
            "fix the converter: on a volume the 3D layer must equal the 2D layer slice by "
            "slice (planar) or on depth-constant input (other modes)",
        )

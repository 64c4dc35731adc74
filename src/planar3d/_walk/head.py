"""A head module with its own forward: kept, rewritten or run slice-wise.

In a classifier's head, the first global pool pools the planar axis away. A head module is kept
as it is if a probe on volumes of equal slices (P2, `_judge.probe`) shows that it reproduces
the 2D network and pools the planar axis; one that does not pool is run slice-wise; one that
pools a set of positions (attention pooling) runs on the positions of all slices
(`slice_code.try_all_slices`); otherwise its functional pooling is rewritten as the head pool
(`_rewrite`), or its code runs on the slices with the slices merged at its pool
(`slice_code.slice_code`), and if nothing reproduces the 2D network, conversion is refused.
"""

from __future__ import annotations

import torch
from torch import nn

from .._judge.probe import ProbeResult, probe_constant
from .._record import CallRecord, is_standard
from .._rewrite.forward import rewrite_head_forward, unrewrite
from .._tree import join
from ..errors import UnsupportedModuleError
from ..layers._swap import deepcopy_module
from ..layers.fold import fold_module, is_folded
from ..layers.planar_conv import PlanarConv3d, PlanarConvTranspose3d
from ..layers.planar_pool import (
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarMaxPool3d,
)
from .fold import fold
from .session import Session, short
from .slice_code import slice_code, try_all_slices

__all__ = ["settle_head"]

# converted layers that accept volumes only
_VOLUME_ONLY = (PlanarConv3d, PlanarConvTranspose3d, PlanarMaxPool3d, PlanarAvgPool3d,
                PlanarAdaptiveAvgPool3d, PlanarAdaptiveMaxPool3d, nn.BatchNorm3d)


def settle_head(s: Session, module: nn.Module, path: str, record: CallRecord, *, note: str
                ) -> nn.Module:
    """What a head module with its own forward becomes.

    Args:
        record: its recorded call, in eval mode.
        note: said of its record in the report ("" or `session.TRAIN_ONLY`).
    Raises:
        UnsupportedModuleError: when neither as it is, nor rewritten, nor slice by slice it
            reproduces the 2D network.
    """
    name = type(module).__name__
    if not is_standard((record.args, record.kwargs), s.batch):
        s.plan.decide(path, name, "kept", "after the head pool (pooled inputs)")
        return module
    result = _probe_head(s, module, path, record, as_is=True)
    if result.ok and result.merged:
        if not s.plan.sites_below(path):
            s.plan.sites[path] = "as-is"
        s.plan.decide(path, name, "verified", "contains the head pool" + note)
        return module
    if result.ok:
        return fold(s, module, path, record, "no head pool inside", passthrough=True)
    pooled = try_all_slices(s, module, path, record)
    if pooled is not None:
        return pooled
    reasons = [f"as it is: {short(result.reason)}"]
    if not result.decides:
        try:
            touched = rewrite_head_forward(module, axis=s.axis, path=path)
        except UnsupportedModuleError as error:
            reasons.append(f"rewritten: {short(error.reason)}")
        else:
            rewritten = _probe_head(s, module, path, record)
            if rewritten.ok and rewritten.merged:
                ops = ", ".join(sorted(set(touched)))
                s.plan.sites[path] = "code"
                s.plan.decide(path, name, "head rewritten", f"guarded calls: {short(ops, 120)}")
                return module
            unrewrite(module)
            reasons.append(f"rewritten: {short(rewritten.reason)}")
    try:
        return fold(s, module, path, record, "; ".join(reasons), passthrough=True)
    except UnsupportedModuleError as error:
        reasons.append(f"slice by slice: {short(error.reason)}")
    candidate = slice_code(s, module, path, record, head=True, reason=reasons[0],
                           probe=lambda c: _merging(_probe_head(s, c, path, record)))
    if candidate is not None:
        return candidate
    reasons.append("its code on the slices, the slices merged at its pool: "
                   "does not reproduce the 2D head on equal slices")
    raise UnsupportedModuleError(
        path, name,
        "no exact 3D version was found for this head module (" + "; ".join(reasons) + ")",
        f"register a converter for {name} (planar3d.register_converter), or convert "
        f"the feature extractor without its head (e.g. timm features_only=True or "
        f"num_classes=0, global_pool='')",
    )


def _merging(result: ProbeResult) -> ProbeResult:
    """A probe of a head that must pool the planar axis away: failed if it did not."""
    if result.ok and not result.merged:
        return ProbeResult(False, "it does not pool the planar axis")
    return result


def _probe_head(s: Session, module: nn.Module, path: str, record: CallRecord,
                as_is: bool = False) -> ProbeResult:
    """P2 probe of a head module. Layers that receive already pooled 2D tensors (they come
    after the head pool, as an auxiliary head's convolutions after its adaptive pool) are
    found on the way and made slice-wise 2D layers, and the probe runs again.

    `as_is`: the module runs its own 2D code on volumes, which is watched (see _judge.probe)."""
    offenders: list[str] = []
    source = s.source(path) if as_is else None

    def spot(name):
        def hook(layer, args):
            if args and isinstance(args[0], torch.Tensor) and args[0].dim() != 5:
                offenders.append(name)
        return hook

    while True:
        offenders.clear()
        handles = [m.register_forward_pre_hook(spot(n)) for n, m in module.named_modules()
                   if n and isinstance(m, _VOLUME_ONLY) and not is_folded(m)]
        try:
            result = probe_constant(module, record, axis=s.axis, loose=True, source=source)
        finally:
            for handle in handles:
                handle.remove()
        if not offenders:
            return result
        for name in dict.fromkeys(offenders):
            full = join(path, name)
            original = s.source(full)
            layer = fold_module(deepcopy_module(original), axis=s.axis, passthrough=True)
            module.set_submodule(name, layer.eval())
            s.plan.decide(full, type(original).__name__, "slice-wise",
                          "after the head pool: stays a 2D layer")

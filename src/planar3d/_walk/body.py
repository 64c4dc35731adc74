"""A body module with its own forward: kept, mended, rewritten or folded.

Kept as it is (its children converted) if a probe shows that this reproduces the 2D network on
its recorded call, P0 on volumes of distinct slices (`_judge.probe`); a module whose inputs or
outputs are not all feature maps is watched instead and left to the end-to-end check. A failed
probe is first traced to a descendant that no probe could check alone, which is folded
(`mend`); otherwise a module holding spatial kernels gets its functional code rewritten per
slice (`_rewrite`) or runs its own code on the slices with its children on volumes
(`slice_code`), and anything else is folded.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import replace

import torch
from torch import nn

from .._judge.network import localize
from .._judge.probe import ProbeResult, probe_slices, watch_own_code
from .._judge.reference import Reference
from .._mode_kernels import spatial
from .._modes import train_mode
from .._record import CallRecord, is_standard
from .._rewrite.forward import rewrite_body_forward, unrewrite
from .._state import type_name
from .._tree import join
from ..errors import UnsupportedModuleError
from ..layers.fold import is_folded
from .fold import fold
from .session import Session, short
from .slice_code import slice_code

__all__ = ["probe_body", "settle_body"]

# how many descendants a failed probe may fold before the module itself is rewritten or folded
MAX_MENDS = 4


def settle_body(s: Session, module: nn.Module, path: str, record: CallRecord, *, mixed: bool,
                note: str) -> nn.Module:
    """What a module of the body (or a mixed one) with its own forward becomes.

    Args:
        record: its recorded call, in eval mode.
        mixed: it returns feature maps and pooled tensors.
        note: said of its record in the report ("" or `session.TRAIN_ONLY`).
    """
    name = type(module).__name__
    standard_in = is_standard((record.args, record.kwargs), s.batch)
    if mixed or not (standard_in and is_standard(record.output, s.batch)):
        problem = watch_own_code(module, record, axis=s.axis, volumes=s.volumes, batch=s.batch)
        if problem and not mixed:
            return fold(s, module, path, record, problem, passthrough=False)
        if problem:
            raise UnsupportedModuleError(
                path, name, problem,
                f"register a converter for {name} (planar3d.register_converter)")
        kind = ("returns feature maps and pooled tensors" if mixed
                else "takes or returns other tensors than feature maps")
        s.plan.unchecked.add(path)
        s.plan.decide(path, name, "verified", f"{kind}: checked end to end" + note)
        return module
    result = probe_body(s, module, path, record, as_is=True)
    if not result.ok and not result.decides and s.plan.unchecked_below(path):
        result = _mend(s, module, path, record, result)
    if result.ok:
        s.plan.decide(path, name, "verified", note.strip(" ()"))
        return module
    if not result.decides and _has_spatial_kernels(s, path):
        if _rewrite(s, module, path, record):
            return module
        candidate = slice_code(s, module, path, record, head=False, reason=result.reason,
                               probe=lambda c: probe_body(s, c, path, record))
        if candidate is not None:
            return candidate
    return fold(s, module, path, record, result.reason, passthrough=False)


@functools.cache
def _reads_training(cls: type) -> bool:
    """Whether a class's own code reads `training` (its forward may differ in train mode)."""
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        try:
            if "training" in inspect.getsource(klass):
                return True
        except (OSError, TypeError):
            return True
    return False


def probe_body(s: Session, module: nn.Module, path: str, record: CallRecord,
               as_is: bool = False) -> ProbeResult:
    """P0 in eval mode, and in train mode too when the module's code reads `training`.

    `as_is`: the module runs its own 2D code on volumes, which is watched (see _judge.probe)."""
    source = s.source(path)
    watched = source if as_is else None
    result = probe_slices(module, record, axis=s.axis, volumes=s.volumes, source=watched)
    if not result.ok or not _reads_training(type(module)):
        return result
    with train_mode(source), torch.no_grad():
        args, kwargs = record.inputs()
        output = source(*args, **kwargs)
    trained = replace(record, output=output)
    result = probe_slices(module, trained, axis=s.axis, volumes=s.volumes, training=True,
                          source=watched)
    if not result.ok:
        result.reason = f"in train mode: {result.reason}"
    return result


def _mend(s: Session, module: nn.Module, path: str, record: CallRecord, result: ProbeResult
          ) -> ProbeResult:
    """When a module's own forward fails its probe because of a descendant that no probe
    could check alone (its inputs or outputs are not all feature maps), fold that
    descendant and probe again; the result of the last probe."""
    for _ in range(MAX_MENDS):
        training = result.reason.startswith("in train mode")
        reference = Reference(s.source(path), s.volumes)
        divergence = localize(reference, module, record.inputs(), axis=s.axis,
                              training=training)
        if divergence is None or not divergence.path:
            return result
        inner = divergence.path
        if divergence.inputs_differ:
            inner = inner.rpartition(".")[0]
        full = join(path, inner)
        target = module.get_submodule(inner) if inner else module
        if not inner or s.plan.region(full) != "body" or is_folded(target):
            return result
        folded = fold(s, target, full, s.records.at(full),
                      f"{type_name(target)} inside {type(module).__name__} "
                      f"diverged on its probe: {short(divergence.reason, 100)}",
                      passthrough=False)
        module.set_submodule(inner, folded)
        result = probe_body(s, module, path, record, as_is=True)
        if result.ok or result.decides:
            return result
    return result


def _has_spatial_kernels(s: Session, path: str) -> bool:
    """Whether folding would hide convolutions that other modes (or thickening) change."""
    return any(isinstance(m, nn.Conv2d) and spatial(m.kernel_size)
               for m in s.source(path).modules())


def _rewrite(s: Session, module: nn.Module, path: str, record: CallRecord) -> bool:
    """Per-slice meaning for its functional code while its children stay 3D (P0-checked)."""
    name = type(module).__name__
    try:
        touched = rewrite_body_forward(module, axis=s.axis, path=path)
    except Exception:
        unrewrite(module)
        return False
    result = probe_body(s, module, path, record)
    if not result.ok:
        unrewrite(module)
        return False
    ops = ", ".join(sorted(set(touched)))
    s.plan.decide(path, name, "rewritten",
                  f"per-slice functional code: {short(ops, 120)}")
    return True

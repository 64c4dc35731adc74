"""Folding as a decision: a module runs its 2D forward on the slices (exact by construction),
checked on its recorded call where it has one."""

from __future__ import annotations

from torch import nn

from .._judge.probe import probe_constant, probe_slices
from .._record import CallRecord, is_standard
from ..errors import UnsupportedModuleError
from ..layers._swap import deepcopy_module
from ..layers.fold import fold_module
from .session import Session, short

__all__ = ["fold"]


def fold(s: Session, module: nn.Module, path: str, record: CallRecord | None, reason: str, *,
         passthrough: bool) -> nn.Module:
    """A folded copy of the 2D module at `path` to put in `module`'s place (slice-wise with
    `passthrough`: a head layer that also runs already pooled inputs as they are); the modules
    inside it are forgotten by the plan.

    Raises:
        UnsupportedModuleError: when even run slice by slice it does not reproduce its record
            (a module that is not deterministic in eval mode).
    """
    name = type(module).__name__
    folded = fold_module(deepcopy_module(s.source(path)), axis=s.axis, passthrough=passthrough)
    folded.train(module.training)
    if record is not None and is_standard((record.args, record.kwargs), s.batch):
        folded.eval()
        if passthrough:
            check = probe_constant(folded, record, axis=s.axis, loose=True)
            ok = check.ok and not check.merged
        elif is_standard(record.output, s.batch):
            check = probe_slices(folded, record, axis=s.axis, volumes=s.volumes, loose=True)
            ok = check.ok
        else:
            check, ok = None, True
        if not ok:
            raise UnsupportedModuleError(
                path, name,
                "even run slice by slice it does not reproduce its 2D output "
                f"({short(check.reason) or 'it pools the planar axis'})",
                "make the module deterministic in eval mode, or register a converter for it",
            )
    s.plan.forget_below(path)
    s.plan.decide(path, name, "slice-wise" if passthrough else "folded", short(reason))
    return folded

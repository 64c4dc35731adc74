"""After the end-to-end check: a divergence mended where the walk can, else refused.

A body module found diverging is folded; a mixed module (feature maps and pooled outputs) gets
its functional pooling rewritten as the head pool, once. Anything else is refused with an error
that names the module whose code made the divergence.
"""

from __future__ import annotations

from torch import nn

from .._judge.network import Divergence
from .._rewrite.forward import is_rewritten, rewrite_head_forward
from .._state import type_name
from ..errors import UnsupportedModuleError
from ..layers.fold import is_folded
from .fold import fold
from .session import Session, short

__all__ = ["culprit", "refusal", "repair"]


def culprit(divergence: Divergence) -> str:
    """The module whose code made the divergence: the one named, or, when its inputs already
    differ, the module whose own code computed them."""
    if divergence.inputs_differ and divergence.path:
        return divergence.path.rpartition(".")[0]
    return divergence.path


def repair(s: Session, root: nn.Module, divergence: Divergence) -> nn.Module | None:
    """Mend what the end-to-end check found and return the new root; None when nothing more
    can be done there."""
    path = culprit(divergence)
    module = root.get_submodule(path)
    region = s.plan.region(path)
    if region == "mixed" and not is_rewritten(module) and path not in s.plan.sites:
        try:
            touched = rewrite_head_forward(module, axis=s.axis, path=path)
        except UnsupportedModuleError:
            return None
        s.plan.sites[path] = "code"
        ops = ", ".join(sorted(set(touched)))
        s.plan.decide(path, type_name(module), "head rewritten",
                      f"returns feature maps and pooled tensors; guarded calls: {short(ops, 100)}")
        return root
    if region != "body" or is_folded(module):
        return None
    folded = fold(s, module, path, s.records.at(path),
                  f"the end-to-end check diverged here: {short(divergence.reason, 120)}",
                  passthrough=False)
    if not path:
        return folded
    root.set_submodule(path, folded)
    return root


def refusal(root: nn.Module, divergence: Divergence) -> UnsupportedModuleError:
    """The error for a divergence that cannot be mended."""
    mode = "train" if divergence.training else "eval"
    path = culprit(divergence)
    kind = type_name(root.get_submodule(path))
    where = ("this module is the first to differ" if path == divergence.path else
             f"this module's own code computes the inputs of {divergence.path}, the first "
             "module to differ")
    return UnsupportedModuleError(
        path, kind,
        f"the converted network does not compute the reference in {mode} mode: {where} "
        f"({short(divergence.reason, 240)})",
        f"register a converter for {kind} "
        "(planar3d.register_converter); for a non-spatial output, pool the feature maps "
        "globally first (e.g. nn.AdaptiveAvgPool2d(1)), or convert the feature extractor "
        "without its head",
    )

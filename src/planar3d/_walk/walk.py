"""The walk: every module of the 2D network visited bottom-up, in its region.

Regions, from what each module returned on the example:
- body: per-slice feature extraction (it returns feature maps);
- head: it returns only pooled tensors and its parent is a head (or mixed): its first global
  pool pools the planar axis away;
- mixed: it returns feature maps and pooled tensors (a segmentation model with an auxiliary
  classifier, a feature extractor returning maps and an embedding); its children that return
  pooled tensors are heads.

A module whose exact type has a converter is a leaf (`leaf`); any other module has its children
visited first, then, unless it is a plain container, its own forward is settled (`body`,
`head`).
"""

from __future__ import annotations

from torch import nn

from .._record import CallRecord
from .._tree import replace_children
from ..registry import keep
from .body import settle_body
from .fold import fold
from .head import settle_head
from .leaf import computes_its_weights, convert_leaf
from .session import TRAIN_ONLY, Session

__all__ = ["Walk", "region_of"]


def region_of(record: CallRecord | None, parent_region: str, batch: int) -> str:
    """The region of a module, from its record and its parent's region."""
    if record is None:
        return "head" if parent_region == "head" else "body"
    spatial, flat = record.is_spatial(batch), record.is_flat(batch)
    if parent_region in ("head", "mixed") and not spatial:
        return "head"
    return "mixed" if spatial and flat else "body"


def _is_container(module: nn.Module) -> bool:
    forward = type(module).forward
    return forward is nn.Sequential.forward or forward is nn.Module.forward


class Walk:
    """Visits the modules of the network being converted, each once (a module shared by two
    parents is converted once), and returns what each becomes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.done: dict[int, nn.Module] = {}

    def visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        key = id(module)
        if key not in self.done:
            self.done[key] = self._visit(module, path, parent_region)
        return self.done[key]

    def _visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        s = self.session
        record = s.records.of(module, path)
        region = region_of(record, parent_region, s.batch)
        s.plan.visit(path, region)
        converter = s.registry.get(type(module))
        if converter is not None and converter is not keep and computes_its_weights(module):
            return fold(s, module, path, record, "its weights are computed at each call "
                        "(parametrization or norm hook): the 2D layer runs per slice",
                        passthrough=region == "head")
        if converter is not None:
            in_head = parent_region == "head" or (parent_region == "mixed" and region == "head")
            return convert_leaf(s, module, path, "head" if region == "head" else "body",
                                in_head, converter, record)
        name = type(module).__name__
        if record is None and not s.records.reached(module, path):
            if any(True for _ in module.parameters()):
                s.plan.decide(path, name, "not reached")
            return module
        replace_children(module, path, lambda child, p: self.visit(child, p, region))
        if _is_container(module):
            if region == "mixed":
                s.plan.decide(path, name, "verified",
                              "returns feature maps and pooled tensors: checked end to end")
            return module
        if record is None:  # only its children were called (its .forward() called directly)
            s.plan.decide(path, name, "verified", "not called itself (its .forward() is "
                          "called directly): checked end to end")
            return module
        note = TRAIN_ONLY if record.training else ""
        record = s.records.in_eval(record, path)
        if region == "head":
            return settle_head(s, module, path, record, note=note)
        return settle_body(s, module, path, record, mixed=region == "mixed", note=note)

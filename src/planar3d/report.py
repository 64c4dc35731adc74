"""What conversion did to each module, printable for the user."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch import nn

from ._state import state, state_of

__all__ = ["ConversionReport", "ReportEntry", "conversion_report"]

# action -> what it means, in the order the report prints them
ACTIONS = {
    "swapped": "replaced by a 3D layer (kernel reshaped)",
    "kept": "acts on volumes as it is (elementwise / channel-wise)",
    "verified": "own forward runs on volumes as it is (children converted; checked on a probe)",
    "rewritten": "own forward traced by torch.fx: its functional code acts per slice",
    "head rewritten": "own forward traced by torch.fx: its functional pooling is the head pool",
    "slice code": "own code runs on the stacked slices (its 2D code), the modules it calls on "
                  "volumes",
    "all slices": "head module run on the positions (tokens) of all slices of each volume",
    "head pool": "pools the planar axis away: the rest of the head is the 2D head",
    "slice-wise": "head layer: 2D per slice on volumes, unchanged after the head pool",
    "folded": "runs its 2D forward slice by slice (exact planar semantics, 2D weights)",
    "depth pool": "pools along the planar axis too (depth policy)",
    "depth layer": "added to learn depth (depth position embedding, depth attention): zero at "
                   "initialisation",
    "not reached": "not called on the example input: left 2D",
}


@dataclass
class ReportEntry:
    path: str
    module_type: str
    action: str
    detail: str = ""


@dataclass
class ConversionReport:
    """The record of one `planar3d.convert` call: one entry per module that was decided on,
    in the order of the decisions (a view of the conversion's plan; `thicken` and
    `adapt_input_channels` add what they change).

    Modules inside a folded module are not listed separately (they stay 2D).
    """

    mode: str
    axis: str
    depth: str
    example_shape: tuple
    entries: list[ReportEntry] = field(default_factory=list)

    def add(self, path: str, module_type: str, action: str, detail: str = "") -> None:
        """Record what was done to the module at `path`, replacing its earlier entry."""
        if action not in ACTIONS:
            raise ValueError(f"unknown report action {action!r}")
        self.entries = [e for e in self.entries if e.path != path]
        self.entries.append(ReportEntry(path, module_type, action, detail))

    def counts(self) -> dict[str, int]:
        """Number of modules per action."""
        return dict(Counter(e.action for e in self.entries))

    def by_action(self, action: str) -> list[ReportEntry]:
        return [e for e in self.entries if e.action == action]

    def summary(self) -> str:
        """The header and one line per action with its count."""
        lines = [
            f"planar3d conversion: mode={self.mode}, planar axis={self.axis}, depth={self.depth}, "
            f"probed on a 2D batch of shape {self.example_shape}",
        ]
        counts = self.counts()
        for action, meaning in ACTIONS.items():
            if counts.get(action):
                lines.append(f"  {counts[action]:5d} {action:<14} {meaning}")
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = [self.summary()]
        width = max((len(e.path or "<root>") for e in self.entries), default=6)
        for action in ACTIONS:
            group = [e for e in self.entries if e.action == action]
            if not group or action in ("kept",):
                continue
            lines.append(f"{action}:")
            for e in sorted(group, key=lambda e: e.path):
                detail = f"  ({e.detail})" if e.detail else ""
                lines.append(f"  {e.path or '<root>':<{width}}  {e.module_type}{detail}")
        return "\n".join(lines)


def attach_report(model: nn.Module, report: ConversionReport) -> None:
    """Keep `report` with the converted `model` (it deep-copies and pickles with it)."""
    state(model).report = report


def is_converted(model: nn.Module) -> bool:
    """Whether `model` was produced by `planar3d.convert`."""
    record = state_of(model)
    return record is not None and record.report is not None


def conversion_report(model: nn.Module) -> ConversionReport:
    """The report of the `planar3d.convert` call that produced `model`.

    Raises:
        ValueError: if `model` was not produced by `planar3d.convert`.
    """
    record = state_of(model)
    report = None if record is None else record.report
    if report is None:
        raise ValueError(
            f"{type(model).__name__} was not produced by planar3d.convert (no conversion report)"
        )
    return report

"""The plan: what conversion decided for each module, as plain data.

The conversion walk (`_walk`) writes one `ModulePlan` per module it visits: its region, and,
for each module it decided on, the decision and its detail (a decision taken again replaces the
first). The plan also holds what the judge needs to know of those decisions: the head-pool sites
where the reference pools the slices of a volume together (`_judge.reference`), and the modules
kept with their own forward that no probe could check alone. The conversion report
(`report.ConversionReport`) is a view of the plan: its decided modules, in the order of their
last decision. `print(plan)` lists every module it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from .report import ACTIONS, ConversionReport, ReportEntry

__all__ = ["ModulePlan", "Plan"]


@dataclass
class ModulePlan:
    """What conversion decided for one module of the 2D network.

    Attributes:
        path: dotted path of the module ("" for the root).
        region: "body" (per-slice feature extraction), "head" (it returns only pooled tensors
            and its parent is a head or mixed) or "mixed" (it returns feature maps and pooled
            tensors); None for a module the walk decided on without visiting it.
        decision: what the module becomes, one of `report.ACTIONS` ("swapped", "verified",
            "folded", ...), or None: nothing to report (a container, a module inside a
            folded one).
        module_type: the class name the report gives the module.
        detail: what it became, or why.
    """

    path: str
    region: str | None = None
    decision: str | None = None
    module_type: str = ""
    detail: str = ""


def _strictly_below(path: str, other: str) -> bool:
    prefix = f"{path}." if path else ""
    return other.startswith(prefix) and other != path


class Plan:
    """The plan of one conversion: a `ModulePlan` per module, by path.

    Attributes:
        modules: path -> `ModulePlan`; a module decided on comes after every module decided on
            before it (the report's order).
        sites: the head-pool sites, path -> kind ("mean", "amax", "code", "as-is"; see
            `_judge.reference`), in the order they were found.
        unchecked: paths of modules kept with their own forward that no probe ran alone
            (their inputs or outputs are not all feature maps): the end-to-end check sees them.
    """

    def __init__(self) -> None:
        self.modules: dict[str, ModulePlan] = {}
        self.sites: dict[str, str] = {}
        self.unchecked: set[str] = set()

    def _at(self, path: str) -> ModulePlan:
        if path not in self.modules:
            self.modules[path] = ModulePlan(path)
        return self.modules[path]

    def visit(self, path: str, region: str) -> None:
        """The walk reached the module at `path`, in `region`."""
        self._at(path).region = region

    def region(self, path: str) -> str | None:
        entry = self.modules.get(path)
        return None if entry is None else entry.region

    def decide(self, path: str, module_type: str, decision: str, detail: str = "") -> None:
        """Record the decision for the module at `path` (replacing an earlier one).

        Raises:
            ValueError: for a decision that is not one of `report.ACTIONS`.
        """
        if decision not in ACTIONS:
            raise ValueError(f"unknown decision {decision!r}")
        entry = self.modules.pop(path, None) or ModulePlan(path)
        entry.decision, entry.module_type, entry.detail = decision, module_type, detail
        self.modules[path] = entry  # last in the order of decisions

    def forget_below(self, path: str) -> None:
        """Forget the decisions and head-pool sites of the modules strictly inside `path`
        (it now runs as one: folded)."""
        for entry in self.modules.values():
            if _strictly_below(path, entry.path):
                entry.decision, entry.module_type, entry.detail = None, "", ""
        for site in self.sites_below(path):
            del self.sites[site]

    def sites_below(self, path: str) -> list[str]:
        """The head-pool sites strictly inside `path`."""
        return [p for p in self.sites if _strictly_below(path, p)]

    def unchecked_below(self, path: str) -> bool:
        """Whether a module inside `path` (or `path`, for the root) is unchecked."""
        prefix = f"{path}." if path else ""
        return any(p.startswith(prefix) for p in self.unchecked)

    def report(self, *, mode: str, axis: str, depth: str, example_shape: tuple
               ) -> ConversionReport:
        """The conversion report: the decided modules, in the order of their last decision."""
        entries = [ReportEntry(p.path, p.module_type, p.decision, p.detail)
                   for p in self.modules.values() if p.decision is not None]
        return ConversionReport(mode, axis, depth, example_shape, entries)

    def __str__(self) -> str:
        width = max((len(p.path or "<root>") for p in self.modules.values()), default=6)
        lines = []
        for p in self.modules.values():
            site = f" [head-pool site: {self.sites[p.path]}]" if p.path in self.sites else ""
            detail = f" ({p.detail})" if p.detail else ""
            lines.append(f"{p.path or '<root>':<{width}}  {p.region or '-':<5}  "
                         f"{p.decision or '-'}  {p.module_type}{detail}{site}")
        return "\n".join(lines)

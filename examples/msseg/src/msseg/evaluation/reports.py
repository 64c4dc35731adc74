"""Tables of scores: per centre and overall (the paper's Table 2 layout), per method, per scan.

Cells are mean ± std over the scans of a column; a column heading says how many scans it has,
a cell with a single value shows just that value (a std of one scan says nothing), and a cell
whose metric is undefined for some scans (`msseg.evaluation.metrics`: e.g. Dice and sensitivity
on a scan without ground-truth lesions) says on how many it rests, ``(n=k)``, with a note under
the table; a metric undefined on every scan of a column is ``n/a``. Nothing undefined is counted
as a value.

    table = write_report(results, "pred/")     # per_scan.csv, table.md, table.csv
    print(table.to_markdown())
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.evaluation.metrics import METRIC_NAMES, ScanMetrics
from msseg.evaluation.scoring import ScanResult
from msseg.io.atomic import atomic_write_text

__all__ = [
    "TABLE_METRICS",
    "UNDEFINED_NOTE",
    "SummaryTable",
    "format_results",
    "mean_std",
    "overall_table",
    "summarize",
    "without_lesions",
    "write_report",
]

TABLE_METRICS = ("dice", "sensitivity", "lesion_tpr", "lesion_fpr", "lesion_f1")
UNDEFINED_NOTE = ("(n=k): the mean over the k scans where the metric is defined; n/a: defined on "
                  "none. Dice, sensitivity, lesion TPR and F1 are undefined on a scan without "
                  "ground-truth lesions, lesion FPR on one without predicted lesions.")


@dataclass(frozen=True)
class SummaryTable:
    """Mean ± std of metrics per centre and overall (the paper's Table 2 layout).

    `cells[(metric, column)]` = (mean, std, n): n scans with a defined (non-nan) value;
    `scans[column]`: the number of scans in the column.
    """

    metrics: tuple[str, ...]
    columns: tuple[str, ...]  # the centres, then "Overall"
    cells: dict[tuple[str, str], tuple[float, float, int]]
    scans: dict[str, int]

    def cell(self, metric: str, column: str, *, digits: int = 3) -> str:
        """One cell as text (see the module docstring)."""
        return _cell(*self.cells[(metric, column)], self.scans[column], digits=digits)

    def to_markdown(self, *, digits: int = 3) -> str:
        """A Markdown table: one row per metric, one column per centre and "Overall"."""
        heads = [f"{c} (n={self.scans[c]})" for c in self.columns]
        lines = ["| Metric | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for metric in self.metrics:
            cells = [self.cell(metric, column, digits=digits) for column in self.columns]
            lines.append(f"| {METRIC_NAMES.get(metric, metric)} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n" + self.note()

    def note(self) -> str:
        """`UNDEFINED_NOTE` as a paragraph when a cell rests on fewer scans than its column has;
        otherwise empty."""
        partial = any(n < self.scans[column] for (_, column), (_, _, n) in self.cells.items())
        return f"\n{UNDEFINED_NOTE}\n" if partial else ""

    def to_csv(self) -> str:
        """CSV text: one row per metric, `<column> mean`, `<column> std`, `<column> n` columns."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["metric", *(f"{c} {s}" for c in self.columns
                                     for s in ("mean", "std", "n"))])
        for metric in self.metrics:
            row = [metric]
            for column in self.columns:
                mean, std, n = self.cells[(metric, column)]
                row += [f"{mean:.6f}", f"{std:.6f}", str(n)]
            writer.writerow(row)
        return text.getvalue()


def summarize(
    results: Iterable[tuple[str, ScanMetrics]],
    *,
    metrics: Sequence[str] = ("dice", "sensitivity", "lesion_f1"),
    ddof: int = 0,
) -> SummaryTable:
    """Mean ± std of each metric per centre and over all scans.

    Args:
        results: (centre, metrics) per test scan, e.g. ("01", scan_metrics(pred, truth)).
        metrics: `ScanMetrics` fields to report, in row order.
        ddof: delta degrees of freedom of the std (0: population std, numpy's default).
    Returns:
        A `SummaryTable`; centres in sorted order, then "Overall". nan values (undefined
        metrics) are left out of mean and std; a cell with no defined value is (nan, nan, 0).
    Raises:
        ValueError: for no results or an unknown metric name.
    """
    results = list(results)
    if not results:
        raise ValueError("summarize needs at least one (centre, ScanMetrics) result")
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRIC_NAMES)}")
    centres = sorted({centre for centre, _ in results})
    columns = (*centres, "Overall")
    scans = {c: sum(c in ("Overall", centre) for centre, _ in results) for c in columns}
    cells = {}
    for metric in metrics:
        for column in columns:
            values = np.array([getattr(r, metric) for c, r in results
                               if column in ("Overall", c)], dtype=float)
            values = values[~np.isnan(values)]
            n = len(values)
            std = float(values.std(ddof=ddof)) if n > ddof else math.nan
            cells[(metric, column)] = (float(values.mean()) if n else math.nan,
                                       std if n else math.nan, n)
    return SummaryTable(tuple(metrics), columns, cells, scans)


def write_report(results: Sequence[ScanResult], out_dir: str | Path) -> SummaryTable:
    """Write per_scan.csv, table.md and table.csv (Table 2 layout) into `out_dir`, atomically.

    Returns:
        The summary table (per centre and overall).
    """
    out_dir = Path(out_dir)
    table = summarize([(r.centre, r.metrics) for r in results], metrics=TABLE_METRICS)
    fields = list(results[0].metrics.as_dict())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["patient_id", "centre", *fields])
    for r in results:
        writer.writerow([r.patient_id, r.centre, *(str(v) if isinstance(v, int) else f"{v:.6f}"
                                                   for v in r.metrics.as_dict().values())])
    atomic_write_text(out_dir / "per_scan.csv", text.getvalue())
    atomic_write_text(out_dir / "table.md", table.to_markdown())
    atomic_write_text(out_dir / "table.csv", table.to_csv())
    return table


def overall_table(rows: dict[str, Sequence[ScanResult]], *, first: str = "Method") -> str:
    """Markdown: one row per entry of `rows` (e.g. a method) with its number of scans and the
    overall mean ± std over them of each metric of TABLE_METRICS; `first` heads the name column."""
    lines = [f"| {first} | n | " + " | ".join(METRIC_NAMES[m] for m in TABLE_METRICS) + " |",
             "|---" * (len(TABLE_METRICS) + 2) + "|"]
    note = ""
    for name, results in rows.items():
        table = summarize([("all", r.metrics) for r in results], metrics=TABLE_METRICS)
        cells = [table.cell(m, "Overall") for m in TABLE_METRICS]
        lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + " |")
        note = note or table.note()
    return "\n".join(lines) + "\n" + note


def format_results(results: Sequence[ScanResult]) -> str:
    """One line per scan: Dice, sensitivity and the lesion-wise scores."""
    lines = ["patient     centre  Dice   sens   lesion TPR  FPR    F1     lesions (true/pred)"]
    for r in results:
        m = r.metrics
        d, s, tpr, fpr, f1 = (_value(v) for v in (m.dice, m.sensitivity, m.lesion_tpr,
                                                   m.lesion_fpr, m.lesion_f1))
        lines.append(f"{r.patient_id:<11} {r.centre:<7} {d}  {s}  {tpr}       {fpr}  {f1}  "
                     f"{m.true_lesions}/{m.predicted_lesions}")
    return "\n".join(lines)


def without_lesions(results: Sequence[ScanResult]) -> list[str]:
    """The patient ids whose ground truth has no lesion (their lesion-finding metrics are
    undefined and left out of the means)."""
    return [r.patient_id for r in results if math.isnan(r.metrics.dice)]


def mean_std(values: Sequence[float], *, digits: int = 3) -> str:
    """``mean ± std`` of `values`, or the value alone for one (see the module docstring)."""
    array = np.asarray(values, dtype=float)
    return _cell(float(array.mean()), float(array.std()), len(array), len(array), digits=digits)


def _value(value: float) -> str:
    return "n/a  " if math.isnan(value) else f"{value:.3f}"


def _cell(mean: float, std: float, n: int, scans: int, *, digits: int) -> str:
    if n == 0:
        return "n/a"
    text = f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n == scans else f"{text} (n={n})"

"""``python examples/msseg evaluate``: predicted masks against the consensus, per scan and centre.

    python examples/msseg evaluate --pred pred/ --truth data/msseg
    python examples/msseg evaluate --pred pred/ --truth scans.csv --out report/

For every scan of `--truth` (an MSSEG folder, a scan CSV with masks, or a FLAIR pattern with
`--mask-pattern`), ``<pred>/<id>_mask.nii.gz`` (what `predict` writes) is loaded, checked to lie
on the FLAIR's grid, and scored on that native grid (`msseg.evaluation.metrics`): Dice and sensitivity
(the paper), lesion true-positive rate, false-positive rate and F1 from 26-connected components
(the MSSEG challenge's detection scores; lesions smaller than `--min-lesion-mm3` are ignored,
3 mm³ as in the challenge). Writes ``per_scan.csv``, and the paper's Table 2 layout (rows:
metrics; columns: centres and Overall; mean ± std over scans) as ``table.md`` and ``table.csv``.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.evaluation.metrics import (
    METRIC_NAMES,
    ScanMetrics,
    SummaryTable,
    scan_metrics,
    summarize,
)
from msseg.io.discovery import ScanRecord, discover_scans, prediction_path
from msseg.io.atomic import atomic_path, atomic_write_text
from msseg.io.nifti import Scan, load_scan

__all__ = [
    "TABLE_METRICS",
    "ScanResult",
    "evaluate_scan",
    "format_results",
    "min_lesion_voxels",
    "overall_table",
    "score_scan",
    "write_report",
]

TABLE_METRICS = ("dice", "sensitivity", "lesion_tpr", "lesion_fpr", "lesion_f1")
CHALLENGE_MIN_LESION_MM3 = 3.0


@dataclass(frozen=True)
class ScanResult:
    """The metrics of one scan and where it came from."""

    patient_id: str
    centre: str  # "-" when the data does not say
    metrics: ScanMetrics


def min_lesion_voxels(affine: np.ndarray, min_mm3: float) -> int:
    """Smallest lesion, in voxels of a grid with this affine, that has at least `min_mm3`."""
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine)[:3, :3])))
    return max(1, math.ceil(min_mm3 / voxel_mm3 - 1e-9))


def evaluate_scan(
    record: ScanRecord, prediction: str | Path, *, min_lesion_mm3: float = 3.0
) -> ScanResult:
    """Score one predicted mask against the record's consensus mask, on the native grid.

    Args:
        record: a scan with its ground-truth mask.
        prediction: a binary NIfTI mask on the record's FLAIR grid (shape and affine).
        min_lesion_mm3: lesions smaller than this are left out of the lesion-wise scores.
    Returns:
        A `ScanResult`.
    Raises:
        FileNotFoundError: a missing file (the message names it).
        msseg.io.nifti.ScanError: a mask that is not binary or not on the FLAIR's grid.
    """
    if record.mask is None:
        raise ValueError(f"{record.patient_id}: no ground-truth mask to evaluate against")
    truth = load_scan(record, allow_empty_mask=True)
    if not Path(prediction).is_file():
        raise FileNotFoundError(f"{prediction}: prediction for {record.patient_id} not found; "
                                f"run `predict` on these scans with --out "
                                f"{Path(prediction).parent}")
    predicted = load_scan(ScanRecord(record.patient_id, record.centre, record.flair,
                                     Path(prediction)), allow_empty_mask=True)
    return score_scan(predicted.mask, truth, min_lesion_mm3=min_lesion_mm3)


def score_scan(prediction: np.ndarray, truth: Scan, *, min_lesion_mm3: float = 3.0) -> ScanResult:
    """Score a native-grid binary mask against a loaded scan's consensus mask.

    Args:
        prediction: (X, Y, Z) binary mask on the scan's grid.
        truth: the scan with its mask (`load_scan(record, allow_empty_mask=True)`).
        min_lesion_mm3: lesions smaller than this are left out of the lesion-wise scores.
    Returns:
        A `ScanResult`.
    Raises:
        ValueError: a prediction of another shape, or a scan without mask.
    """
    if truth.mask is None:
        raise ValueError(f"{truth.record.patient_id}: no ground-truth mask to evaluate against")
    min_size = min_lesion_voxels(truth.geometry.affine, min_lesion_mm3)
    metrics = scan_metrics(prediction, truth.mask, min_size=min_size)
    return ScanResult(truth.record.patient_id, truth.record.centre or "-", metrics)


def write_report(results: Sequence[ScanResult], out_dir: str | Path) -> SummaryTable:
    """Write per_scan.csv, table.md and table.csv (Table 2 layout) into `out_dir` (atomically).

    Returns:
        The summary table (per centre and overall mean ± std).
    """
    out_dir = Path(out_dir)
    table = summarize([(r.centre, r.metrics) for r in results], metrics=TABLE_METRICS)
    fields = list(results[0].metrics.as_dict())
    with atomic_path(out_dir / "per_scan.csv") as temporary, open(temporary, "w",
                                                                    newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "centre", *fields])
        for r in results:
            writer.writerow([r.patient_id, r.centre, *(_cell(v) for v in
                                                       r.metrics.as_dict().values())])
    atomic_write_text(out_dir / "table.md", table.to_markdown())
    with atomic_path(out_dir / "table.csv") as temporary:
        table.to_csv(temporary)
    return table


def _cell(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6f}"


def overall_table(rows: dict[str, Sequence[ScanResult]], *, first: str = "Method") -> str:
    """Markdown: one row per entry of `rows` (e.g. a method), the overall mean ± std over its
    scans of each metric of TABLE_METRICS; `first` heads the name column."""
    lines = [f"| {first} | " + " | ".join(METRIC_NAMES[m] for m in TABLE_METRICS) + " |",
             "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for name, results in rows.items():
        cells = summarize([("all", r.metrics) for r in results], metrics=TABLE_METRICS).cells
        lines.append(f"| {name} | " + " | ".join(
            f"{cells[(m, 'Overall')][0]:.3f} ± {cells[(m, 'Overall')][1]:.3f}"
            for m in TABLE_METRICS) + " |")
    return "\n".join(lines) + "\n"


def format_results(results: Sequence[ScanResult]) -> str:
    """One line per scan: Dice, sensitivity and the lesion-wise scores."""
    lines = ["patient     centre  Dice   sens   lesion TPR  FPR    F1     lesions (true/pred)"]
    for r in results:
        m = r.metrics
        lines.append(f"{r.patient_id:<11} {r.centre:<7} {m.dice:.3f}  {m.sensitivity:.3f}  "
                     f"{m.lesion_tpr:.3f}       {m.lesion_fpr:.3f}  {m.lesion_f1:.3f}  "
                     f"{m.true_lesions}/{m.predicted_lesions}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg evaluate``."""
    parser.add_argument("--pred", type=Path, required=True,
                        help="folder with <id>_mask.nii.gz files (the output of predict)")
    parser.add_argument("--truth", required=True,
                        help="MSSEG folder, scan CSV with masks, or FLAIR pattern with {id}")
    parser.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")
    parser.add_argument("--out", type=Path,
                        help="folder for per_scan.csv, table.md, table.csv (default: --pred)")
    parser.add_argument("--min-lesion-mm3", type=float, default=CHALLENGE_MIN_LESION_MM3,
                        help="ignore smaller lesions in the lesion-wise scores (default 3 mm³)")


def run(args: argparse.Namespace) -> int:
    """Score every scan, print the per-scan lines and the Table 2 layout, write the files."""
    records = discover_scans(args.truth, mask_pattern=args.mask_pattern)
    results = [evaluate_scan(r, prediction_path(args.pred, r.patient_id),
                             min_lesion_mm3=args.min_lesion_mm3) for r in records]
    out = args.out or args.pred
    table = write_report(results, out)
    print(format_results(results))
    print()
    print(table.to_markdown(), end="")
    print(f"wrote {out / 'per_scan.csv'}, {out / 'table.md'}, {out / 'table.csv'}")
    return 0

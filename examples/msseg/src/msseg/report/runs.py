"""The reports of `train`, `cv` and the demo, drawn from the files their runs wrote.

    write_training_report("runs/real")                        # after `msseg train`
    write_cv_report("runs/cv", scans, training_runs, results, chosen="average")

A training run folder holds ``config.json``, ``history.csv``, ``curves.png`` and
``validation.json`` (`msseg.training.logbook`, `msseg.workflows.validation`): its part of a page
is the curves, the best checkpoint's Dice on the validation scans' own grids, the history and
the config (`training_parts`). A cross-validation page has the Table 2 layout of the test scans
and the paper's own Table 2, one row per method over all test scans, each round's training, and
every test scan: its written mask against its consensus, scored voxel by voxel in the pictures
(`msseg.report.pages.scan_section`), with its scores.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg.config import TrainConfig
from msseg.evaluation.lesion_table import analyse_lesions
from msseg.evaluation.metrics import METRIC_NAMES
from msseg.evaluation.reports import TABLE_METRICS, summarize
from msseg.evaluation.scoring import ScanResult
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.report.html import Table, document, heading, paragraph, write_html
from msseg.report.pages import cv_page, scan_section, training_parts

__all__ = ["REPORT", "methods_table", "run_parts", "test_scan_section", "write_cv_report",
           "write_training_report"]

REPORT = "report.html"


def run_parts(run_dir: str | Path, *, title: str = "Training",
              validation: Mapping[str, float] | None = None) -> list[str]:
    """A training run folder's part of a page (`training_parts`, from its files; a file the run
    has not written yet is left out); `validation` (scan -> Dice on its own grid) instead of
    the folder's ``validation.json`` (a cross-validation round keeps it in its results)."""
    run_dir = Path(run_dir)
    history: list[dict[str, float]] = []
    if (run_dir / "history.csv").is_file():
        with (run_dir / "history.csv").open(newline="") as handle:
            history = [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()}
                       for row in csv.DictReader(handle)]
    if validation is None and (run_dir / "validation.json").is_file():
        validation = json.loads((run_dir / "validation.json").read_text())["dice"]
    config = ""
    if (run_dir / "config.json").is_file():
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text())
                                       ).describe()
    curves = run_dir / "curves.png"
    return training_parts(history=history, validation=validation, config_text=config,
                          curves_png=curves.read_bytes() if curves.is_file() else None,
                          title=title)


def write_training_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` (see the module docstring); returns its path."""
    run_dir = Path(run_dir)
    page = document("msseg train: training report",
                    [paragraph(f"run {run_dir}", css="meta"), *run_parts(run_dir)])
    return write_html(run_dir / REPORT, page)


def test_scan_section(record: ScanRecord, mask: str | Path, result: ScanResult) -> str:
    """A test scan's section: its written mask scored against its consensus, and its scores.

    Raises:
        FileNotFoundError, msseg.io.nifti.ScanError: the scan or the mask cannot be read.
    """
    scan = load_scan(record, allow_empty_mask=True)
    predicted = np.asarray(nib.load(mask).dataobj) > 0
    analysis = analyse_lesions(predicted, scan.geometry)
    scores = [(METRIC_NAMES[name], f"{getattr(result.metrics, name):.3f}")
              for name in TABLE_METRICS]
    return scan_section(record.patient_id, scan.flair, scan.geometry, analysis,
                        truth=scan.mask, facts=[("centre", result.centre), *scores])


def methods_table(rows: Mapping[str, Sequence[ScanResult]]) -> Table:
    """One row per method: its number of scans and the mean ± std of each metric over them."""
    cells = []
    for name, results in rows.items():
        table = summarize([("all", r.metrics) for r in results], metrics=TABLE_METRICS)
        cells.append([name, len(results), *(
            (table.cell(m, "Overall"), table.cells[(m, "Overall")][0]) for m in TABLE_METRICS)])
    return Table(["method", "n", *(METRIC_NAMES[m] for m in TABLE_METRICS)], cells,
                 caption="Every method over all test scans (mean ± std)")


def write_cv_report(out: str | Path, scans: Sequence[tuple[ScanRecord, Path, ScanResult]],
                    training_runs: Sequence[tuple[str, Path, Mapping[str, float] | None]],
                    rows: Mapping[str, Sequence[ScanResult]], *, chosen: Sequence[ScanResult],
                    title: str = "msseg cv: cross-validation report",
                    parts: Sequence[str] = ()) -> Path:
    """Write ``<out>/report.html`` for a cross-validation (see the module docstring).

    Args:
        out: the cross-validation folder.
        scans: per test scan, its record (with the consensus), its written mask and its scores.
        training_runs: (title, run folder, validation Dice per scan) of each round.
        rows: the methods to compare (name -> results over the test scans).
        chosen: the results of the written masks (the Table 2 layout).
        title: the page's title.
        parts: more HTML, after the comparison (e.g. the demo's run time).
    Returns:
        The report's path.
    """
    table = summarize([(r.centre, r.metrics) for r in chosen], metrics=TABLE_METRICS)
    training = [part for name, folder, validation in training_runs
                for part in run_parts(folder, title=name, validation=validation)]
    sections = [test_scan_section(record, mask, result) for record, mask, result in scans]
    page = cv_page(table, methods_table(rows), sections, title=title, parts=parts,
                   training=[heading("Training", level=2), *training],
                   subtitle=f"{len(scans)} test scan(s), {len(training_runs)} round(s)")
    return write_html(Path(out) / REPORT, page)

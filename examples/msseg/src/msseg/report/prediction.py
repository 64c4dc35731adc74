"""The report of a folder `predict` wrote: ``report.html``, drawn from the files alone.

    write_prediction_report("pred/")            # after `predict_files`

Everything comes from what is on disk: ``summary.csv`` lists the scans (their FLAIR, lesion
count and volume, grid, rule, model, recipe and warnings), each scan's lesion map and lesion
table are read back, and its FLAIR is read again for the pictures. So the report covers every
scan predicted into the folder, by this run or an earlier one, and a rerun draws it again without
predicting anything. A FLAIR that is no longer where the summary says is named in its section,
which keeps its table without pictures; a scan whose mask is missing (an interrupted write) is
named as such.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg.evaluation.lesion_table import (
    LesionAnalysis,
    ScanSummary,
    read_lesion_table,
    read_summary,
    voxel_ml,
)
from msseg.inference.outputs import SUMMARY
from msseg.io.discovery import ScanRecord, prediction_path
from msseg.io.nifti import load_scan
from msseg.report.html import heading, paragraph, table_html, warnings_html, write_html
from msseg.report.pages import lesion_table, predict_page, scan_anchor, scan_section

__all__ = ["REPORT", "write_prediction_report"]

REPORT = "report.html"


def write_prediction_report(out_dir: str | Path, *, naming: str = "msseg") -> Path:
    """Write ``<out_dir>/report.html`` for every scan of its ``summary.csv``.

    Args:
        out_dir: a folder `msseg.inference.predict.predict_files` wrote.
        naming: the naming its files have (`msseg.io.discovery.OUTPUT_NAMINGS`).
    Returns:
        The report's path.
    Raises:
        FileNotFoundError: no ``summary.csv``, or a scan's lesion map or table is missing.
        ValueError: a ``summary.csv`` or lesion table that is not msseg's.
    """
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; `msseg predict` writes it with the masks")
    rows = read_summary(path.read_text(encoding="utf-8"))
    sections = [_section(out_dir, row, naming) for row in rows]
    return write_html(out_dir / REPORT, predict_page(rows, sections))


def _section(out_dir: Path, row: ScanSummary, naming: str) -> str:
    if not prediction_path(out_dir, row.patient_id, naming=naming).is_file():
        return "\n".join([heading(row.patient_id, level=3, anchor=scan_anchor(row.patient_id)),
                          warnings_html([f"the prediction of {row.patient_id} was interrupted: "
                                         "its mask is missing; predict it again"])])
    table = prediction_path(out_dir, row.patient_id, "table", naming=naming)
    lesions = read_lesion_table(table.read_text(encoding="utf-8"))
    flair = Path(row.flair)
    if not flair.is_file():
        return "\n".join([
            heading(row.patient_id, level=3, anchor=scan_anchor(row.patient_id)),
            paragraph(f"{len(lesions)} lesion(s), {row.total_volume_ml:.3f} mL in all. Its "
                      f"FLAIR {flair} is no longer there: no pictures."),
            warnings_html(row.warnings), table_html(lesion_table(lesions)) if lesions else ""])
    with warnings.catch_warnings():  # shown, and kept in the summary, when it was predicted
        warnings.simplefilter("ignore")
        scan = load_scan(ScanRecord(row.patient_id, None, flair, None))
    labels = np.asarray(nib.load(prediction_path(out_dir, row.patient_id, "lesions",
                                                 naming=naming)).dataobj).astype(np.int32)
    analysis = LesionAnalysis(labels, lesions, voxel_ml(scan.geometry.affine),
                              row.min_lesion_mm3, row.connectivity)
    return scan_section(row.patient_id, scan.flair, scan.geometry, analysis,
                        warnings=row.warnings)

"""The report pages of `predict`, `train`, `cv` and `demo`, built from plain data.

    section = scan_section("01016SACH", scan.flair, scan.geometry, analysis, warnings=caught)
    page = predict_page(summaries, [section], model="runs/real/best.pt")
    write_html("pred/report.html", page)

A scan's section is made once, right after the scan is predicted (its pictures are PNG bytes
inside the HTML text), so a run over many scans never holds more than one scan's arrays. Each
section has the scan's figures (lesion count, total volume, grid), its warnings, the axial,
coronal and sagittal pictures through each of its largest lesions (`msseg.report.slices`) with
the patient directions at their edges and a legend, and its lesion table
(`msseg.evaluation.lesion_table`); with a ground truth the pictures score the voxels instead. The
pages put a sortable table of all scans on top, linked to their sections, and, for training, the
curves, the history and the validation scores; for cross-validation, the Table 2 layout of the
paper next to the paper's own numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from msseg.evaluation.lesion_table import Lesion, LesionAnalysis, ScanSummary, voxel_mm
from msseg.evaluation.metrics import METRIC_NAMES
from msseg.evaluation.reports import SummaryTable
from msseg.io.orientation import Geometry
from msseg.report.html import (
    Table,
    document,
    escape,
    figure_html,
    heading,
    image_html,
    paragraph,
    preformatted,
    table_html,
    warnings_html,
)
from msseg.report.slices import legend, lesion_views

__all__ = ["LESIONS_SHOWN", "PAPER_TABLE2", "TABLE_ROWS", "cv_page", "lesion_table",
           "predict_page", "scan_anchor", "scan_section", "summary_table", "training_parts"]

LESIONS_SHOWN = 3  # per scan, the largest lesions drawn in three planes each
TABLE_ROWS = 200  # lesion rows shown per scan; the CSV beside the mask has them all
# The paper's Table 2 (real MSSEG 2016 data, 5-fold cross-validation): mean per centre, and
# mean ± std overall.
PAPER_TABLE2 = {"dice": ("0.69", "0.50", "0.64", "0.611 ± 0.052"),
                "sensitivity": ("0.61", "0.45", "0.72", "0.60 ± 0.10")}
_PAPER_CENTRES = ("01", "07", "08", "Overall")


def scan_anchor(patient_id: str) -> str:
    """The id of a scan's section in the page (links from the tables)."""
    return "scan-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in patient_id)


def lesion_table(lesions: Sequence[Lesion], *, rows: int = TABLE_ROWS) -> Table:
    """A scan's lesions, largest first, as a sortable table (the first `rows` of them)."""
    shown = lesions[:rows]
    note = (f"The {rows} largest of {len(lesions)} lesions; the lesion table beside the mask "
            "lists them all." if len(lesions) > rows else "")
    return Table(
        ["lesion", "voxels", "volume (mL)", "centroid x, y, z (mm, scanner)", "box i", "box j",
         "box k", "mean p", "max p"],
        [[lesion.label, lesion.voxels, (f"{lesion.volume_ml:.4f}", lesion.volume_ml),
          (f"{lesion.x_mm:.1f}, {lesion.y_mm:.1f}, {lesion.z_mm:.1f}", lesion.x_mm),
          f"{lesion.i_first}-{lesion.i_last}", f"{lesion.j_first}-{lesion.j_last}",
          f"{lesion.k_first}-{lesion.k_last}", lesion.mean_probability, lesion.max_probability]
         for lesion in shown],
        caption="Lesions (1 = the largest; box: first-last voxel index along each array axis)",
        note=note)


def scan_section(
    patient_id: str,
    flair: np.ndarray,
    geometry: Geometry,
    analysis: LesionAnalysis,
    *,
    truth: np.ndarray | None = None,
    warnings: Sequence[str] = (),
    facts: Sequence[tuple[str, str]] = (),
    lesions_shown: int = LESIONS_SHOWN,
) -> str:
    """One scan's part of a report (see the module docstring), as HTML text.

    Args:
        patient_id: the scan's id (its heading and anchor, `scan_anchor`).
        flair: (X, Y, Z) FLAIR on the scan's grid.
        geometry: the scan's grid.
        analysis: the lesions of the predicted mask on that grid.
        truth: (X, Y, Z) binary ground truth: the pictures then score the prediction.
        warnings: the warnings raised for this scan.
        facts: more (name, value) pairs for its first line, e.g. ("Dice", "0.712").
        lesions_shown: how many of the largest lesions get their three pictures.
    Returns:
        HTML text.
    Raises:
        ValueError: arrays that are not on the geometry's grid.
    """
    sizes = "x".join(f"{s:.3g}" for s in voxel_mm(geometry.affine))
    line = [f"{analysis.count} lesion(s), {analysis.total_ml:.3f} mL in all",
            f"grid {'x'.join(map(str, geometry.shape))} voxels of {sizes} mm",
            *(f"{name} {value}" for name, value in facts)]
    parts = [heading(patient_id, level=3, anchor=scan_anchor(patient_id)),
             paragraph("; ".join(line)), warnings_html(warnings), _legend(truth is not None)]
    labels = range(1, min(lesions_shown, analysis.count) + 1) or [0]
    for label in labels:
        views = lesion_views(flair, analysis.labels, geometry, label=label, truth=truth)
        if label:
            lesion = analysis.lesions[label - 1]
            title = (f"Lesion {label}: {lesion.volume_ml:.3f} mL, {lesion.voxels} voxels, "
                     f"centroid ({lesion.x_mm:.1f}, {lesion.y_mm:.1f}, {lesion.z_mm:.1f}) mm")
        else:
            title = "No lesion found: the middle slices"
        figures = "".join(
            figure_html(view.png, ends=view.ends, width=view.width, height=view.height,
                        caption=f"{view.plane}, slice {view.slice_index + 1} of {view.slices}",
                        alt=f"{patient_id} {view.plane} slice {view.slice_index + 1}")
            for view in views)
        parts += [f"<h4>{escape(title)}</h4>", f'<div class="views">{figures}</div>']
    if analysis.count:
        parts.append(table_html(lesion_table(analysis.lesions)))
    return "\n".join(part for part in parts if part)


def summary_table(summaries: Sequence[ScanSummary], *,
                  extra: Mapping[str, Sequence[str | float]] | None = None) -> Table:
    """One row per scan: lesions, volume, grid, warnings (and `extra` columns, one value per
    scan), each scan's id linking to its section."""
    extra = dict(extra or {})
    rows = []
    for n, summary in enumerate(summaries):
        rows.append([summary.patient_id, summary.lesions, (f"{summary.total_volume_ml:.3f}",
                                             summary.total_volume_ml),
                     "x".join(map(str, summary.shape)),
                     "x".join(f"{s:.3g}" for s in summary.voxel_mm), len(summary.warnings),
                     *(values[n] for values in extra.values())])
    return Table(["scan", "lesions", "total volume (mL)", "grid (voxels)", "voxel (mm)",
                  "warnings", *extra], rows, caption="Scans (click a heading to sort)",
                 links=[scan_anchor(s.patient_id) for s in summaries])


def predict_page(summaries: Sequence[ScanSummary], sections: Sequence[str]) -> str:
    """The report of `msseg predict`: the scans' table, then each scan's section."""
    lines = [*(f"model {m}" for m in sorted({s.model for s in summaries})),
             *sorted({s.recipe for s in summaries}),
             *(f"lesions: {c}-connected components of more than {v:g} mm³" for c, v in
               sorted({(s.connectivity, s.min_lesion_mm3) for s in summaries}))]
    return document("msseg predict: lesion report", [
        paragraph("; ".join(lines), css="meta"), _disclaimer(),
        table_html(summary_table(summaries)), heading("Scans", level=2), *sections],
        subtitle=f"{len(summaries)} scan(s)")


def training_parts(*, history: Sequence[Mapping[str, float]], curves_png: bytes | None,
                   validation: Mapping[str, float] | None, config_text: str,
                   title: str = "Training") -> list[str]:
    """The parts of a page that describe one training run, under `title`: the curves, the
    validation Dice on the scans' own grids, the history and the config."""
    parts = [heading(title, level=2 if title == "Training" else 3)]
    if curves_png:
        parts.append(image_html(curves_png, alt="training curves: loss and validation Dice"))
    if validation:
        parts.append(table_html(Table(["validation scan", "Dice (own grid)"],
                                      [[scan, value] for scan, value in validation.items()],
                                      caption="Best checkpoint on the validation scans")))
    if history:
        columns = list(history[0])
        parts.append(table_html(Table(columns, [[_history_cell(row[c]) for c in columns]
                                                for row in history],
                                      caption="History (one row per epoch)")))
    if config_text:
        parts += [f"<h4>{escape(title)}: configuration</h4>", preformatted(config_text)]
    return parts


def cv_page(table: SummaryTable, methods: Table, sections: Sequence[str], *,
            title: str = "msseg cv: cross-validation report", parts: Sequence[str] = (),
            training: Sequence[str] = (), subtitle: str = "") -> str:
    """The report of `msseg cv` and of the demo: the Table 2 layout of the test scans, the
    paper's Table 2, a comparison of methods, `parts` (e.g. the demo's run time), every test
    scan's section, then `training` (each round's)."""
    heads = [f"{column} (n={table.scans[column]})" for column in table.columns]
    ours = Table(["metric", *heads],
                 [[METRIC_NAMES.get(metric, metric),
                   *(_cell(table, metric, column) for column in table.columns)]
                  for metric in table.metrics],
                 caption="Table 2 layout: mean ± std over the test scans, per centre",
                 note=table.note().strip(), sortable=False)
    paper = Table(["metric", *_PAPER_CENTRES],
                  [[METRIC_NAMES[metric], *values] for metric, values in PAPER_TABLE2.items()],
                  caption="The paper's Table 2 (real MSSEG 2016 data), for comparison",
                  sortable=False)
    return document(title, [table_html(ours), table_html(paper), table_html(methods), *parts,
                            heading("Test scans", level=2), *sections, *training],
                    subtitle=subtitle)


def _cell(table: SummaryTable, metric: str, column: str) -> tuple[str, float]:
    mean = table.cells[(metric, column)][0]
    return table.cell(metric, column), -1.0 if math.isnan(mean) else mean


def _history_cell(value: float) -> str | tuple[str, float]:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}", value
    return str(int(value)) if isinstance(value, float) else str(value)


def _legend(scored: bool) -> str:
    items = "".join(
        f'<span><span class="swatch" style="background:rgb'
        f'{tuple(round(255 * c) for c in colour)}"></span>{escape(text)}</span>'
        for text, colour in legend(scored=scored))
    ends = ("L/R, A/P, S/I at the edges: the patient's left/right, anterior/posterior, "
            "superior/inferior (radiological convention: the patient's right on the viewer's "
            "left).")
    return f'<div class="legend">{items}</div><p class="note">{escape(ends)}</p>'


def _disclaimer() -> str:
    return paragraph("A research tool's automatic segmentation, not a diagnosis: check every "
                     "lesion against the scan.", css="note")

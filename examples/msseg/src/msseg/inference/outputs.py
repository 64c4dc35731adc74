"""The files `predict` writes for each scan, and the folder's ``summary.csv``.

Per scan, on the FLAIR's grid with its affine, qform and sform (named by `prediction_path` in
the run's naming: msseg's ``<out>/<id>_mask.nii.gz`` ..., nnU-Net's, or BIDS derivatives):
- the mask, uint8 {0, 1} (nnU-Net naming: 0 and the dataset's lesion label);
- the lesion map, each lesion's number in its voxels (1 = the largest), and the lesion table
  (`msseg.evaluation.lesion_table`);
- with `probabilities`, the probability map, float32.
The NIfTI files carry a header description that marks them as predictions
(`msseg.io.nifti.PREDICTION_DESCRIPTIONS`: `load_scan` refuses them as FLAIRs). Outputs are
never inputs: `without_outputs` drops, from the scans found in a folder, the predictions that
an earlier run wrote there for the others (``predict -i D -o D`` run twice). A scan's files
are written as one group whose mask comes last (`msseg.io.atomic.atomic_paths`): where a mask
exists, the scan's prediction is complete and the files beside it are of the same run; a file
without its mask is the leftover of an interrupted write and is replaced. Earlier complete
outputs are only replaced on request (`overwrite`), and then all of them: the old probability
map goes even when no new one is written. `check_outputs` refuses, before any inference, what
would overwrite by accident (an earlier run, two inputs with one id) and an output folder that
cannot take the files.

``summary.csv`` lists every scan predicted into the folder, one row each
(`msseg.evaluation.lesion_table.ScanSummary`): it is rewritten in each scan's group, just before
the mask, with the scan's row replacing an earlier one of the same id. So the row of a scan whose
mask exists is of the mask's run; a row whose mask is missing is of an interrupted write, which
the next run replaces.
BIDS outputs form a derivative dataset: the folder gets its ``dataset_description.json``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg.data.native import NativePrediction
from msseg.evaluation.lesion_table import (
    LesionAnalysis,
    ScanSummary,
    lesion_table_csv,
    read_summary,
    summary_csv,
)
from msseg.io.atomic import atomic_paths, atomic_write_text, check_writable
from msseg.io.bids import DESCRIPTION
from msseg.io.discovery import PREDICTION_KINDS, ScanRecord, prediction_path
from msseg.io.nifti import PREDICTION_DESCRIPTIONS, nifti_image
from msseg.io.orientation import Geometry

__all__ = ["SUMMARY", "check_outputs", "existing_outputs", "without_outputs", "write_prediction"]

log = logging.getLogger(__name__)

SUMMARY = "summary.csv"
# uncompressed bytes per voxel: uint8 mask, float32 probability map, lesion map (up to uint16)
_BYTES_PER_VOXEL = {"mask": 1, "prob": 4, "lesions": 2, "table": 0}


def existing_outputs(out_dir: str | Path, patient_ids: Sequence[str], *,
                     naming: str = "msseg") -> list[Path]:
    """The complete outputs of these scans in `out_dir`: each mask that exists, and the files
    of its group beside it."""
    return [path for patient_id in patient_ids
            if prediction_path(out_dir, patient_id, naming=naming).exists()
            for kind in PREDICTION_KINDS
            if (path := prediction_path(out_dir, patient_id, kind, naming=naming)).exists()]


def without_outputs(records: Sequence[ScanRecord], out_dir: str | Path, *,
                    naming: str = "msseg") -> list[ScanRecord]:
    """The records that are scans, not the outputs (in `out_dir`) of the other records.

    Args:
        records: the inputs found (`msseg.io.discovery.find_inputs`).
        out_dir: the output folder of this run.
        naming: the run's naming (`msseg.io.discovery.OUTPUT_NAMINGS`).
    Returns:
        `records` without those whose FLAIR is a file this run would write for another
        record's id (``<out_dir>/<id>_mask.nii.gz``, ``_prob``, ``_lesions``...), logged once
        with their number.
    """
    outputs = set()
    for record in records:
        for kind in PREDICTION_KINDS:
            try:
                outputs.add(prediction_path(out_dir, record.patient_id, kind,
                                            naming=naming).resolve())
            except ValueError:  # an id the naming cannot name (BIDS): no output of it
                continue
    kept = [record for record in records if record.flair.resolve() not in outputs]
    if len(kept) < len(records):
        log.info("%s: %d file(s) there are predictions of an earlier run, not scans: left out",
                 out_dir, len(records) - len(kept))
    return kept


def check_outputs(records: Sequence[ScanRecord], shapes: Sequence[tuple[int, ...]],
                  out_dir: str | Path, *, probabilities: bool, overwrite: bool,
                  naming: str = "msseg") -> None:
    """Refuse, before any inference, outputs that would overwrite something by accident or
    could not be written.

    Args:
        records: the scans to predict.
        shapes: their native grids (for the space the largest scan's files need).
        out_dir: the output folder (need not exist).
        probabilities, overwrite, naming: as `write_prediction`.
    Raises:
        ValueError: two records with one patient id (e.g. ``x.nii`` and ``x.nii.gz``), ids
            the naming cannot name (BIDS names need BIDS scans), or a ``summary.csv`` there that
            is not msseg's.
        FileExistsError: outputs of an earlier run exist and `overwrite` is False.
        msseg.io.atomic.WriteError: the folder is not writable or its disk lacks the space.
    """
    first: dict[str, ScanRecord] = {}
    for record in records:
        other = first.setdefault(record.patient_id, record)
        if other is not record:
            raise ValueError(
                f"{other.flair} and {record.flair} would both be written as "
                f"{prediction_path(out_dir, record.patient_id, naming=naming).name}; rename "
                f"one of them or predict them into different output folders")
    summary = Path(out_dir) / SUMMARY
    if summary.is_file():
        try:
            read_summary(summary.read_text(encoding="utf-8"))
        except (ValueError, KeyError, UnicodeDecodeError) as error:
            raise ValueError(f"{summary}: not the summary of msseg predict ({error}); move it "
                             "or write to another output folder") from None
    found = existing_outputs(out_dir, list(first), naming=naming)
    if found and not overwrite:
        raise FileExistsError(
            f"{len(found)} output file(s) exist already, e.g. {found[0]}; pass --overwrite to "
            f"replace them (overwrite=True) or write to another output folder")
    kinds = [k for k in PREDICTION_KINDS if probabilities or k != "prob"]
    per_voxel = sum(_BYTES_PER_VOXEL[kind] for kind in kinds)
    check_writable(out_dir, need_bytes=max((math.prod(s) for s in shapes), default=0) * per_voxel)


def write_prediction(
    prediction: NativePrediction,
    analysis: LesionAnalysis,
    geometry: Geometry,
    out_dir: str | Path,
    patient_id: str,
    *,
    probabilities: bool = False,
    overwrite: bool = False,
    naming: str = "msseg",
    label: int = 1,
    summary: ScanSummary | None = None,
) -> Path:
    """Write one scan's files into `out_dir`, as one group (see the module docstring).

    Args:
        prediction: the native-grid prediction (`msseg.inference.predict.predict_scan`).
        analysis: the lesions of its mask (`msseg.evaluation.lesion_table.analyse_lesions`).
        geometry: the scan's geometry (shape, affine, qform, sform).
        out_dir: the output folder (created).
        patient_id: names the files.
        probabilities: also write the probability map.
        overwrite: replace earlier outputs of this scan (all of them, see the module docstring).
        naming: one of `msseg.io.discovery.OUTPUT_NAMINGS`.
        label: the value of lesion voxels in the mask (nnU-Net naming: the dataset's label).
        summary: the scan's row of ``summary.csv``, written with the group.
    Returns:
        The mask path.
    Raises:
        FileExistsError: a complete output of this scan exists and `overwrite` is False.
        msseg.io.atomic.WriteError: a file could not be written; the scan's earlier files are
            then unchanged.
        ValueError: a ``summary.csv`` in `out_dir` that is not msseg's.
    """
    found = existing_outputs(out_dir, [patient_id], naming=naming)
    if found and not overwrite:
        raise FileExistsError(f"{found[0]} exists already; pass --overwrite to replace it "
                              f"(overwrite=True) or write to another output folder")
    paths = {kind: prediction_path(out_dir, patient_id, kind, naming=naming)
             for kind in PREDICTION_KINDS}
    if not found:
        for kind in PREDICTION_KINDS[1:]:
            if paths[kind].exists():
                log.info("%s: replacing a file left without its mask by an interrupted run",
                         paths[kind])
    mask = prediction.mask if label == 1 else prediction.mask * np.uint8(label)

    def image(kind: str, array: np.ndarray) -> Callable[[Path], object]:
        return lambda to: nib.save(nifti_image(array, geometry,
                                               description=PREDICTION_DESCRIPTIONS[kind]), to)

    writers: list[tuple[Path, Callable[[Path], object]]] = [
        (paths["lesions"], image("lesions", analysis.map_array())),
        (paths["table"], lambda to: to.write_text(lesion_table_csv(analysis.lesions),
                                                  encoding="utf-8")),
        (paths["mask"], image("mask", mask))]  # the marker, last
    if summary is not None:
        text = _summary_with(Path(out_dir), summary)
        writers.insert(-1, (Path(out_dir) / SUMMARY,
                            lambda to: to.write_text(text, encoding="utf-8")))
    if probabilities:
        writers.insert(0, (paths["prob"], image("prob", prediction.probability)))
    if naming == "bids":
        _describe_derivative(Path(out_dir))
    with atomic_paths([path for path, _ in writers],
                      remove=[] if probabilities else [paths["prob"]]) as temporaries:
        for (_, write), temporary in zip(writers, temporaries, strict=True):
            write(temporary)
    return paths["mask"]


def _summary_with(out_dir: Path, row: ScanSummary) -> str:
    """``summary.csv`` of `out_dir` with `row` replacing the row of its scan, sorted by id."""
    path = out_dir / SUMMARY
    kept = read_summary(path.read_text(encoding="utf-8")) if path.is_file() else []
    rows = sorted([r for r in kept if r.patient_id != row.patient_id] + [row],
                  key=lambda r: r.patient_id)
    return summary_csv(rows)


def _describe_derivative(out_dir: Path) -> None:
    path = out_dir / "dataset_description.json"
    if not path.exists():
        atomic_write_text(path, json.dumps(DESCRIPTION, indent=2) + "\n")

"""The files `predict` writes: ``<out>/<id>_mask.nii.gz`` and ``<out>/<id>_prob.nii.gz``.

The mask is uint8 {0, 1}, the probability map float32, both on the FLAIR's grid with its
affine, qform and sform, and a header description that marks them as predictions
(`msseg.io.nifti.PREDICTION_DESCRIPTIONS`: `load_scan` refuses them as FLAIRs). Outputs are
never inputs: `without_outputs` drops, from the scans found in a folder, the predictions that
an earlier run wrote there for the others (``predict -i D -o D`` run twice). A scan's files
are written as one group whose mask comes last (`msseg.io.atomic.atomic_paths`): where a mask
exists, the scan's prediction is complete and the probability map beside it (if any) is of the
same run; a probability map without its mask is the leftover of an interrupted write and is
replaced. Earlier complete outputs are only replaced on request (`overwrite`), and then all of
them: the old probability map goes even when no new one is written. `check_outputs` refuses,
before any inference, what would overwrite by accident (an earlier run, two inputs with one
id) and an output folder that cannot take the files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib

from msseg.data.native import NativePrediction
from msseg.io.atomic import atomic_paths, check_writable
from msseg.io.discovery import PREDICTION_KINDS, ScanRecord, prediction_path
from msseg.io.nifti import PREDICTION_DESCRIPTIONS, nifti_image
from msseg.io.orientation import Geometry

__all__ = ["check_outputs", "existing_outputs", "without_outputs", "write_prediction"]

log = logging.getLogger(__name__)

_BYTES_PER_VOXEL = {"mask": 1, "prob": 4}  # uint8 mask, float32 probability map (uncompressed)


def existing_outputs(out_dir: str | Path, patient_ids: Sequence[str]) -> list[Path]:
    """The complete outputs of these scans in `out_dir`: each mask that exists, and the
    probability map beside it."""
    return [path for patient_id in patient_ids
            if prediction_path(out_dir, patient_id).exists() for kind in PREDICTION_KINDS
            if (path := prediction_path(out_dir, patient_id, kind)).exists()]


def without_outputs(records: Sequence[ScanRecord], out_dir: str | Path) -> list[ScanRecord]:
    """The records that are scans, not the outputs (in `out_dir`) of the other records.

    Args:
        records: the inputs found (`msseg.io.discovery.find_inputs`).
        out_dir: the output folder of this run.
    Returns:
        `records` without those whose FLAIR is ``<out_dir>/<id>_mask.nii.gz`` or
        ``<id>_prob.nii.gz`` of another record's id (logged once, with their number).
    """
    outputs = {prediction_path(out_dir, record.patient_id, kind).resolve()
               for record in records for kind in PREDICTION_KINDS}
    kept = [record for record in records if record.flair.resolve() not in outputs]
    if len(kept) < len(records):
        log.info("%s: %d file(s) there are predictions of an earlier run, not scans: left out",
                 out_dir, len(records) - len(kept))
    return kept


def check_outputs(records: Sequence[ScanRecord], shapes: Sequence[tuple[int, ...]],
                  out_dir: str | Path, *, probabilities: bool, overwrite: bool) -> None:
    """Refuse, before any inference, outputs that would overwrite something by accident or
    could not be written.

    Args:
        records: the scans to predict.
        shapes: their native grids (for the space the largest scan's files need).
        out_dir: the output folder (need not exist).
        probabilities, overwrite: as `write_prediction`.
    Raises:
        ValueError: two records with one patient id (e.g. ``x.nii`` and ``x.nii.gz``).
        FileExistsError: outputs of an earlier run exist and `overwrite` is False.
        msseg.io.atomic.WriteError: the folder is not writable or its disk lacks the space.
    """
    first: dict[str, ScanRecord] = {}
    for record in records:
        other = first.setdefault(record.patient_id, record)
        if other is not record:
            raise ValueError(
                f"{other.flair} and {record.flair} would both be written as "
                f"{prediction_path(out_dir, record.patient_id).name}; rename one of them or "
                f"predict them into different output folders")
    found = existing_outputs(out_dir, list(first))
    if found and not overwrite:
        raise FileExistsError(
            f"{len(found)} output file(s) exist already, e.g. {found[0]}; pass --overwrite to "
            f"replace them (overwrite=True) or write to another output folder")
    kinds = PREDICTION_KINDS if probabilities else ("mask",)
    per_voxel = sum(_BYTES_PER_VOXEL[kind] for kind in kinds)
    check_writable(out_dir, need_bytes=max((math.prod(s) for s in shapes), default=0) * per_voxel)


def write_prediction(
    prediction: NativePrediction,
    geometry: Geometry,
    out_dir: str | Path,
    patient_id: str,
    *,
    probabilities: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write one scan's mask (and probability map) into `out_dir`, as one group.

    Args:
        prediction: the native-grid prediction (`msseg.inference.predict.predict_scan`).
        geometry: the scan's geometry (shape, affine, qform, sform).
        out_dir: the output folder (created).
        patient_id: names the files.
        probabilities: also write ``<id>_prob.nii.gz``.
        overwrite: replace earlier outputs of this scan (all of them, see the module docstring).
    Returns:
        The mask path.
    Raises:
        FileExistsError: a complete output of this scan exists and `overwrite` is False.
        msseg.io.atomic.WriteError: a file could not be written; the scan's earlier files are
            then unchanged.
    """
    found = existing_outputs(out_dir, [patient_id])
    if found and not overwrite:
        raise FileExistsError(f"{found[0]} exists already; pass --overwrite to replace it "
                              f"(overwrite=True) or write to another output folder")
    mask, prob = (prediction_path(out_dir, patient_id, kind) for kind in ("mask", "prob"))
    if prob.exists() and not found:
        log.info("%s: replacing a probability map left without its mask by an interrupted run",
                 prob)
    arrays = {mask: ("mask", prediction.mask)}
    if probabilities:
        arrays = {prob: ("prob", prediction.probability), **arrays}
    with atomic_paths(list(arrays), remove=[] if probabilities else [prob]) as temporaries:
        for (kind, array), temporary in zip(arrays.values(), temporaries):
            nib.save(nifti_image(array, geometry, description=PREDICTION_DESCRIPTIONS[kind]),
                     temporary)
    return mask

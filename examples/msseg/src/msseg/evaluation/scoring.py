"""Scoring predicted masks against the consensus, on each scan's own grid.

    results, skipped = score_predictions(discover_scans("data/msseg"), "pred/")

For every scan with ground truth, ``<pred>/<id>_mask.nii.gz`` (what `predict` writes) is loaded,
checked to lie on the FLAIR's grid, and scored there (`msseg.evaluation.metrics`): Dice and
sensitivity (the paper), and lesion true-positive rate, false-positive rate and F1 by the
MSSEG-2016 detection rule (`msseg.evaluation.lesions`), leaving out lesions of at most
`MIN_LESION_MM3` (3 mm³, as the challenge) in voxels of the scan's own size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.evaluation.lesions import MIN_LESION_MM3, min_lesion_voxels, voxel_mm3
from msseg.evaluation.metrics import ScanMetrics, scan_metrics
from msseg.io.discovery import ScanRecord, find_prediction
from msseg.io.nifti import Scan, load_scan

__all__ = [
    "ScanResult",
    "evaluate_scan",
    "score_predictions",
    "score_scan",
]


@dataclass(frozen=True)
class ScanResult:
    """The metrics of one scan and where it came from."""

    patient_id: str
    centre: str  # "-" when the data does not say
    metrics: ScanMetrics


def score_scan(prediction: np.ndarray, truth: Scan, *,
               min_lesion_mm3: float = MIN_LESION_MM3) -> ScanResult:
    """Score a native-grid binary mask against a loaded scan's consensus mask.

    Args:
        prediction: (X, Y, Z) binary mask on the scan's grid.
        truth: the scan with its mask (`load_scan(record, allow_empty_mask=True)`).
        min_lesion_mm3: lesions of this volume or less are left out of the lesion-wise scores.
    Returns:
        A `ScanResult`.
    Raises:
        ValueError: a prediction of another shape, or a scan without mask.
    """
    if truth.mask is None:
        raise ValueError(f"{truth.record.patient_id}: no ground-truth mask to evaluate against")
    min_size = min_lesion_voxels(voxel_mm3(truth.geometry.affine), min_lesion_mm3)
    metrics = scan_metrics(prediction, truth.mask, min_size=min_size)
    return ScanResult(truth.record.patient_id, truth.record.centre or "-", metrics)


def evaluate_scan(record: ScanRecord, prediction: str | Path, *,
                  min_lesion_mm3: float = MIN_LESION_MM3,
                  labels: tuple[int, ...] | str | None = None) -> ScanResult:
    """Score one predicted mask file against the record's consensus mask, on the native grid.

    Args:
        record: a scan with its ground-truth mask.
        prediction: a NIfTI mask on the record's FLAIR grid (shape and affine).
        min_lesion_mm3: lesions of this volume or less are left out of the lesion-wise scores.
        labels: the prediction's lesion values (as `ScanRecord.mask_labels`; None: 0 and 1).
    Returns:
        A `ScanResult`.
    Raises:
        FileNotFoundError: a missing file (the message names it).
        ValueError: a record without mask; msseg.io.nifti.ScanError: a mask that is not binary
            or not on the FLAIR's grid.
    """
    if record.mask is None:
        raise ValueError(f"{record.patient_id}: no ground-truth mask to evaluate against")
    truth = load_scan(record, allow_empty_mask=True)
    predicted = load_scan(ScanRecord(record.patient_id, record.centre, record.flair,
                                     Path(prediction), labels), allow_empty_mask=True)
    return score_scan(predicted.mask, truth, min_lesion_mm3=min_lesion_mm3)


def score_predictions(
    records: Sequence[ScanRecord], pred_dir: str | Path, *,
    min_lesion_mm3: float = MIN_LESION_MM3,
) -> tuple[list[ScanResult], list[str]]:
    """Score the scans that have a prediction in `pred_dir`; list the ones that have none.

    Args:
        records: scans with ground truth (e.g. `discover_scans`).
        pred_dir: the folder `predict` wrote, in any of its namings (msseg's
            ``<id>_mask.nii.gz``; nnU-Net's ``<CASE>.nii.gz``, whose lesion voxels hold the
            record's lesion label; BIDS derivatives).
        min_lesion_mm3: as `score_scan`.
    Returns:
        (results of the predicted scans, patient ids of the scans without a prediction).
    Raises:
        FileNotFoundError: no scan has a prediction in `pred_dir`.
        msseg.io.nifti.ScanError: a prediction that is not a binary mask on its FLAIR's grid.
    """
    found = {r.patient_id: hit for r in records
             if (hit := find_prediction(pred_dir, r.patient_id)) is not None}
    predicted = [r for r in records if r.patient_id in found]
    skipped = [r.patient_id for r in records if r not in predicted]
    if not predicted:
        raise FileNotFoundError(
            f"{pred_dir}: no prediction for any of the {len(records)} scans (expected "
            f"<id>_mask.nii.gz files, <CASE>.nii.gz in nnU-Net's naming, or BIDS derivatives); "
            f"run `msseg predict -o {pred_dir}` on these scans first")
    results = [evaluate_scan(r, found[r.patient_id][0], min_lesion_mm3=min_lesion_mm3,
                             labels=r.mask_labels if found[r.patient_id][1] == "nnunet" else None)
               for r in predicted]
    return results, skipped

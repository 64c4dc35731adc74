"""Segmentation metrics of one scan, voxel-wise and lesion-wise (tables: `evaluation.reports`).

Convention for scans without lesions (Metrics Reloaded's; MSSEG-2 scored its lesion-free patients
by their false positives alone): a metric that says how well the ground truth's lesions were
found is undefined (nan) on a scan whose ground truth has none, whatever was predicted, and a
rate of predicted lesions is undefined where none was predicted. Summaries leave nan out of the
mean and say on how many scans each cell rests (`msseg.evaluation.reports`); an empty truth with
an empty prediction never counts as a perfect 1.0, and false positives on a lesion-free scan
stay visible in its lesion FPR (1.0) and its predicted-lesion count.

Voxel-wise, as the paper (Eqs. 4 and 6), for a binary prediction X and ground truth Y:
    Dice = 2 TP / (|X| + |Y|)            empty ground truth -> nan
    sensitivity = TP / (TP + FN)          empty ground truth -> nan
This Dice is the only one: training's validation Dice (over the validation slabs or windows,
`msseg.training.engine.validate`) is `dice_from_counts` of its pooled counts, so it is nan too
when the validation scans have no lesion voxel.

Lesion-wise, as the MSSEG-2016 challenge scores detection (`msseg.evaluation.lesions`: lesions
are connected components of face neighbours; components smaller than `min_size` voxels are
dropped from both masks first, pass `lesions.min_lesion_voxels` of the scan's voxel volume; a
lesion is *detected* only by predicted components that cover more than 10 % of it and do not
mostly lie outside the ground truth, and a predicted lesion is *false* unless the same rule
holds the other way round, so one blob over the head detects nothing):
    lesion TPR = detected / ground-truth lesions          no ground-truth lesion -> nan
    lesion FPR = false / predicted lesions                no predicted lesion -> nan
    lesion F1 = 2 TPR (1 - FPR) / (TPR + 1 - FPR)         no ground-truth lesion -> nan;
                                                          none predicted -> 0.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from msseg.evaluation.lesions import LesionCounts, detect_lesions

__all__ = [
    "METRIC_NAMES",
    "LesionCounts",
    "ScanMetrics",
    "dice",
    "dice_from_counts",
    "scan_metrics",
    "sensitivity",
]

METRIC_NAMES = {
    "dice": "Dice",
    "sensitivity": "Sensitivity",
    "lesion_tpr": "Lesion TPR",
    "lesion_fpr": "Lesion FPR",
    "lesion_f1": "Lesion F1",
}


def _binary(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError(
            f"{name} must be a binary mask (bool or 0/1), found values such as "
            f"{np.unique(mask)[:5].tolist()}; threshold probabilities first (e.g. p >= 16/256)"
        )
    return mask != 0


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = _binary(pred, "pred"), _binary(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}"
        )
    return pred, truth


def dice_from_counts(overlap: float, predicted: float, true: float) -> float:
    """Dice = 2 TP / (|pred| + |truth|) from voxel counts; nan when there is no true voxel.

    Args:
        overlap: voxels both predicted and true (TP).
        predicted, true: voxels predicted, voxels true (|pred|, |truth|).
    Returns:
        Dice in [0, 1], or nan (see the module docstring).
    """
    return math.nan if true == 0 else 2.0 * overlap / (predicted + true)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice = 2 TP / (|pred| + |truth|); nan when `truth` is empty (see the module docstring).

    Args:
        pred, truth: binary masks of the same shape (bool or 0/1).
    Returns:
        Dice in [0, 1], or nan.
    Raises:
        ValueError: for non-binary masks or different shapes.
    """
    pred, truth = _pair(pred, truth)
    return dice_from_counts(int(np.logical_and(pred, truth).sum()), int(pred.sum()),
                            int(truth.sum()))


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Sensitivity = TP / (TP + FN); nan when `truth` is empty.

    Args:
        pred, truth: binary masks of the same shape.
    Returns:
        Sensitivity in [0, 1], or nan.
    Raises:
        ValueError: for non-binary masks or different shapes.
    """
    pred, truth = _pair(pred, truth)
    positives = int(truth.sum())
    return math.nan if positives == 0 else int(np.logical_and(pred, truth).sum()) / positives


@dataclass(frozen=True)
class ScanMetrics:
    """All metrics of one scan (`scan_metrics`); the counts are those of `LesionCounts`."""

    dice: float
    sensitivity: float
    lesion_tpr: float
    lesion_fpr: float
    lesion_f1: float
    true_lesions: int
    predicted_lesions: int
    detected_lesions: int
    false_lesions: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def scan_metrics(pred: np.ndarray, truth: np.ndarray, *, min_size: int = 1) -> ScanMetrics:
    """All metrics of one scan (see the module docstring for the definitions and empty cases).

    Args:
        pred, truth: binary masks of the same shape, e.g. (S, S, S) or the scan's native grid.
        min_size: lesions of fewer voxels are ignored (`lesions.min_lesion_voxels`).
    Returns:
        `ScanMetrics`.
    Raises:
        ValueError: for non-binary masks or different shapes.
    """
    counts = detect_lesions(*_pair(pred, truth), min_size=min_size)
    n_true, n_pred = counts.true_lesions, counts.predicted_lesions
    tpr = counts.detected / n_true if n_true else math.nan
    fpr = counts.false / n_pred if n_pred else math.nan
    if n_true == 0 or n_pred == 0:
        f1 = math.nan if n_true == 0 else 0.0
    else:
        ppv = 1.0 - fpr
        f1 = 0.0 if tpr + ppv == 0 else 2 * tpr * ppv / (tpr + ppv)
    return ScanMetrics(
        dice=dice(pred, truth), sensitivity=sensitivity(pred, truth), lesion_tpr=tpr,
        lesion_fpr=fpr, lesion_f1=f1, true_lesions=n_true, predicted_lesions=n_pred,
        detected_lesions=counts.detected, false_lesions=counts.false,
    )

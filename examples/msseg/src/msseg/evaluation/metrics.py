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

Lesion-wise, as the MSSEG challenge's detection scores: lesions are the connected components of
each mask (26-connectivity in 3D, `scipy.ndimage.label`). Components smaller than `min_size`
voxels are dropped from both masks first (the challenge drops lesions under 3 mm³; pass the
voxel count that matches your spacing). A ground-truth lesion is *detected* when at least
`min_overlap` of its voxels are predicted; a predicted lesion is *false* when fewer than
`min_overlap` of its voxels are ground truth. (The challenge adds overlap-fraction rules for
split and merged lesions; with the default `min_overlap=1` this is the common any-overlap rule.)
    lesion TPR = detected / ground-truth lesions          no ground-truth lesion -> nan
    lesion FPR = false / predicted lesions                no predicted lesion -> nan
    lesion F1 = 2 TPR (1 - FPR) / (TPR + 1 - FPR)         no ground-truth lesion -> nan;
                                                          none predicted -> 0.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "METRIC_NAMES",
    "LesionCounts",
    "ScanMetrics",
    "dice",
    "dice_from_counts",
    "lesion_detection",
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


def _components(mask: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if min_size > 1 and count:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_size
        keep[0] = False
        relabel = np.zeros(count + 1, dtype=labels.dtype)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
        labels, count = relabel[labels], int(keep.sum())
    return labels, count


@dataclass(frozen=True)
class LesionCounts:
    """Lesion counts of one scan (see `lesion_detection`)."""

    true_lesions: int  # ground-truth lesions (after the size filter)
    predicted_lesions: int  # predicted lesions (after the size filter)
    detected: int  # ground-truth lesions with >= min_overlap predicted voxels
    false: int  # predicted lesions with < min_overlap ground-truth voxels


def lesion_detection(
    pred: np.ndarray, truth: np.ndarray, *, min_size: int = 1, min_overlap: int = 1
) -> LesionCounts:
    """Count ground-truth, predicted, detected and false lesions (26-connected components).

    Args:
        pred, truth: binary masks of the same shape (usually 3-D).
        min_size: components with fewer voxels are ignored in both masks.
        min_overlap: voxels of overlap that make a lesion detected / not false.
    Returns:
        `LesionCounts`.
    Raises:
        ValueError: for non-binary masks, different shapes, or min_size/min_overlap < 1.
    """
    if min_size < 1 or min_overlap < 1:
        raise ValueError(f"min_size and min_overlap must be >= 1, got {min_size}, {min_overlap}")
    pred, truth = _pair(pred, truth)
    true_labels, n_true = _components(truth, min_size)
    pred_labels, n_pred = _components(pred, min_size)
    hit_true = np.bincount(true_labels[pred_labels > 0], minlength=n_true + 1)[1:]
    hit_pred = np.bincount(pred_labels[true_labels > 0], minlength=n_pred + 1)[1:]
    return LesionCounts(
        true_lesions=n_true,
        predicted_lesions=n_pred,
        detected=int((hit_true >= min_overlap).sum()),
        false=int((hit_pred < min_overlap).sum()),
    )


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


def scan_metrics(
    pred: np.ndarray, truth: np.ndarray, *, min_size: int = 1, min_overlap: int = 1
) -> ScanMetrics:
    """All metrics of one scan (see the module docstring for the definitions and empty cases).

    Args:
        pred, truth: binary masks of the same shape, e.g. (S, S, S) or the scan's native grid.
        min_size, min_overlap: lesion-wise parameters, see `lesion_detection`.
    Returns:
        `ScanMetrics`.
    Raises:
        ValueError: for non-binary masks or different shapes.
    """
    counts = lesion_detection(pred, truth, min_size=min_size, min_overlap=min_overlap)
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

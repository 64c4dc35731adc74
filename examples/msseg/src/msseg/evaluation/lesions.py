"""Lesions: the connected components of a mask, and the MSSEG-2016 rule that decides which were
found.

Labelling (`label_lesions`, the one place msseg turns a mask into lesions: scores, tables): a
lesion is a connected component of face neighbours (`LESION_CONNECTIVITY`: 6 in 3D, as the
challenge's own tool, ITK's default) larger than `MIN_LESION_MM3` (3 mm³; components of that
volume or less are ignored, as the tool keeps only larger ones). The lesion map and table of
`predict` (`msseg.evaluation.lesion_table`) label with this rule and these defaults, and let a
user choose another connectivity (`CONNECTIVITIES`, in neighbours: 6, 18 or 26).

Detection (`detect_lesions`), the rule of the MSSEG-2016 challenge (Commowick et al., Sci Rep
2018, section 11; the defaults of its evaluation tool, animaSegPerfAnalyzer): a ground-truth
lesion is *detected* when
1. more than `MIN_OVERLAP` (10 %) of its voxels are covered by predicted lesions, and
2. the predicted lesions covering it, taken from the largest overlap down until they make up
   `MODERATOR` (65 %) of the covered voxels, each lie outside the ground truth by no more than
   `MAX_OUTSIDE` (70 %) of their own voxels.
A predicted lesion is *true* by the same rule with the roles swapped (covered by more than 10 %
ground truth, whose covering lesions each lie at most 70 % outside the prediction); the others
are false. So one component over the whole head detects nothing (it lies almost all outside the
lesions) and is one false lesion; a lesion split in two is detected, both parts true; two
lesions merged by one component are both detected when the bridge is small.

numpy and scipy are imported when a function runs, so the command line's help reads these
constants at once.

Public API:
    LESION_CONNECTIVITY, MIN_LESION_MM3, MIN_OVERLAP, MAX_OUTSIDE, MODERATOR
    CONNECTIVITIES, DEFAULT_CONNECTIVITY   neighbours -> scipy's connectivity; the default
    LesionCounts(true_lesions, predicted_lesions, detected, false)
    voxel_mm3(affine) -> float             one voxel's volume on a grid with this affine
    min_lesion_voxels(voxel_mm3, min_mm3=MIN_LESION_MM3) -> int
    label_lesions(mask, *, voxel_mm3, min_mm3=MIN_LESION_MM3, connectivity=...) -> (labels, n)
    detect_lesions(pred, truth, *, min_size=1, ...) -> LesionCounts
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONNECTIVITY",
    "LESION_CONNECTIVITY",
    "MAX_OUTSIDE",
    "MIN_LESION_MM3",
    "MIN_OVERLAP",
    "MODERATOR",
    "LesionCounts",
    "detect_lesions",
    "label_lesions",
    "min_lesion_voxels",
    "voxel_mm3",
]

LESION_CONNECTIVITY = 1  # scipy's rank: 1 = face neighbours (6 in 3D), as the challenge's tool
MIN_LESION_MM3 = 3.0  # lesions of this volume or less are ignored (the tool keeps larger ones)
MIN_OVERLAP = 0.1  # alpha: a lesion is detected when more than this fraction of it is covered
MAX_OUTSIDE = 0.7  # beta: a covering component may lie outside at most this fraction of itself
MODERATOR = 0.65  # gamma: the largest covering components, up to this fraction, are checked
# Neighbours that join voxels into one lesion, as people count them -> scipy's connectivity.
CONNECTIVITIES = {6: 1, 18: 2, 26: 3}
DEFAULT_CONNECTIVITY = 6  # LESION_CONNECTIVITY, in neighbours


@dataclass(frozen=True)
class LesionCounts:
    """Lesion counts of one scan (`detect_lesions`)."""

    true_lesions: int  # ground-truth lesions (larger than the minimum size)
    predicted_lesions: int  # predicted lesions (larger than the minimum size)
    detected: int  # ground-truth lesions detected by the rule
    false: int  # predicted lesions that are not true by the rule


def voxel_mm3(affine: np.ndarray) -> float:
    """One voxel's volume in mm³ on a grid with this (4, 4) voxel-to-mm affine (e.g.
    `msseg.io.orientation.Geometry.affine`), for `label_lesions`."""
    import numpy as np

    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def min_lesion_voxels(voxel_mm3: float, min_mm3: float = MIN_LESION_MM3) -> int:
    """The fewest voxels of a lesion larger than `min_mm3`, on voxels of `voxel_mm3`.

    Args:
        voxel_mm3: one voxel's volume (> 0).
        min_mm3: lesions of this volume or less are ignored.
    Returns:
        floor(min_mm3 / voxel_mm3) + 1, at least 1 (4 at 1 mm³ and 3 mm³).
    Raises:
        ValueError: a voxel volume that is not positive, or a negative minimum.
    """
    if not voxel_mm3 > 0 or min_mm3 < 0:
        raise ValueError(f"need voxel_mm3 > 0 and min_mm3 >= 0; got {voxel_mm3}, {min_mm3}")
    return math.floor(min_mm3 / voxel_mm3 + 1e-9) + 1


def label_lesions(mask: np.ndarray, *, voxel_mm3: float, min_mm3: float = MIN_LESION_MM3,
                  connectivity: int = LESION_CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Number the lesions of a binary mask (see the module docstring).

    Args:
        mask: binary array (bool or 0/1), any dimension (usually (X, Y, Z)).
        voxel_mm3: one voxel's volume, for the size limit.
        min_mm3: components of this volume or less are left out (0: keep all).
        connectivity: scipy's: 1 (faces), 2 (and edges) or 3 (and corners).
    Returns:
        (labels, count): int32 array of the mask's shape, 0 outside lesions and 1..count
        inside, numbered in scan order; the number of lesions.
    Raises:
        ValueError: as `min_lesion_voxels`, or a connectivity other than 1, 2, 3.
    """
    import numpy as np
    from scipy import ndimage

    if connectivity not in CONNECTIVITIES.values():
        raise ValueError(f"connectivity must be 1 (faces), 2 (and edges) or 3 (and corners); "
                         f"found {connectivity!r}")
    min_size = min_lesion_voxels(voxel_mm3, min_mm3)
    structure = ndimage.generate_binary_structure(np.ndim(mask),
                                                  min(connectivity, np.ndim(mask)))
    labels, count = ndimage.label(np.asarray(mask) != 0, structure=structure)
    labels = labels.astype(np.int32, copy=False)
    if min_size > 1 and count:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_size
        keep[0] = False
        relabel = np.zeros(count + 1, dtype=np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels, count = relabel[labels], int(keep.sum())
    return labels, int(count)


def detect_lesions(
    pred: np.ndarray, truth: np.ndarray, *, min_size: int = 1,
    min_overlap: float = MIN_OVERLAP, max_outside: float = MAX_OUTSIDE,
    moderator: float = MODERATOR,
) -> LesionCounts:
    """Count ground-truth, predicted, detected and false lesions by the MSSEG-2016 rule.

    Args:
        pred, truth: binary masks of the same shape (bool or 0/1).
        min_size: components with fewer voxels are ignored in both masks
            (`min_lesion_voxels` of the scan's voxel volume).
        min_overlap, max_outside, moderator: the rule's alpha, beta and gamma, in [0, 1].
    Returns:
        `LesionCounts`.
    Raises:
        ValueError: fractions outside [0, 1], a `min_size` below 1, or masks of different
            shapes.
    """
    import numpy as np

    for name, value in (("min_overlap", min_overlap), ("max_outside", max_outside),
                        ("moderator", moderator)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1 voxel, got {min_size}")
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"pred and truth must have the same shape, got {np.shape(pred)} and "
                         f"{np.shape(truth)}")
    true_labels, n_true = _components(truth, min_size)
    pred_labels, n_pred = _components(pred, min_size)
    # overlap[i, j]: voxels of ground-truth lesion i in predicted lesion j (0 = background)
    pairs = true_labels.astype(np.int64) * (n_pred + 1) + pred_labels
    overlap = np.bincount(pairs.ravel(), minlength=(n_true + 1) * (n_pred + 1)).reshape(
        n_true + 1, n_pred + 1)
    rule = (min_overlap, max_outside, moderator)
    return LesionCounts(true_lesions=n_true, predicted_lesions=n_pred,
                        detected=_found(overlap, *rule), false=n_pred - _found(overlap.T, *rule))


def _components(mask: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """`label_lesions` with the size limit given in voxels."""
    return label_lesions(mask, voxel_mm3=1.0, min_mm3=float(min_size - 1))


def _found(overlap: np.ndarray, min_overlap: float, max_outside: float,
           moderator: float) -> int:
    """How many lesions of the rows are found by the columns' lesions (row and column 0 are
    the background), by the rule of the module docstring."""
    import numpy as np

    sizes = overlap.sum(axis=0)  # voxels of each column lesion
    outside = np.divide(overlap[0], sizes, out=np.zeros(len(sizes)), where=sizes > 0)
    found = 0
    for row in overlap[1:]:
        covered = int(row[1:].sum())
        if not covered / int(row.sum()) > min_overlap:
            continue
        share, clean = 0.0, True
        for column in np.argsort(-row[1:], kind="stable") + 1:  # the largest overlap first
            if share >= moderator or row[column] == 0:
                break
            if outside[column] > max_outside:
                clean = False
                break
            share += row[column] / covered
        found += clean
    return found

"""From the working space back to the scan's own grid: the decision, then the labels.

A prediction is a probability map in the working space (`msseg.recipes`). The lesion mask
is decided *there*, at the threshold (the paper's 16/256 by default, on its 256³ cube as in the
paper), and the binary decision goes back to the native grid as labels, the same way as a
ground-truth mask that went into the working space (`WorkingGrid.to_native(labels=True)`). So
the way back adds no loss of its own: a perfect working-space prediction scores on the native
grid exactly what the label round trip of the consensus scores (`msseg ceiling` measures it).
Thresholding after interpolating the probabilities instead spreads the lesions (interpolation
smears probability, and a low threshold keeps the smear).

The probability map written next to the mask is interpolated linearly, for viewing; cutting it
on the native grid does not give the mask exactly.

Saved with `msseg.io.nifti.save_nifti` and the scan's geometry, the arrays carry the FLAIR's
affine, qform and sform, so they overlay it in any viewer.

Public API:
    NativePrediction(probability, mask)
    to_native(probability, grid, *, threshold=None) -> NativePrediction
    mask_to_native(mask, grid) -> (X, Y, Z) uint8 {0, 1}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msseg.recipes.paper import PAPER_THRESHOLD
from msseg.recipes.recipe import WorkingGrid

__all__ = ["NativePrediction", "mask_to_native", "to_native"]


@dataclass(frozen=True, eq=False)
class NativePrediction:
    """A prediction on the scan's own grid, in the file's storage order."""

    probability: np.ndarray  # (X, Y, Z) float32 in [0, 1], interpolated linearly
    mask: np.ndarray  # (X, Y, Z) uint8 {0, 1}: the working-space decision, mapped as labels


def to_native(
    probability: np.ndarray, grid: WorkingGrid, *, threshold: float | None = None
) -> NativePrediction:
    """The native-grid mask and probability map of a working-space probability map.

    Args:
        probability: (D, H, W) float probabilities in the working space of `grid`.
        grid: the scan's working grid (`Preprocessed.grid`, the cache).
        threshold: decision level in the working space; None = 16/256 (the paper's).
    Returns:
        A `NativePrediction`.
    Raises:
        ValueError: a non-float map (a mask already decided: use `mask_to_native`), a
            threshold outside (0, 1], a shape other than the grid's, or non-finite values.
    """
    probability = np.asarray(probability)
    if not np.issubdtype(probability.dtype, np.floating):
        raise ValueError(f"to_native needs a float probability map; found dtype "
                         f"{probability.dtype} (for a decided mask use mask_to_native).")
    level = PAPER_THRESHOLD if threshold is None else float(threshold)
    if not 0 < level <= 1:
        raise ValueError(f"threshold must be in (0, 1]; found {threshold}")
    native = grid.to_native(probability, labels=False)
    np.clip(native, 0.0, 1.0, out=native)
    return NativePrediction(probability=native,
                            mask=grid.to_native(probability >= level, labels=True))


def mask_to_native(mask: np.ndarray, grid: WorkingGrid) -> np.ndarray:
    """A working-space mask back on the scan's grid, as labels.

    Args:
        mask: (D, H, W) bool or {0, 1} mask in the working space of `grid`.
        grid: the scan's working grid.
    Returns:
        (X, Y, Z) uint8 {0, 1} in the file's storage order.
    Raises:
        ValueError: values other than 0 and 1, or a shape other than the grid's.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ and ((mask != 0) & (mask != 1)).any():
        raise ValueError(f"expected a binary mask (bool or 0/1); found values such as "
                         f"{np.unique(mask)[:5].tolist()}. Threshold probabilities first, or "
                         f"use to_native.")
    return grid.to_native(mask, labels=True)

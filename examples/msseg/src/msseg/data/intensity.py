"""FLAIR intensities to [-1, 1]: the range is taken on the scan, applied after resampling.

Every recipe scales its working volume this way. Two methods
(`msseg.recipes.recipe.NORMALISATIONS`):
- "minmax" (the paper): the scan's [min, max] maps to [-1, 1]. One hot voxel squeezes the whole
  scan into a sliver, and negative values (real in registered, N4-corrected scans) set -1.
- "percentile" (robust, the real-data default): the (low, high) percentiles of the head map to
  [-1, 1] and everything beyond is clipped. The head is the non-zero voxels (the convention of
  MONAI's ``nonzero=True``): skull-stripped and zero-filled scanner images have an exactly zero
  background, which would otherwise pull the low percentile to 0 and the high one into the
  tissue; a scan without zero voxels uses all of them.

The range is measured on the scan's own voxels *before* resampling and the resampled volume is
clipped to it (`scale`), so spline overshoot at sharp edges (skull-stripped borders, order-2
resampling) can neither set the range nor leave values outside [-1, 1].

Public API:
    foreground(volume) -> bool mask of the voxels the percentiles are taken on
    intensity_range(volume, *, method="minmax", percentiles=None) -> (low, high)
    scale(volume, low, high) -> float32 in [-1, 1]
    normalise(volume, *, method="minmax", percentiles=None) -> float32 in [-1, 1]
"""

from __future__ import annotations

import numpy as np

from msseg.recipes.recipe import DEFAULT_PERCENTILES, Normalisation, check_scaling

__all__ = ["foreground", "intensity_range", "normalise", "scale"]


def foreground(volume: np.ndarray) -> np.ndarray:
    """The voxels that belong to the head: the non-zero ones, or all when none is zero.

    Args:
        volume: any-shape real array.
    Returns:
        bool array of the same shape.
    """
    volume = np.asarray(volume)
    head = volume != 0
    return head if head.any() and not head.all() else np.ones(volume.shape, bool)


def intensity_range(
    volume: np.ndarray,
    *,
    method: Normalisation = "minmax",
    percentiles: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """The intensities that map to -1 and +1.

    Args:
        volume: the scan's voxels, any shape; not modified.
        method: "minmax" (the scan's min and max) or "percentile" (percentiles of `foreground`).
        percentiles: (low, high) in [0, 100] for "percentile"; None = (0.5, 99.5).
    Returns:
        (low, high) with low < high.
    Raises:
        ValueError: unknown method, bad percentiles, or an empty range (a constant scan, or a
            head whose percentiles coincide): the message gives the values found.
    """
    check_scaling(method, percentiles, name="method")
    volume = np.asarray(volume, dtype=np.float32)
    if method == "minmax":
        low, high = float(volume.min()), float(volume.max())
    else:
        bounds = percentiles or DEFAULT_PERCENTILES
        low, high = (float(v) for v in np.percentile(volume[foreground(volume)], bounds))
    if not np.float32(high) > np.float32(low):
        raise ValueError(f"cannot normalise: intensity range [{low}, {high}] is empty "
                         f"(method={method!r}); the volume is constant over that range. Check "
                         f"the file, or use method='minmax' for a scan with few distinct values.")
    return low, high


def scale(volume: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] to [-1, 1] linearly and clip everything beyond.

    Args:
        volume: any-shape real array (e.g. the resampled scan); not modified.
        low, high: from `intensity_range`, low < high.
    Returns:
        float32 array, same shape, values in [-1, 1] (exactly -1 and 1 at low and high).
    """
    low32, high32 = np.float32(low), np.float32(high)
    clipped = np.clip(np.asarray(volume, dtype=np.float32), low32, high32)
    return (clipped - low32) / (high32 - low32) * np.float32(2) - np.float32(1)


def normalise(
    volume: np.ndarray,
    *,
    method: Normalisation = "minmax",
    percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scale a volume to [-1, 1] by its own range (`intensity_range`, then `scale`).

    Args:
        volume: any-shape real array; not modified.
        method, percentiles: as `intensity_range`.
    Returns:
        float32 array, same shape, values in [-1, 1].
    Raises:
        ValueError: as `intensity_range`.
    """
    return scale(volume, *intensity_range(volume, method=method, percentiles=percentiles))

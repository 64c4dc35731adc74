"""From the canonical cube back to the scan's own grid, and writing the result as NIfTI.

The round trip a prediction makes:
1. the prediction lives in the S³ canonical cube (axis 0 = left → right);
2. it is resampled to the canonical-frame native shape with `scipy.ndimage.zoom` (linear, order 1,
   corner voxel centres on corner voxel centres: the exact geometric inverse of the forward zoom);
3. the axes are flipped/permuted back into the file's storage order (exact, no interpolation);
4. the decision is taken on the native grid: a probability map is cut at `threshold` (the paper's
   16/256 by default) *after* resampling, so the written mask is the threshold's iso-surface
   interpolated between cube voxels rather than blocky nearest-neighbour copies; a boolean map
   (a decision already taken in the cube) is resampled as 0/1 and cut at 0.5, its boundary.

Saved with `msseg.io.nifti.save_nifti` and the scan's geometry, the arrays carry the FLAIR's
affine, qform and sform, so they overlay it in any viewer.

Public API:
    probability_to_native(probability, geometry) -> (X, Y, Z) float32 in [0, 1]
    prediction_to_native(prediction, geometry, *, threshold=None) -> (X, Y, Z) uint8 {0, 1}
    to_native(probability, geometry, *, threshold=None) -> NativePrediction (both of the above)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from msseg.config import PAPER_THRESHOLD
from msseg.io.orientation import Geometry


@dataclass(frozen=True, eq=False)
class NativePrediction:
    """A prediction on the scan's own grid, in the file's storage order."""

    probability: np.ndarray  # (X, Y, Z) float32 in [0, 1]
    mask: np.ndarray  # (X, Y, Z) uint8 {0, 1}: probability >= the threshold


def probability_to_native(probability: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a cube-frame map back onto the scan's grid (linear resampling, then reorientation).

    Args:
        probability: (S, S, S) real array in the canonical cube; not modified.
        geometry: the scan's geometry (from `load_scan` or the cache).

    Returns:
        (X, Y, Z) float32 in the file's storage order, clipped to [0, 1].

    Raises:
        ValueError: probability is not a cube, or has non-finite values.
    """
    probability = np.asarray(probability)
    if probability.ndim != 3 or len(set(probability.shape)) != 1:
        raise ValueError(f"expected a cube prediction (S, S, S); found {probability.shape}. "
                         "Recompose slabs first (msseg.data.slabs.recompose_slabs).")
    cube = probability.astype(np.float32)
    if not np.all(np.isfinite(cube)):
        raise ValueError("prediction contains NaN or infinite values; expected probabilities.")
    target = geometry.canonical_shape
    factors = [n / s for n, s in zip(target, cube.shape, strict=True)]
    canonical = ndimage.zoom(cube, factors, order=1, output=np.float32)
    np.clip(canonical, 0.0, 1.0, out=canonical)
    return geometry.from_canonical(canonical)


def prediction_to_native(
    prediction: np.ndarray, geometry: Geometry, *, threshold: float | None = None
) -> np.ndarray:
    """Binary lesion mask on the scan's grid from a cube-frame prediction.

    Args:
        prediction: (S, S, S) float probability map in [0, 1], or bool mask (a decision taken
            in the cube; resampled as 0/1 and cut at its boundary level 0.5).
        geometry: the scan's geometry.
        threshold: decision level for a float map, applied after resampling; None = 16/256
            (the paper's). Must be None for a bool mask.

    Returns:
        (X, Y, Z) uint8 {0, 1} in the file's storage order.

    Raises:
        ValueError: integer dtype (ambiguous), threshold outside (0, 1], threshold with a bool
            mask, or the errors of `probability_to_native`.
    """
    level = _decision_level(prediction, threshold)
    return (probability_to_native(prediction, geometry) >= level).astype(np.uint8)


def to_native(
    probability: np.ndarray, geometry: Geometry, *, threshold: float | None = None
) -> NativePrediction:
    """The native-grid probability map of a cube-frame float map, and its mask.

    Args:
        probability: (S, S, S) float probability map in the canonical cube.
        geometry: the scan's geometry.
        threshold: decision level, applied after resampling; None = 16/256 (the paper's).
    Returns:
        A `NativePrediction`.
    Raises:
        ValueError: as `prediction_to_native` (a bool map has no probabilities: pass floats).
    """
    if np.asarray(probability).dtype == np.bool_:
        raise ValueError("to_native needs a float probability map; found a bool mask "
                         "(use prediction_to_native for a decision taken in the cube).")
    level = _decision_level(probability, threshold)
    native = probability_to_native(probability, geometry)
    return NativePrediction(probability=native, mask=(native >= level).astype(np.uint8))


def _decision_level(prediction: np.ndarray, threshold: float | None) -> float:
    dtype = np.asarray(prediction).dtype
    if dtype == np.bool_:
        if threshold is not None:
            raise ValueError(f"threshold={threshold} given for a boolean prediction, which is "
                             "already a decision; pass the float probability map instead.")
        return 0.5
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"prediction dtype {dtype} is ambiguous; pass a float probability map "
                         "or a bool mask (e.g. mask.astype(bool)).")
    level = PAPER_THRESHOLD if threshold is None else float(threshold)
    if not 0 < level <= 1:
        raise ValueError(f"threshold must be in (0, 1]; found {threshold}")
    return level

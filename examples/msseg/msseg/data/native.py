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

The written files carry the FLAIR's affine, qform and sform, so they overlay it in any viewer.

Public API:
    PAPER_THRESHOLD = 16 / 256
    probability_to_native(probability, geometry) -> (X, Y, Z) float32 in [0, 1]
    prediction_to_native(prediction, geometry, *, threshold=None) -> (X, Y, Z) uint8 {0, 1}
    write_prediction(prediction, geometry, path, *, threshold=None, probability_path=None)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from msseg.io.nifti import save_nifti
from msseg.io.orientation import Geometry

PAPER_THRESHOLD = 16 / 256


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


def write_prediction(
    prediction: np.ndarray,
    geometry: Geometry,
    path: str | Path,
    *,
    threshold: float | None = None,
    probability_path: str | Path | None = None,
) -> Path:
    """Write the native-space lesion mask (and optionally the probability map) as NIfTI.

    Args:
        prediction: (S, S, S) float probability map or bool mask (see `prediction_to_native`).
        geometry: the scan's geometry; outputs get its affine, qform and sform.
        path: mask destination (.nii.gz), uint8 {0, 1}; written atomically.
        threshold: as `prediction_to_native`.
        probability_path: if given and `prediction` is a float map, also write the native
            probability map there (float32), atomically.

    Returns:
        The mask path.

    Raises:
        ValueError: as `prediction_to_native`; probability_path with a bool prediction.
    """
    level = _decision_level(prediction, threshold)
    if probability_path is not None and np.asarray(prediction).dtype == np.bool_:
        raise ValueError("probability_path needs a float probability map; found a bool mask.")
    native = probability_to_native(prediction, geometry)
    if probability_path is not None:
        save_nifti(native, geometry, probability_path)
    return save_nifti((native >= level).astype(np.uint8), geometry, path)


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

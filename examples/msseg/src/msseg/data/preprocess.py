"""Preprocessing a scan into the paper's canonical cube (settings: `msseg.config.PipelineConfig`).

Steps (paper §3.2), for FLAIR and mask alike unless noted:
1. reorient by the affine so axis 0 is left → right (sagittal slices; `msseg.io.orientation`);
2. resample the whole array to S³ with `scipy.ndimage.zoom` (voxel size ignored, as in the
   paper): spline order 2 for FLAIR, order 0 (nearest) for the mask;
3. scale FLAIR to [-1, 1]: "minmax" (paper) or "percentile" (clip to robust percentiles first);
4. the model sees slabs (`msseg.data.slabs`) with the FLAIR copied to its 3 input channels.

The way back to the scan's own grid is `msseg.data.native`; the cube cache is `msseg.data.cache`.

Public API:
    resample_to_cube(volume, *, size, order) -> (S, S, S) float32
    normalise(volume, *, method="minmax", percentiles=None) -> float32 in [-1, 1]
    Preprocessed(flair, mask, geometry)
    preprocess_scan(scan, config) -> Preprocessed
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from msseg.config import (
    DEFAULT_PERCENTILES,
    NORMALISATIONS,
    Normalisation,
    PipelineConfig,
    check_percentiles,
)
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """A scan in the canonical cube.

    Attributes:
        flair: (S, S, S) float32 in [-1, 1]; axis 0 = sagittal slices (left → right).
        mask: (S, S, S) uint8 {0, 1}, or None for prediction-only scans.
        geometry: the native grid, for `msseg.data.native` to map predictions back.
    """

    flair: np.ndarray
    mask: np.ndarray | None
    geometry: Geometry


def resample_to_cube(volume: np.ndarray, *, size: int, order: int) -> np.ndarray:
    """Resample a 3-D array to (size, size, size) with `scipy.ndimage.zoom`.

    Corner voxel centres map onto corner voxel centres (zoom's default grid), per axis
    independently, so the voxel size is ignored as in the paper.

    Args:
        volume: (X, Y, Z) array; not modified.
        size: output edge S.
        order: spline order (0 nearest, 1 linear, 2 the paper's FLAIR order, ...).

    Returns:
        (S, S, S) float32.

    Raises:
        ValueError: volume is not 3-D.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume; found shape {volume.shape}")
    factors = [size / n for n in volume.shape]
    source = volume if order == 0 else volume.astype(np.float32, copy=False)
    out = ndimage.zoom(source, factors, order=order, output=source.dtype)
    return out.astype(np.float32, copy=False)


def normalise(
    volume: np.ndarray,
    *,
    method: Normalisation = "minmax",
    percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scale intensities to [-1, 1].

    Args:
        volume: any-shape real array; not modified.
        method: "minmax" maps [min, max] to [-1, 1] (paper); "percentile" first clips to the
            given percentiles, which ignores a few extreme voxels (fat, artefacts, noise spikes).
        percentiles: (low, high) in [0, 100] for "percentile"; None = (0.5, 99.5).

    Returns:
        float32 array, same shape, values in [-1, 1].

    Raises:
        ValueError: unknown method, bad percentiles, or a constant volume (nothing to scale).
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"method must be one of {NORMALISATIONS}; found {method!r}")
    volume = np.asarray(volume, dtype=np.float32)
    if method == "minmax":
        low, high = float(volume.min()), float(volume.max())
    else:
        bounds = percentiles or DEFAULT_PERCENTILES
        check_percentiles(bounds)
        low, high = (float(v) for v in np.percentile(volume, bounds))
    low32, high32 = np.float32(low), np.float32(high)
    if not high32 > low32:
        raise ValueError(f"cannot normalise: intensity range [{low}, {high}] is empty "
                         f"(method={method!r}); the volume is constant over that range.")
    scaled = (np.clip(volume, low32, high32) - low32) / (high32 - low32)  # exactly 0 and 1 at ends
    return scaled * np.float32(2) - np.float32(1)


def preprocess_scan(scan: Scan, config: PipelineConfig) -> Preprocessed:
    """Reorient, resample and normalise one scan into the canonical cube.

    Args:
        scan: a validated scan (`msseg.io.nifti.load_scan`); not modified.
        config: pipeline settings (size, orders, normalisation).

    Returns:
        `Preprocessed` with flair (S, S, S) float32 in [-1, 1], mask (S, S, S) uint8 or None.
    """
    canonical = scan.geometry.to_canonical(scan.flair)
    flair = resample_to_cube(canonical, size=config.size, order=config.flair_order)
    flair = normalise(flair, method=config.normalisation, percentiles=config.percentiles)
    mask = None
    if scan.mask is not None:
        canonical_mask = scan.geometry.to_canonical(scan.mask)
        cube = resample_to_cube(canonical_mask, size=config.size, order=config.mask_order)
        mask = (cube >= 0.5).astype(np.uint8)
    return Preprocessed(flair=flair, mask=mask, geometry=scan.geometry)

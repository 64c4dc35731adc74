"""Preprocessing a scan into the paper's canonical cube, and the settings that control it.

Steps (paper §3.2), for FLAIR and mask alike unless noted:
1. reorient by the affine so axis 0 is left → right (sagittal slices; `msseg.io.orientation`);
2. resample the whole array to S³ with `scipy.ndimage.zoom` (voxel size ignored, as in the
   paper): spline order 2 for FLAIR, order 0 (nearest) for the mask;
3. scale FLAIR to [-1, 1]: "minmax" (paper) or "percentile" (clip to robust percentiles first);
4. the model sees 3 identical channels (`to_three_channels`) of slabs (`msseg.data.slabs`).

The way back to the scan's own grid is `msseg.data.native`; the cube cache is `msseg.data.cache`.

Public API:
    PipelineConfig(size=256, slab=16, step=8, flair_order=2, mask_order=0,
                   normalisation="minmax", percentiles=None)
    resample_to_cube(volume, *, size, order) -> (S, S, S) float32
    normalise(volume, *, method="minmax", percentiles=None) -> float32 in [-1, 1]
    to_three_channels(array) -> (..., 3, D, H, W)
    Preprocessed(flair, mask, geometry)
    preprocess_scan(scan, config) -> Preprocessed
    add_pipeline_arguments(parser) / config_from_args(args) for command-line tools
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from msseg.data.slabs import n_slabs
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry

Normalisation = Literal["minmax", "percentile"]
NORMALISATIONS: tuple[str, ...] = ("minmax", "percentile")
DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the data pipeline; invalid combinations raise ValueError on construction."""

    size: int = 256  # edge S of the canonical cube (paper: 256)
    slab: int = 16  # slices per slab = network input depth (paper: 16)
    step: int = 8  # distance between slab starts (paper: 8 → 31 slabs)
    flair_order: int = 2  # spline order resampling FLAIR (paper: 2)
    mask_order: int = 0  # spline order resampling the mask; > 0 is binarised at 0.5 (paper: 0)
    normalisation: Normalisation = "minmax"  # "minmax" (paper) or "percentile"
    percentiles: tuple[float, float] | None = None  # "percentile" only; None = (0.5, 99.5)

    def __post_init__(self) -> None:
        n_slabs(self.size, slab=self.slab, step=self.step)
        for name in ("flair_order", "mask_order"):
            order = getattr(self, name)
            if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 5:
                raise ValueError(f"{name} must be a spline order 0..5 (scipy.ndimage.zoom); "
                                 f"found {order!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}; found "
                             f"{self.normalisation!r}")
        if self.percentiles is not None:
            if self.normalisation != "percentile":
                raise ValueError(f"percentiles={self.percentiles} only apply to "
                                 "normalisation='percentile'; drop them or switch method.")
            _check_percentiles(self.percentiles)
            object.__setattr__(self, "percentiles", tuple(float(p) for p in self.percentiles))

    @property
    def n_slabs(self) -> int:
        """Slabs per scan: (size - slab) / step + 1."""
        return n_slabs(self.size, slab=self.slab, step=self.step)

    def cube_settings(self) -> dict[str, Any]:
        """The fields that change the preprocessed cube (slab and step do not)."""
        fields = asdict(self)
        del fields["slab"], fields["step"]
        if self.normalisation == "percentile":
            fields["percentiles"] = list(self.percentiles or DEFAULT_PERCENTILES)
        return fields


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
        _check_percentiles(bounds)
        low, high = (float(v) for v in np.percentile(volume, bounds))
    low32, high32 = np.float32(low), np.float32(high)
    if not high32 > low32:
        raise ValueError(f"cannot normalise: intensity range [{low}, {high}] is empty "
                         f"(method={method!r}); the volume is constant over that range.")
    scaled = (np.clip(volume, low32, high32) - low32) / (high32 - low32)  # exactly 0 and 1 at ends
    return scaled * np.float32(2) - np.float32(1)


def to_three_channels(array: np.ndarray) -> np.ndarray:
    """Copy a single-channel volume into 3 identical channels (VGG expects RGB).

    Args:
        array: (..., D, H, W), e.g. slabs (n, slab, S, S) or one slab (slab, S, S).

    Returns:
        New array (..., 3, D, H, W), e.g. (n, 3, slab, S, S).

    Raises:
        ValueError: fewer than 3 dims.
    """
    array = np.asarray(array)
    if array.ndim < 3:
        raise ValueError(f"expected (..., D, H, W); found shape {array.shape}")
    return np.repeat(np.expand_dims(array, -4), 3, axis=-4)


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


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --size/--slab/--step/--normalisation/--percentiles with the paper's defaults."""
    group = parser.add_argument_group("pipeline (defaults = paper)")
    group.add_argument("--size", type=int, default=256, help="cube edge S (default 256)")
    group.add_argument("--slab", type=int, default=16, help="slices per slab (default 16)")
    group.add_argument("--step", type=int, default=8, help="slab stride (default 8)")
    group.add_argument("--normalisation", choices=NORMALISATIONS, default="minmax",
                       help="FLAIR scaling to [-1, 1] (default minmax, as the paper)")
    group.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="clip percentiles for --normalisation percentile (0.5 99.5)")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Build a PipelineConfig from `add_pipeline_arguments` options.

    Raises:
        ValueError: invalid combination (see PipelineConfig).
    """
    percentiles = tuple(args.percentiles) if args.percentiles is not None else None
    return PipelineConfig(size=args.size, slab=args.slab, step=args.step,
                          normalisation=args.normalisation, percentiles=percentiles)


def _check_percentiles(bounds: tuple[float, float]) -> None:
    if len(bounds) != 2 or not 0 <= bounds[0] < bounds[1] <= 100:
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100; "
                         f"found {bounds}")

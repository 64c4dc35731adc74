"""The working space: where a scan's arrays go for the network, and the way back to its grid.

A `WorkingGrid` belongs to one scan. It holds the scan's native grid (`Geometry`) and the
recipe's map to the working array (D, H, W), whose axis 0 is the planar axis along which slabs
are cut, and back:

- `CubeGrid` (recipe "paper", the paper's own method): reorient to RAS+ (exact flips and
  permutations), then resample the whole array to S³ with `scipy.ndimage.zoom` (corner voxel
  centres on corner voxel centres, voxel size ignored). Axis 0 runs left -> right: sagittal
  slices.
- `SpacingGrid` (recipe "spacing", for real scans): reorient to RAS+, put the thickest axis
  first (the acquisition's slice direction; within 1 % of each other the paper's sagittal axis
  stays first), then MONAI's `Spacing` resamples the two in-plane axes to `spacing_mm` (an axis
  within 0.1 % of it keeps its own voxels). Along
  the planar axis the scan keeps its own slices, unless they are finer than `spacing_mm` (then
  they are resampled to it): thick slices are never interpolated. The way back is MONAI's
  `SpatialResample` onto the source grid, which is what `Spacing.inverse` runs.

Both ways take `labels=True` for masks (spline order `mask_order` both ways, cut at 0.5: with
order 0 a mask that goes there and back only loses what the resampling itself loses) or
`labels=False` for images (FLAIR there with `flair_order`; probability maps back linearly).

    grid = plan_grid(scan.geometry, PipelineConfig(recipe="spacing", spacing_mm=1.0))
    working = grid.to_working(scan.flair, labels=False)    # (D, H, W)
    back = grid.to_native(working_mask, labels=True)       # (X, Y, Z) uint8, the scan's grid

Public API:
    WorkingGrid, CubeGrid, SpacingGrid       .to_working / .to_native / .to_json
    plan_grid(geometry, config) -> WorkingGrid
    grid_from_json(data) -> WorkingGrid
    voxel_mm(geometry) -> (3,) voxel size along the canonical (R, A, S) axes
    finest_spacing(records) -> float         the default `spacing_mm` of a dataset
    with_data_spacing(config, records) -> TrainConfig with spacing_mm fixed
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from msseg.config import PipelineConfig, TrainConfig
from msseg.io.discovery import ScanRecord
from msseg.io.orientation import Geometry

__all__ = [
    "CubeGrid",
    "SpacingGrid",
    "WorkingGrid",
    "finest_spacing",
    "grid_from_json",
    "plan_grid",
    "resample_to_cube",
    "voxel_mm",
    "with_data_spacing",
]

TIE = 1.01  # voxel sizes within 1 % of each other count as equal (isotropic: sagittal first)
SAME = 1e-3  # a target within 0.1 % of the scan's own voxel size keeps the scan's (no resampling)


def voxel_mm(geometry: Geometry) -> np.ndarray:
    """Voxel size in mm along the canonical axes (R, A, S) of a scan's grid.

    Returns:
        (3,) float64: the length of each stored axis' affine column, in canonical order.
    """
    sizes = np.linalg.norm(np.asarray(geometry.affine)[:3, :3], axis=0)
    out = np.empty(3)
    out[geometry.ornt[:, 0].astype(int)] = sizes
    return out


def resample_to_cube(volume: np.ndarray, *, size: int, order: int) -> np.ndarray:
    """Resample a 3-D array to (size, size, size) with `scipy.ndimage.zoom` (the paper's cube).

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
    return _zoom(volume, (size,) * 3, order)


def _zoom(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    factors = [n / s for n, s in zip(shape, volume.shape, strict=True)]
    source = volume if order == 0 else volume.astype(np.float32, copy=False)
    return ndimage.zoom(source, factors, order=order, output=source.dtype).astype(np.float32)


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """A scan's native grid and the map to and from its working array (see the docstring).

    Attributes:
        geometry: the scan's native grid.
        shape: the working array's shape (D, H, W); axis 0 is the planar axis.
        flair_order, mask_order: spline orders for images and masks.
    """

    geometry: Geometry
    shape: tuple[int, int, int]
    flair_order: int
    mask_order: int

    def to_working(self, volume: np.ndarray, *, labels: bool) -> np.ndarray:
        """A native array (X, Y, Z) in the working space.

        Args:
            volume: the scan's FLAIR or mask in its storage order; not modified.
            labels: a mask (order `mask_order`, cut at 0.5) or an image (`flair_order`).
        Returns:
            (D, H, W): uint8 {0, 1} for labels, float32 for images.
        Raises:
            ValueError: `volume` does not have the scan's shape.
        """
        canonical = self.geometry.to_canonical(np.asarray(volume))
        if labels:
            canonical = canonical.astype(np.float32)
        moved = self._there(canonical, self.mask_order if labels else self.flair_order)
        return (moved >= 0.5).astype(np.uint8) if labels else moved

    def to_native(self, volume: np.ndarray, *, labels: bool) -> np.ndarray:
        """A working-space array back on the scan's grid, in its storage order.

        Args:
            volume: (D, H, W) array of `shape`: a mask (bool or 0/1) for labels, else a real
                map (e.g. probabilities); not modified.
            labels: a mask (order `mask_order`, cut at 0.5) or a map (linear).
        Returns:
            (X, Y, Z): uint8 {0, 1} for labels, float32 otherwise.
        Raises:
            ValueError: a shape other than `shape`, or non-finite values.
        """
        volume = np.asarray(volume)
        if volume.shape != self.shape:
            raise ValueError(f"expected a working-space array of shape {self.shape}; found "
                             f"{volume.shape}. Recompose slabs or windows first.")
        values = volume.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError("the working-space array holds NaN or infinite values; expected "
                             "probabilities or a mask")
        canonical = self._back(values, self.mask_order if labels else 1)
        native = self.geometry.from_canonical(canonical)
        return (native >= 0.5).astype(np.uint8) if labels else native

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict; `grid_from_json` restores an equal grid."""
        return {"geometry": self.geometry.to_json(), "shape": list(self.shape),
                "flair_order": self.flair_order, "mask_order": self.mask_order}

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        raise NotImplementedError

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CubeGrid(WorkingGrid):
    """Recipe "paper": the canonical array resampled to an S³ cube, sagittal slices first."""

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        return _zoom(canonical, self.shape, order)

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        return _zoom(working, self.geometry.canonical_shape, order)

    def to_json(self) -> dict[str, Any]:
        return {"recipe": "paper", **super().to_json()}


@dataclass(frozen=True, eq=False)
class SpacingGrid(WorkingGrid):
    """Recipe "spacing": thickest axis first, in-plane voxels of `spacing_mm` (MONAI).

    Attributes:
        axes: the canonical axis of each working axis (the planar axis first).
        affine: (4, 4) working voxel -> mm in the permuted canonical frame (from `Spacing`).
    """

    axes: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]

    @property
    def source_affine(self) -> np.ndarray:
        """(4, 4) voxel -> mm of the permuted canonical array (diagonal: the voxel sizes)."""
        return np.diag([*voxel_mm(self.geometry)[list(self.axes)], 1.0])

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        from monai.transforms import SpatialResample

        source = np.transpose(canonical, self.axes)
        return _monai(SpatialResample(mode=order), source, self.source_affine,
                      np.array(self.affine), self.shape)

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        from monai.transforms import SpatialResample

        shape = tuple(self.geometry.canonical_shape[a] for a in self.axes)
        moved = _monai(SpatialResample(mode=order), working, np.array(self.affine),
                       self.source_affine, shape)
        return np.transpose(moved, np.argsort(self.axes))

    def to_json(self) -> dict[str, Any]:
        return {"recipe": "spacing", **super().to_json(), "axes": list(self.axes),
                "affine": [list(row) for row in self.affine]}


def _monai(resample: Any, volume: np.ndarray, source: np.ndarray, target: np.ndarray,
           shape: Sequence[int]) -> np.ndarray:
    """`volume` on the grid `source` resampled by MONAI onto the grid (`target`, `shape`)."""
    from monai.data import MetaTensor

    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume))[None],
                       affine=torch.as_tensor(source))
    out = resample(image, dst_affine=torch.as_tensor(target), spatial_size=tuple(shape))
    return np.asarray(out.as_tensor()[0].numpy(), dtype=np.float32)


def plan_grid(geometry: Geometry, config: PipelineConfig) -> WorkingGrid:
    """The working grid of a scan under a recipe (nothing is resampled here).

    Args:
        geometry: the scan's native grid.
        config: the recipe and its settings.
    Returns:
        A `CubeGrid` or a `SpacingGrid`.
    """
    orders = {"flair_order": config.flair_order, "mask_order": config.mask_order}
    if config.recipe == "paper":
        return CubeGrid(geometry, (config.size,) * 3, **orders)
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    sizes = voxel_mm(geometry)
    planar = int(np.argmax(sizes)) if sizes.max() > TIE * sizes.min() else 0
    axes = (planar, *(a for a in range(3) if a != planar))
    target = config.spacing_mm
    pixdim = [max(float(sizes[planar]), target), target, target]
    for i, native in enumerate(sizes[list(axes)]):
        if abs(native - pixdim[i]) <= SAME * pixdim[i]:
            pixdim[i] = float(native)
    shape = tuple(geometry.canonical_shape[a] for a in axes)
    stand_in = MetaTensor(torch.zeros(1, 1, 1, 1).expand(1, *shape),
                          affine=torch.as_tensor(np.diag([*sizes[list(axes)], 1.0])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's notes on lazy resampling
        planned = Spacing(pixdim=pixdim, lazy=True)(stand_in)
    affine = np.asarray(planned.peek_pending_affine(), dtype=np.float64)
    return SpacingGrid(geometry, tuple(int(n) for n in planned.peek_pending_shape()), **orders,
                       axes=axes, affine=tuple(tuple(row) for row in affine.tolist()))


def grid_from_json(data: dict[str, Any]) -> WorkingGrid:
    """Inverse of `WorkingGrid.to_json`.

    Raises:
        ValueError: an unknown recipe (a cache or checkpoint of a newer version).
    """
    common = {"geometry": Geometry.from_json(data["geometry"]), "shape": tuple(data["shape"]),
              "flair_order": int(data["flair_order"]), "mask_order": int(data["mask_order"])}
    if data.get("recipe") == "paper":
        return CubeGrid(**common)
    if data.get("recipe") == "spacing":
        return SpacingGrid(**common, axes=tuple(data["axes"]),
                           affine=tuple(tuple(row) for row in data["affine"]))
    raise ValueError(f"unknown working grid recipe {data.get('recipe')!r}; expected 'paper' or "
                     f"'spacing' (written by a newer msseg?)")


def finest_spacing(records: Sequence[ScanRecord]) -> float:
    """The finest in-plane voxel size of scans: the default `spacing_mm` of recipe "spacing".

    A scan's in-plane voxel size is the smaller of its two in-plane axes (the axes other than
    its thickest). With the finest of all, no scan loses in-plane resolution: coarser scans are
    upsampled, which a mask survives exactly there and back (`msseg ceiling`). Only the headers
    are read.

    Raises:
        ValueError: no records.
        FileNotFoundError: a FLAIR file is missing.
    """
    if not records:
        raise ValueError("no scans to take the in-plane voxel size from")
    sizes = []
    for record in records:
        if not record.flair.is_file():
            raise FileNotFoundError(f"{record.flair}: FLAIR file not found; check the data")
        image = nib.load(record.flair)
        sizes.append(float(min(np.linalg.norm(image.affine[:3, :3], axis=0))))
    return min(sizes)


def with_data_spacing(config: TrainConfig, records: Sequence[ScanRecord]) -> TrainConfig:
    """`config` with `spacing_mm` fixed from `records` when recipe "spacing" leaves it None.

    Returns:
        `config` itself when nothing is left to fix.
    """
    if config.recipe != "spacing" or config.spacing_mm is not None:
        return config
    return config.replace(spacing_mm=finest_spacing(records))

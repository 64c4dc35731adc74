"""The real-data recipe: any size and voxel size, the planar axis along the slices, MONAI windows.

- Working grid (`SpacingGrid`): reorient to RAS+, put the thickest axis first (the
  acquisition's slice direction, where planar kernels are the right inductive bias; within 1 %
  of each other the paper's sagittal axis stays first), then MONAI's `Spacing` resamples the two
  in-plane axes to `spacing_mm` (an axis within 0.1 % of it keeps its own voxels). Along the
  planar axis the scan keeps its own slices, unless they are finer than `spacing_mm` (then they
  are resampled to it): thick slices are never interpolated. The way back is MONAI's
  `SpatialResample` onto the source grid, which is what `Spacing.inverse` runs. `spacing_mm`
  None means one taken from the training scans' in-plane voxel sizes (`with_data`, by
  `spacing_rule`): their median (the default, as nnU-Net takes its target spacing, the median
  of the training cases per axis; here in-plane, the planar axis keeps each scan's slices), or
  their finest, so that no training scan loses in-plane resolution. The finest costs what its
  finest scan sets: one 0.47 mm scan among 1 mm ones makes every 1 mm scan 4.5 times as many
  voxels to train on.
- Samples and network inputs: windows of `slab` x `window`² voxels, `slab_step` slices apart
  along the planar axis and `window * (1 - window_overlap)` apart in-plane, the last window of
  each axis flush with the volume's end (MONAI's dense grid; training cuts the same windows),
  volumes smaller than a window padded with -1 (the scaled background).
- Recomposition: MONAI's `sliding_window_inference` blends the windows with Gaussian importance
  weights (``"gaussian"``, the default: highest at a window's centre, where the network sees the
  most context) or averages them (``"average"``).

Public API:
    SpacingRecipe, SpacingGrid
    voxel_mm(geometry) -> (3,) voxel size along the canonical (R, A, S) axes
    data_spacing(records, *, rule) -> (float, reason)   the `spacing_mm` a dataset gives
    predict_windows(volume, predictor, *, slab, step, window, overlap, ...) -> (D, H, W)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from msseg.io.discovery import ScanRecord
from msseg.recipes.recipe import (
    PipelineSettings,
    Predictor,
    Recipe,
    Sampling,
    ScanGeometry,
    TrainSettings,
    WorkingGrid,
    check_positive_int,
)

if TYPE_CHECKING:  # numpy, torch and MONAI are imported where they are used (see recipe.py)
    import numpy as np

__all__ = ["BLENDS", "SPACING_RULES", "SpacingGrid", "SpacingRecipe", "data_spacing",
           "predict_windows", "voxel_mm"]

NAME = "spacing"
TIE = 1.01  # voxel sizes within 1 % of each other count as equal (isotropic: sagittal first)
SAME = 1e-3  # a target within 0.1 % of the scan's own voxel size keeps the scan's (no resampling)
BLENDS = {"gaussian": "gaussian", "average": "constant"}  # msseg's name -> MONAI's BlendMode
SPACING_RULES = ("median", "finest")  # spacing_mm from the training scans' in-plane voxel sizes

log = logging.getLogger(__name__)


def voxel_mm(geometry: ScanGeometry) -> np.ndarray:
    """Voxel size in mm along the canonical axes (R, A, S) of a scan's grid.

    Returns:
        (3,) float64: the length of each stored axis' affine column, in canonical order.
    """
    import numpy as np

    sizes = np.linalg.norm(np.asarray(geometry.affine)[:3, :3], axis=0)
    out = np.empty(3)
    out[geometry.ornt[:, 0].astype(int)] = sizes
    return out


@dataclass(frozen=True, eq=False)
class SpacingGrid(WorkingGrid):
    """Thickest axis first, in-plane voxels of `spacing_mm` (MONAI).

    Attributes:
        axes: the canonical axis of each working axis (the planar axis first).
        affine: (4, 4) working voxel -> mm in the permuted canonical frame (from `Spacing`).
    """

    recipe = NAME

    axes: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]

    @property
    def source_affine(self) -> np.ndarray:
        """(4, 4) voxel -> mm of the permuted canonical array (diagonal: the voxel sizes)."""
        import numpy as np

        return np.diag([*voxel_mm(self.geometry)[list(self.axes)], 1.0])

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        return _resample(canonical.transpose(self.axes), self.source_affine, self.affine,
                         self.shape, order)

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        shape = tuple(self.geometry.canonical_shape[a] for a in self.axes)
        moved = _resample(working, self.affine, self.source_affine, shape, order)
        return moved.transpose(sorted(range(3), key=self.axes.__getitem__))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "axes": list(self.axes),
                "affine": [list(row) for row in self.affine]}

    @classmethod
    def _fields_from_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"axes": tuple(data["axes"]),
                "affine": tuple(tuple(row) for row in data["affine"])}


def _resample(volume: np.ndarray, source: Any, target: Any, shape: Sequence[int],
              order: int) -> np.ndarray:
    """`volume` on the grid `source` resampled by MONAI onto the grid (`target`, `shape`); the
    grids are (4, 4) voxel -> mm matrices (arrays or nested sequences)."""
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume))[None],
                       affine=torch.as_tensor(np.asarray(source, dtype=np.float64)))
    out = SpatialResample(mode=order)(image, dst_affine=torch.as_tensor(
                                          np.asarray(target, dtype=np.float64)),
                                      spatial_size=tuple(shape))
    return np.asarray(out.as_tensor()[0].numpy(), dtype=np.float32)


def _plan_grid(geometry: ScanGeometry, spacing_mm: float, *, flair_order: int,
                      mask_order: int) -> SpacingGrid:
    """The working grid of a scan at `spacing_mm` in-plane, planned by MONAI's `Spacing`
    without resampling anything."""
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    sizes = voxel_mm(geometry)
    planar = int(np.argmax(sizes)) if sizes.max() > TIE * sizes.min() else 0
    axes = (planar, *(a for a in range(3) if a != planar))
    pixdim = [max(float(sizes[planar]), spacing_mm), spacing_mm, spacing_mm]
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
    return SpacingGrid(geometry, tuple(int(n) for n in planned.peek_pending_shape()),
                       flair_order=flair_order, mask_order=mask_order, axes=axes,
                       affine=tuple(tuple(row) for row in affine.tolist()))


def _check_spacing(spacing_mm: float | None) -> None:
    if spacing_mm is not None and not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be a positive voxel size in mm (or None for the "
                         f"finest of the training scans), got {spacing_mm}")


def data_spacing(records: Sequence[ScanRecord], *, rule: str = "median") -> tuple[float, str]:
    """The in-plane voxel size a dataset gives by `rule`, and why, in words.

    A scan's in-plane voxel size is the smaller of its two in-plane axes (the axes other than
    its thickest). "median": the median of the scans' (nnU-Net's rule); "finest": the finest,
    so no scan loses in-plane resolution (coarser ones are upsampled, which a mask survives
    exactly there and back: `msseg ceiling`). Only the headers are read.

    Returns:
        (spacing in mm, a sentence saying what was chosen and why).
    Raises:
        ValueError: no records, or an unknown rule.
        FileNotFoundError: a FLAIR file is missing.
    """
    import nibabel as nib
    import numpy as np

    if rule not in SPACING_RULES:
        raise ValueError(f"spacing_rule must be one of {SPACING_RULES}; found {rule!r}")
    if not records:
        raise ValueError("no scans to take the in-plane voxel size from")
    sizes = []
    for record in records:
        if not record.flair.is_file():
            raise FileNotFoundError(f"{record.flair}: FLAIR file not found; check the data")
        image = nib.load(record.flair)
        sizes.append(float(min(np.linalg.norm(image.affine[:3, :3], axis=0))))
    median, finest = float(np.median(sizes)), min(sizes)
    chosen = median if rule == "median" else finest
    other = "finest" if rule == "median" else "median"
    reason = (f"working spacing {chosen:.3g} mm in-plane: the {rule} of the in-plane voxel "
              f"sizes of the {len(sizes)} training scans ({finest:.3g} to {max(sizes):.3g} mm)"
              f"{', as nnU-Net chooses it' if rule == 'median' else ''}; "
              f"--set spacing_rule={other} takes the {other}, "
              f"{finest if rule == 'median' else median:.3g} mm")
    return chosen, reason


def predict_windows(
    volume: np.ndarray,
    predictor: Predictor,
    *,
    slab: int,
    step: int,
    window: int,
    overlap: float,
    batch_size: int = 2,
    blend: str = "gaussian",
) -> np.ndarray:
    """Lesion probabilities of a working volume, window by window, blended into one volume.

    MONAI's `sliding_window_inference` owns cutting, batching and blending (see the module
    docstring for where the windows go).

    Args:
        volume: (D, H, W) FLAIR in [-1, 1], planar axis first (`preprocess_scan`, the cache).
        predictor: (B, slab, window, window) FLAIR windows -> probabilities of the same shape.
        slab, step: window depth and the distance between window starts along depth.
        window, overlap: in-plane window edge and the overlap of neighbouring windows.
        batch_size: windows per predictor call.
        blend: "gaussian" or "average".
    Returns:
        (D, H, W) float32 probabilities.
    Raises:
        ValueError: an unknown blend, a batch_size < 1, or step outside 1..slab.
    """
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {sorted(BLENDS)}; found {blend!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 1 <= step <= slab:
        raise ValueError(f"step must be in 1..slab={slab}; found {step}")
    # MONAI puts windows int(roi * (1 - overlap)) apart; the half voxel keeps `step` exact.
    depth_overlap = max(0.0, 1.0 - (step + 0.5) / slab)
    inputs = torch.from_numpy(np.array(volume, dtype=np.float32, order="C"))[None, None]
    with torch.inference_mode():
        out = sliding_window_inference(
            inputs, roi_size=(slab, window, window), sw_batch_size=batch_size,
            predictor=lambda batch: predictor(batch[:, 0])[:, None],
            overlap=(depth_overlap, overlap, overlap), mode=BLENDS[blend],
            padding_mode="constant", cval=-1.0)
    return np.asarray(out[0, 0].float().numpy(), dtype=np.float32)


class SpacingRecipe(Recipe):
    """Recipe "spacing": in-plane `spacing_mm`, slices kept, MONAI windows (see the docstring).

    Its fields: `spacing_mm` (None = the training scans' finest), `window` and
    `window_overlap`, and `slab_step` <= `slab`.
    """

    name = NAME
    slabs = "windows of slices along its slice direction (its thickest axis)"
    recompositions: ClassVar[dict[str, str]] = {"gaussian": "Gaussian-weighted windows",
                                                "average": "average of overlaps"}
    grid_type = SpacingGrid

    def check(self, config: TrainSettings) -> None:
        check_positive_int("window", config.window)
        if config.slab_step > config.slab:
            raise ValueError(f"slab_step={config.slab_step} is larger than slab={config.slab}, "
                             f"so slices between slabs would never be seen; use slab_step <= "
                             f"{config.slab}")
        if not 0.0 <= config.window_overlap < 1.0:
            raise ValueError(f"window_overlap must be in [0, 1), got {config.window_overlap}")
        _check_spacing(config.spacing_mm)
        if config.spacing_rule not in SPACING_RULES:
            raise ValueError(f"spacing_rule must be one of {SPACING_RULES} (the training scans' "
                             f"in-plane voxel sizes), got {config.spacing_rule!r}")

    def check_grid(self, pipeline: PipelineSettings) -> None:
        if pipeline.spacing_mm is None:
            raise ValueError(f"recipe {NAME!r} needs spacing_mm, a positive in-plane voxel size "
                             f"in mm; found None (taken from the training scans: "
                             f"TrainConfig.with_data)")
        _check_spacing(pipeline.spacing_mm)

    def grid_settings(self, pipeline: PipelineSettings) -> dict[str, Any]:
        return {"spacing_mm": pipeline.spacing_mm}

    def describe(self, config: TrainSettings) -> str:
        spacing = (f"the training scans' {config.spacing_rule}" if config.spacing_mm is None
                   else f"{config.spacing_mm:g} mm")
        return f"recipe {NAME} ({spacing} in-plane, slices kept)"

    def plan_grid(self, geometry: ScanGeometry, pipeline: PipelineSettings) -> SpacingGrid:
        return _plan_grid(geometry, pipeline.spacing_mm, flair_order=pipeline.flair_order,
                                 mask_order=pipeline.mask_order)

    def sampling(self, config: TrainSettings) -> Sampling:
        return Sampling(slab=config.slab, step=config.slab_step, window=config.window,
                        overlap=config.window_overlap)

    def input_shape(self, config: TrainSettings) -> tuple[int, int, int]:
        return config.slab, config.window, config.window

    def predict(self, volume: np.ndarray, predictor: Predictor, *, config: TrainSettings,
                method: str | None, batch_size: int) -> np.ndarray:
        return predict_windows(volume, predictor, slab=config.slab, step=config.slab_step,
                               window=config.window, overlap=config.window_overlap,
                               batch_size=batch_size, blend=self.recomposition(method))

    def with_data(self, config: TrainSettings, records: Sequence[ScanRecord]) -> Any:
        """`config` with `spacing_mm` from `records` by its `spacing_rule` (`data_spacing`,
        logged with the reason) when it is None."""
        if config.spacing_mm is not None:
            return config
        spacing, reason = data_spacing(records, rule=config.spacing_rule)
        log.info("%s", reason)
        return config.replace(spacing_mm=spacing)

"""The paper's recipe (ICPR 2020, §3.2), exactly: a cube of whole sagittal planes, cut in slabs.

- Working grid (`CubeGrid`): reorient to RAS+ (exact flips and permutations), then resample the
  whole array to S³ (`volume_size`, 256 in the paper) with `scipy.ndimage.zoom`: corner voxel
  centres on corner voxel centres, per axis, the voxel size ignored. Axis 0 runs left -> right,
  so its slices are sagittal.
- Samples and network inputs: slabs of `slab` whole planes whose starts are `slab_step` apart,
  tiling the cube exactly (`msseg.slab_geometry`: 31 slabs for 256 / 16 / 8).
- Recomposition of the slabs' predictions into one cube, two ways:
  ``"average"`` (the default): each slice is the mean over all slabs that contain it (the
  paper's stated future work); ``"paper"`` (Eq. 1, generalised): every slice is taken from
  exactly one slab. With margin m = (slab - step) // 2, the first slab keeps its slices
  [0, m + step), middle slabs keep [m, m + step) and the last keeps [m, slab). For 16/8 that is
  slab 1 slices 1-12, slabs 2..30 slices 5-12 and slab 31 slices 5-16 (1-based), as in the paper.
- The lesion mask is decided at `PAPER_THRESHOLD`, 16/256, on the cube (`msseg.data.native`).

Public API:
    PaperRecipe, CubeGrid, PAPER_THRESHOLD
    resample_to_cube(volume, *, size, order) -> (S, S, S)
    make_slabs(volume, *, slab=16, step=8) -> (n, slab, ...)
    recompose_slabs(slabs, *, step=8, method="paper") -> (S, ...)
    predict_cube(cube, predictor, *, slab, step, batch_size=2, recompose="average") -> (S, S, S)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

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
from msseg.slab_geometry import SlabGeometry

if TYPE_CHECKING:  # numpy, scipy and torch are imported where they are used (see recipe.py)
    import numpy as np

__all__ = [
    "PAPER_THRESHOLD",
    "CubeGrid",
    "PaperRecipe",
    "make_slabs",
    "predict_cube",
    "recompose_slabs",
    "resample_to_cube",
]

NAME = "paper"
PAPER_THRESHOLD = 16 / 256  # probability -> binary lesion mask: the paper's 16 of 256 grey levels
RecomposeMethod = Literal["paper", "average"]
RECOMPOSE_METHODS: tuple[str, ...] = ("paper", "average")


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
    import numpy as np

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume; found shape {volume.shape}")
    return _zoom(volume, (size,) * 3, order)


def _zoom(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    import numpy as np
    from scipy import ndimage

    factors = [n / s for n, s in zip(shape, volume.shape, strict=True)]
    source = volume if order == 0 else volume.astype(np.float32, copy=False)
    return ndimage.zoom(source, factors, order=order, output=source.dtype).astype(np.float32)


@dataclass(frozen=True, eq=False)
class CubeGrid(WorkingGrid):
    """The canonical array resampled to an S³ cube, sagittal slices first."""

    recipe = NAME

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        return _zoom(canonical, self.shape, order)

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        return _zoom(working, self.geometry.canonical_shape, order)


def make_slabs(volume: np.ndarray, *, slab: int = 16, step: int = 8) -> np.ndarray:
    """Cut a volume into overlapping slabs along axis 0.

    Args:
        volume: (S, ...) array, e.g. the canonical (S, S, S) cube (axis 0 = sagittal slices).
        slab: slices per slab.
        step: distance between slab starts.

    Returns:
        New array (n, slab, ...) with n = (S - slab) / step + 1; slabs[i] = volume[i*step:][:slab].

    Raises:
        ValueError: volume has no axis, or slab/step do not tile S (see `SlabGeometry`).
    """
    import numpy as np

    volume = np.asarray(volume)
    if volume.ndim < 1:
        raise ValueError("volume must have at least one axis (the slab axis 0); found a scalar")
    starts = SlabGeometry(volume.shape[0], slab, step).starts
    return np.stack([volume[s : s + slab] for s in starts])


def recompose_slabs(
    slabs: np.ndarray, *, step: int = 8, method: RecomposeMethod = "paper"
) -> np.ndarray:
    """Reassemble per-slab arrays into one volume; inverse of `make_slabs`.

    Args:
        slabs: (n, slab, ...) array, e.g. predicted probabilities per slab.
        step: the step used to cut the slabs; S = slab + (n - 1) * step.
        method: "paper" (Eq. 1: each slice from one slab, see module docstring) or "average"
            (mean over all slabs that contain the slice).

    Returns:
        (S, ...) array; same dtype as `slabs` for "paper", floating for "average".

    Raises:
        ValueError: unknown method, fewer than 2 dims, or step invalid for the slab size.
    """
    import numpy as np

    slabs = np.asarray(slabs)
    if method not in RECOMPOSE_METHODS:
        raise ValueError(f"method must be one of {RECOMPOSE_METHODS}; found {method!r}")
    if slabs.ndim < 2 or slabs.shape[0] < 1:
        raise ValueError(f"slabs must be (n, slab, ...) with n >= 1; found shape {slabs.shape}")
    count, slab = slabs.shape[:2]
    size = SlabGeometry(slab + (count - 1) * step, slab, step).size
    if method == "paper":
        out = np.empty((size, *slabs.shape[2:]), dtype=slabs.dtype)
        margin = (slab - step) // 2
        for i in range(count):
            first = 0 if i == 0 else margin
            last = slab if i == count - 1 else margin + step
            out[i * step + first : i * step + last] = slabs[i, first:last]
        return out
    total = np.zeros((size, *slabs.shape[2:]), dtype=np.float64)
    hits = np.zeros(size, dtype=np.int64)
    for i in range(count):
        total[i * step : i * step + slab] += slabs[i]
        hits[i * step : i * step + slab] += 1
    total /= hits.reshape((size,) + (1,) * (slabs.ndim - 2))
    return total.astype(np.result_type(slabs.dtype, np.float32))


def predict_cube(
    cube: np.ndarray,
    predictor: Predictor,
    *,
    slab: int,
    step: int,
    batch_size: int = 2,
    recompose: RecomposeMethod = "average",
) -> np.ndarray:
    """Lesion probabilities of a preprocessed cube, slab by slab, blended into one cube.

    Args:
        cube: (S, S, S) FLAIR in [-1, 1], sagittal slices first (`preprocess_scan`, the cache).
        predictor: slabs -> probabilities (`msseg.inference.predictor.model_predictor`).
        slab, step: the slab geometry the model was trained with (`TrainConfig.slabs`).
        batch_size: slabs per predictor call.
        recompose: "average" (mean of the overlapping slabs) or "paper" (Eq. 1).
    Returns:
        (S, S, S) float32 probabilities in the canonical cube.
    Raises:
        ValueError: slabs that do not tile the cube, a batch_size < 1, an unknown method.
    """
    import numpy as np
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    slabs = make_slabs(np.asarray(cube, dtype=np.float32), slab=slab, step=step)
    probabilities = np.empty(slabs.shape, np.float32)
    for start in range(0, len(slabs), batch_size):
        batch = torch.from_numpy(slabs[start:start + batch_size])
        probabilities[start:start + batch_size] = predictor(batch).numpy()
    return recompose_slabs(probabilities, step=step, method=recompose).astype(np.float32)


class PaperRecipe(Recipe):
    """Recipe "paper": the S³ cube, whole-plane slabs, Eq. 1 or the average (see the docstring).

    Its fields: `volume_size` (S), and `slab` and `slab_step`, which must tile S exactly.
    """

    name = NAME
    slabs = "sagittal slabs"
    recompositions: ClassVar[dict[str, str]] = {"average": "average of overlaps",
                                                "paper": "middle-8 (paper, Eq. 1)"}
    grid_type = CubeGrid

    def check(self, config: TrainSettings) -> None:
        check_positive_int("volume_size", config.volume_size)
        try:
            SlabGeometry(config.volume_size, config.slab, config.slab_step)
        except ValueError as error:
            raise ValueError(f"volume_size, slab, slab_step: {error}") from None

    def check_grid(self, pipeline: PipelineSettings) -> None:
        check_positive_int("volume_size", pipeline.volume_size)

    def grid_settings(self, pipeline: PipelineSettings) -> dict[str, Any]:
        return {"size": pipeline.volume_size}  # the cache key's name since its first format

    def describe(self, config: TrainSettings) -> str:
        return f"recipe {NAME} ({config.volume_size}³ cube)"

    def plan_grid(self, geometry: ScanGeometry, pipeline: PipelineSettings) -> CubeGrid:
        return CubeGrid(geometry, (pipeline.volume_size,) * 3, flair_order=pipeline.flair_order,
                        mask_order=pipeline.mask_order)

    def sampling(self, config: TrainSettings) -> Sampling:
        return Sampling(slab=config.slab, step=config.slab_step)

    def input_shape(self, config: TrainSettings) -> tuple[int, int, int]:
        return config.slab, config.volume_size, config.volume_size

    def predict(self, volume: np.ndarray, predictor: Predictor, *, config: TrainSettings,
                method: str | None, batch_size: int) -> np.ndarray:
        return predict_cube(volume, predictor, slab=config.slab, step=config.slab_step,
                            batch_size=batch_size, recompose=self.recomposition(method))

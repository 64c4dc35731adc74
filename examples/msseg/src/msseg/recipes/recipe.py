"""What a recipe is: the interface every recipe implements, and the working grid it plans.

A recipe takes a scan to the working volume the network sees and the network's outputs back to
one volume. It owns every decision that differs between recipes, so that nothing outside its
file asks which recipe runs:

- its fields of the training config, checked by `check` (and `check_grid` for the
  preprocessing settings), and the description the commands print (`describe`);
- the working grid of a scan (`plan_grid`, a `WorkingGrid` subclass of its own): the map from
  the scan's grid to the working array (D, H, W), planar axis first, and back;
- which fields of the preprocessing settings shape that grid (`grid_settings`, the cache key);
- where training cuts its samples (`sampling`) and the shape of one network input
  (`input_shape`);
- how the network runs over a working volume and how overlapping predictions are blended
  (`predict`, with the blends it offers in `recompositions`, the default first);
- what it takes from the data before training (`with_data`).

Every recipe scales FLAIR to [-1, 1] the same way (`msseg.data.intensity`); the names of those
settings are here (`NORMALISATIONS`, `check_scaling`), with the other checks the config shares.

Recipes sit below the config: `msseg.config` lists them by name (`RECIPES`) and validates
through them, so this module imports nothing of msseg (the config fields a recipe reads are the
protocols `TrainSettings` and `PipelineSettings`), and the recipes import numpy, scipy, torch
and MONAI inside the functions that use them: the command line's help reads the config, and
answers without them.

    recipe = msseg.config.recipe_named(config.recipe)
    grid = recipe.plan_grid(scan.geometry, config.pipeline)
    probability = recipe.predict(working, predictor, config=config, method=None, batch_size=2)
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DEFAULT_PERCENTILES",
    "NORMALISATIONS",
    "Normalisation",
    "PipelineSettings",
    "Predictor",
    "Recipe",
    "Sampling",
    "ScanGeometry",
    "TrainSettings",
    "WorkingGrid",
    "check_positive_int",
    "check_scaling",
]

# (B, slab, h, w) float32 FLAIR inputs in [-1, 1] on the CPU -> (B, slab, h, w) probabilities.
Predictor = Callable[["torch.Tensor"], "torch.Tensor"]


class ScanGeometry(Protocol):
    """What a working grid reads of the scan's own grid (`msseg.io.orientation.Geometry`)."""

    @property
    def affine(self) -> np.ndarray: ...  # (4, 4) voxel -> mm of the stored array
    @property
    def ornt(self) -> np.ndarray: ...  # (3, 2) stored axes -> canonical axes and flips
    @property
    def canonical_shape(self) -> tuple[int, int, int]: ...  # the RAS+ array's shape
    def to_canonical(self, volume: np.ndarray) -> np.ndarray: ...
    def from_canonical(self, volume: np.ndarray) -> np.ndarray: ...
    def to_json(self) -> dict[str, Any]: ...


class PipelineSettings(Protocol):
    """What a recipe reads of the preprocessing settings (`msseg.config.PipelineConfig`)."""

    recipe: str
    volume_size: int
    spacing_mm: float | None
    flair_order: int
    mask_order: int


class TrainSettings(Protocol):
    """What a recipe reads of a training config (`msseg.config.TrainConfig`)."""

    recipe: str
    volume_size: int
    spacing_mm: float | None
    spacing_rule: str
    window: int
    window_overlap: float
    slab: int
    slab_step: int

    def replace(self, **changes: Any) -> Any: ...


Normalisation = Literal["minmax", "percentile"]
# "minmax": the scan's range to [-1, 1] (the paper); "percentile": the percentiles of the head
# (the non-zero voxels) to [-1, 1], clipped. Both are taken on the scan before resampling.
NORMALISATIONS: tuple[str, ...] = ("minmax", "percentile")
DEFAULT_PERCENTILES = (0.5, 99.5)


def check_positive_int(name: str, value: object) -> None:
    """Raise ValueError naming `name` unless `value` is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_scaling(normalisation: str, percentiles: Sequence[float] | None = None, *,
                  name: str = "normalisation") -> None:
    """Check a normalisation and, when given, its (low, high) percentiles.

    Args:
        normalisation: one of `NORMALISATIONS`.
        percentiles: (low, high) in [0, 100], or None.
        name: what the caller calls the normalisation, for the message.
    Raises:
        ValueError: an unknown normalisation, or percentiles that are not (low, high) with
            0 <= low < high <= 100.
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"{name} must be one of {NORMALISATIONS}; found {normalisation!r}")
    if percentiles is not None and (len(percentiles) != 2
                                    or not 0 <= percentiles[0] < percentiles[1] <= 100):
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100; "
                         f"found {tuple(percentiles)}")


@dataclass(frozen=True)
class Sampling:
    """Where training cuts its samples of a working volume (`msseg.data.slab_dataset`).

    Attributes:
        slab, step: slices per sample along the planar axis, and the distance between starts.
        window: in-plane edge of a sample, or None for whole planes (every volume then has one
            shape, and the slabs tile its depth exactly).
        overlap: in-plane overlap of neighbouring windows, in [0, 1).
    """

    slab: int
    step: int
    window: int | None = None
    overlap: float = 0.5


@dataclass(frozen=True, eq=False)
class WorkingGrid:
    """A scan's native grid and the map to and from its working array; each recipe subclasses
    it with its own resampling (`_there`, `_back`) and JSON fields.

    Both ways take `labels=True` for masks (spline order `mask_order` both ways, cut at 0.5: a
    mask that goes there and back only loses what the resampling itself loses) or
    `labels=False` for images (FLAIR there with `flair_order`; probability maps back linearly).

    Attributes:
        geometry: the scan's native grid.
        shape: the working array's shape (D, H, W); axis 0 is the planar axis.
        flair_order, mask_order: spline orders for images and masks.
    """

    recipe: ClassVar[str]  # the name of the recipe that plans this kind of grid (in its JSON)

    geometry: ScanGeometry
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
        import numpy as np

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
        import numpy as np

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
        """JSON-safe dict; `msseg.data.cache.grid_from_json` restores an equal grid."""
        return {"recipe": self.recipe, "geometry": self.geometry.to_json(),
                "shape": list(self.shape), "flair_order": self.flair_order,
                "mask_order": self.mask_order}

    @classmethod
    def from_json(cls, data: dict[str, Any], geometry: ScanGeometry) -> WorkingGrid:
        """Inverse of `to_json`, given the scan's grid restored from ``data["geometry"]``."""
        return cls(geometry=geometry, shape=tuple(data["shape"]),
                   flair_order=int(data["flair_order"]), mask_order=int(data["mask_order"]),
                   **cls._fields_from_json(data))

    @classmethod
    def _fields_from_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The subclass' own fields from its JSON."""
        return {}

    def _there(self, canonical: np.ndarray, order: int) -> np.ndarray:
        raise NotImplementedError

    def _back(self, working: np.ndarray, order: int) -> np.ndarray:
        raise NotImplementedError


class Recipe(ABC):
    """One recipe (see the module docstring); `msseg.config.RECIPES` holds one of each.

    Attributes:
        name: what ``TrainConfig.recipe`` says to choose it.
        recompositions: the blends of overlapping predictions it offers, name -> description
            for reports; the first is the default.
        grid_type: the `WorkingGrid` subclass it plans.
        slabs: its network inputs in words, for the warning about oblique scans (e.g.
            "sagittal slabs").
    """

    name: ClassVar[str]
    recompositions: ClassVar[dict[str, str]]
    grid_type: ClassVar[type[WorkingGrid]]
    slabs: ClassVar[str]

    @abstractmethod
    def check(self, config: TrainSettings) -> None:
        """Raise ValueError, naming the field, for values of its fields it cannot run."""

    @abstractmethod
    def check_grid(self, pipeline: PipelineSettings) -> None:
        """Raise ValueError unless the preprocessing settings fix its working grid."""

    @abstractmethod
    def grid_settings(self, pipeline: PipelineSettings) -> dict[str, Any]:
        """The settings that shape its working grid, as the cache key names them."""

    @abstractmethod
    def describe(self, config: TrainSettings) -> str:
        """One line for logs, e.g. ``recipe paper (256³ cube)``."""

    @abstractmethod
    def plan_grid(self, geometry: ScanGeometry, pipeline: PipelineSettings) -> WorkingGrid:
        """The working grid of a scan (nothing is resampled here)."""

    @abstractmethod
    def sampling(self, config: TrainSettings) -> Sampling:
        """Where training cuts its samples."""

    @abstractmethod
    def input_shape(self, config: TrainSettings) -> tuple[int, int, int]:
        """(slab, h, w) of one network input."""

    @abstractmethod
    def predict(self, volume: np.ndarray, predictor: Predictor, *, config: TrainSettings,
                method: str | None, batch_size: int) -> np.ndarray:
        """Lesion probabilities (D, H, W) float32 of a working volume (D, H, W) in [-1, 1].

        Args:
            volume: the working volume; not modified.
            predictor: network inputs -> probabilities (the network as a callable).
            config: the model's training config.
            method: one of `recompositions`; None = the default (`recomposition`).
            batch_size: network inputs per predictor call.
        Raises:
            ValueError: a blend this recipe does not offer, or a batch_size < 1.
        """

    def with_data(self, config: TrainSettings, records: Sequence[Any]) -> Any:
        """`config` with what this recipe takes from the training scans filled in; by default
        nothing (`config` itself)."""
        return config

    def recomposition(self, method: str | None) -> str:
        """`method`, or the default when None.

        Raises:
            ValueError: a blend this recipe does not offer.
        """
        allowed = tuple(self.recompositions)
        if method is None:
            return allowed[0]
        if method not in allowed:
            raise ValueError(f"recompose={method!r} does not apply to recipe {self.name!r}; "
                             f"choose one of {allowed}")
        return method

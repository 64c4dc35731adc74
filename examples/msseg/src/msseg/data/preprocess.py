"""Preprocessing a scan into its working volume (settings: `msseg.config.PipelineConfig`).

Steps, for FLAIR and mask alike unless noted:
1. the scan's working grid, planned by its recipe (`plan_grid`, `msseg.recipes`): reorientation
   by the affine and resampling; FLAIR with spline order `flair_order`, the mask with
   `mask_order` and cut at 0.5;
2. FLAIR to [-1, 1] by the range measured on the scan itself before resampling ("minmax" or
   robust "percentile" of the head, `msseg.data.intensity`), clipping spline overshoot;
3. the model sees slabs or windows of it (`msseg.data.slab_dataset`, `msseg.inference`) with the
   FLAIR copied to its 3 input channels.

The way back to the scan's own grid is `Preprocessed.grid` (`msseg.data.native`); the cache of
preprocessed scans is `msseg.data.cache`.

Public API:
    Preprocessed(flair, mask, grid)          .geometry
    plan_grid(geometry, config) -> WorkingGrid
    preprocess_scan(scan, config) -> Preprocessed
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msseg.config import PipelineConfig, recipe_named
from msseg.data.intensity import intensity_range, scale
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry
from msseg.recipes.recipe import WorkingGrid

__all__ = ["Preprocessed", "plan_grid", "preprocess_scan"]


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """A scan in its working space.

    Attributes:
        flair: (D, H, W) float32 in [-1, 1]; axis 0 = the planar axis.
        mask: (D, H, W) uint8 {0, 1}, or None for prediction-only scans.
        grid: the scan's native grid and the way there and back (`plan_grid`).
    """

    flair: np.ndarray
    mask: np.ndarray | None
    grid: WorkingGrid

    @property
    def geometry(self) -> Geometry:
        """The scan's native grid."""
        return self.grid.geometry


def plan_grid(geometry: Geometry, config: PipelineConfig) -> WorkingGrid:
    """The working grid of a scan under the settings' recipe (nothing is resampled here).

    Args:
        geometry: the scan's native grid.
        config: the recipe and its settings.
    Returns:
        The recipe's `WorkingGrid` (e.g. `msseg.recipes.paper.CubeGrid`).
    """
    return recipe_named(config.recipe).plan_grid(geometry, config)


def preprocess_scan(scan: Scan, config: PipelineConfig) -> Preprocessed:
    """Resample and scale one scan into its working space.

    Args:
        scan: a validated scan (`msseg.io.nifti.load_scan`); not modified.
        config: pipeline settings (recipe, its geometry, orders, normalisation).
    Returns:
        `Preprocessed` with flair (D, H, W) float32 in [-1, 1], mask (D, H, W) uint8 or None.
    Raises:
        ValueError: a FLAIR whose intensity range is empty under the normalisation.
    """
    grid = plan_grid(scan.geometry, config)
    low, high = intensity_range(scan.flair, method=config.normalisation,
                                percentiles=config.percentiles)
    flair = scale(grid.to_working(scan.flair, labels=False), low, high)
    mask = None if scan.mask is None else grid.to_working(scan.mask, labels=True)
    return Preprocessed(flair=flair, mask=mask, grid=grid)

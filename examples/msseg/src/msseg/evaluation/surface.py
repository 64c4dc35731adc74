"""Surface distances between two masks, in mm: the 95th-percentile Hausdorff distance and the
average symmetric surface distance, computed by MONAI (`monai.metrics`).

Dice counts voxels; these say how far apart the boundaries are, which for small lesions is the
more telling number (one voxel of boundary shift costs a 3-voxel lesion a third of its Dice).
Both masks empty: 0 mm (nothing to miss); exactly one empty: infinity (no surface to reach).

    hd95, assd = surface_distances(predicted, truth, spacing=(1.0, 1.0, 1.0))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["surface_distances"]


def surface_distances(pred: np.ndarray, truth: np.ndarray, *,
                      spacing: Sequence[float]) -> tuple[float, float]:
    """(95th-percentile Hausdorff distance, average symmetric surface distance) in mm.

    Args:
        pred, truth: binary masks (bool or 0/1) of the same 3-D shape.
        spacing: voxel size in mm along each array axis.
    Returns:
        Two floats (see the module docstring for empty masks).
    Raises:
        ValueError: masks of different shapes or not 3-D, or a spacing of another length.
    """
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    pred, truth = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if pred.shape != truth.shape or pred.ndim != 3 or len(spacing) != 3:
        raise ValueError(f"expected two 3-D masks of one shape and 3 voxel sizes; found "
                         f"{pred.shape}, {truth.shape} and spacing {tuple(spacing)}")
    if not pred.any() and not truth.any():
        return 0.0, 0.0
    if not pred.any() or not truth.any():
        return math.inf, math.inf
    y_pred, y = (torch.from_numpy(m)[None, None] for m in (pred, truth))
    voxel = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's notes on its distance transform backend
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                          spacing=voxel)
        assd = compute_average_surface_distance(y_pred, y, include_background=True,
                                                symmetric=True, spacing=voxel)
    return float(hd95.item()), float(assd.item())

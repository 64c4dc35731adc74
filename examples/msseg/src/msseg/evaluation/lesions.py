"""Lesions as connected components: the one labelling rule of msseg and its defaults.

    labels, count = label_lesions(mask, voxel_mm3=voxel_volume)

A lesion is a connected component of a mask: voxels joined through their faces
(`LESION_CONNECTIVITY` = 1 in `scipy.ndimage.generate_binary_structure`'s terms: 6 neighbours in
3D), of more than `MIN_LESION_MM3` (3 mm³, the MSSEG challenge's smallest lesion) in the scan's
own voxels. The lesion map and lesion table of `predict` (`msseg.evaluation.lesion_table`) label
with this rule and these defaults. numpy and scipy are imported when a function runs, so the
command line's help reads the constants at once.

The labelling is `scipy.ndimage.label`: scipy is a dependency already (resampling), it labels a
182 x 218 x 182 mask in a fraction of a second, and `scipy.ndimage` also gives the per-lesion
sums, extremes and bounding boxes a lesion table needs; ``connected-components-3d`` is faster on
huge volumes, which head scans are not, and would be one more compiled dependency.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CONNECTIVITIES", "DEFAULT_CONNECTIVITY", "LESION_CONNECTIVITY", "MIN_LESION_MM3",
           "label_lesions", "min_lesion_voxels"]

LESION_CONNECTIVITY = 1  # face neighbours only (6 in 3D); 2 adds edges (18), 3 corners (26)
MIN_LESION_MM3 = 3.0  # lesions of this volume or less are ignored (the MSSEG challenge)
# Neighbours that join voxels into one lesion, as people count them -> scipy's connectivity.
CONNECTIVITIES = {6: 1, 18: 2, 26: 3}
DEFAULT_CONNECTIVITY = 6  # LESION_CONNECTIVITY, in neighbours


def min_lesion_voxels(voxel_mm3: float, min_mm3: float = MIN_LESION_MM3) -> int:
    """The fewest voxels of `voxel_mm3` each that make more than `min_mm3`.

    Args:
        voxel_mm3: one voxel's volume in mm³ (> 0).
        min_mm3: lesions of this volume or less are ignored (0 keeps every voxel).
    Returns:
        A voxel count >= 1.
    """
    return math.floor(min_mm3 / voxel_mm3 + 1e-9) + 1


def label_lesions(mask: np.ndarray, *, voxel_mm3: float, min_mm3: float = MIN_LESION_MM3,
                  connectivity: int = LESION_CONNECTIVITY) -> tuple[np.ndarray, int]:
    """The lesions of a binary mask, numbered 1..count.

    Args:
        mask: (X, Y, Z) binary mask (any non-zero voxel is lesion).
        voxel_mm3: one voxel's volume in mm³.
        min_mm3: components of this volume or less are dropped (label 0).
        connectivity: 1 (faces), 2 (and edges) or 3 (and corners).
    Returns:
        (labels, count): int32 array of the mask's shape, 0 outside lesions; the lesion count.
    Raises:
        ValueError: a connectivity other than 1, 2, 3 or a voxel volume that is not positive.
    """
    import numpy as np
    from scipy import ndimage

    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1 (faces), 2 (and edges) or 3 (and corners); "
                         f"found {connectivity!r}")
    if not voxel_mm3 > 0:
        raise ValueError(f"voxel_mm3 must be a positive volume; found {voxel_mm3!r}")
    mask = np.asarray(mask) != 0
    structure = ndimage.generate_binary_structure(mask.ndim, min(connectivity, mask.ndim))
    labels, count = ndimage.label(mask, structure=structure, output=np.int32)
    keep = np.bincount(labels.ravel(), minlength=count + 1) >= min_lesion_voxels(voxel_mm3,
                                                                                  min_mm3)
    keep[0] = False
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return relabel[labels], int(keep.sum())

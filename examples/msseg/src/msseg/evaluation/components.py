"""Lesions as connected components: the one labelling rule of msseg and its defaults.

The lesion-wise metrics (`msseg.evaluation.metrics`) and the lesion map that `predict` writes
(`msseg.evaluation.lesions`) both call `label_lesions` with these defaults, so a lesion counted by
`evaluate` is the lesion listed in a scan's lesion table:

- `DEFAULT_CONNECTIVITY` = 26: voxels that share a face, an edge or a corner belong to one lesion
  (the MSSEG challenge's rule); 6 (faces) and 18 (faces and edges) are the alternatives;
- `MIN_LESION_MM3` = 3 mm³ (from `msseg.config`, the MSSEG challenge's smallest lesion): smaller
  components are dropped, counted in voxels of the scan's own grid (`min_lesion_voxels`).

The labelling is `scipy.ndimage.label`: scipy is a dependency already (resampling), it labels a
182 x 218 x 182 mask in well under a second, and `scipy.ndimage` also gives the per-lesion sums,
extremes and bounding boxes the lesion table needs. ``connected-components-3d`` is faster on
huge volumes, which msseg's scans are not, and would be one more compiled dependency.

Labels are numbered by size: 1 is the largest lesion, lesions of equal size in the order of
their first voxel in the array, so the same mask always gives the same lesion map.

    labels, count = label_lesions(mask, min_size=min_lesion_voxels(affine, MIN_LESION_MM3))
"""

from __future__ import annotations

import math

import numpy as np

from msseg.config import MIN_LESION_MM3

__all__ = ["CONNECTIVITIES", "DEFAULT_CONNECTIVITY", "MIN_LESION_MM3", "label_lesions",
           "min_lesion_voxels"]

CONNECTIVITIES = (6, 18, 26)  # neighbours that join voxels: faces; + edges; + corners
DEFAULT_CONNECTIVITY = 26  # the MSSEG challenge's lesions


def min_lesion_voxels(affine: np.ndarray, min_mm3: float) -> int:
    """The smallest lesion, in voxels of a grid with this affine, that has at least `min_mm3`.

    Args:
        affine: (4, 4) voxel-to-world matrix (any orientation, oblique allowed).
        min_mm3: the smallest lesion volume kept, in mm³ (0 keeps every voxel).
    Returns:
        A voxel count >= 1.
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))
    return max(1, math.ceil(min_mm3 / voxel_mm3 - 1e-9))


def label_lesions(mask: np.ndarray, *, connectivity: int = DEFAULT_CONNECTIVITY,
                  min_size: int = 1) -> tuple[np.ndarray, int]:
    """The lesions of a binary mask, numbered 1..count from the largest (see the module docstring).

    Args:
        mask: (X, Y, Z) binary mask (bool or 0/1; any non-zero voxel is lesion).
        connectivity: 6, 18 or 26 neighbours.
        min_size: components with fewer voxels are dropped (label 0).
    Returns:
        (labels, count): int32 array of the mask's shape, 0 outside lesions; the lesion count.
    Raises:
        ValueError: a connectivity other than 6, 18, 26, or min_size < 1.
    """
    from scipy import ndimage

    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES} neighbours; found "
                         f"{connectivity!r}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1 voxel; found {min_size!r}")
    mask = np.asarray(mask) != 0
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    structure = ndimage.generate_binary_structure(mask.ndim, min(rank, mask.ndim))
    labels, count = ndimage.label(mask, structure=structure, output=np.int32)
    if count == 0:
        return labels, 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    voxels = np.flatnonzero(labels)  # ascending, so a label's first hit is its first voxel
    _, first = np.unique(labels.ravel()[voxels], return_index=True)
    order = np.lexsort((voxels[first], -sizes))  # largest first, then storage order
    order = order[sizes[order] >= min_size]
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, len(order) + 1, dtype=np.int32)
    return relabel[labels], len(order)

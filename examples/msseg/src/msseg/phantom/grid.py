"""Sampling analytic shapes on a scan's voxel grid (used by the synthetic phantom).

A `VoxelGrid` knows where every voxel centre lies in a *head frame* (mm, RAS-like axes, origin
at the centre of the cerebrum). Shapes are described in that frame and rasterised with partial
volume: a voxel's fraction inside a surface falls linearly from 1 to 0 across one voxel width.
Small shapes are evaluated only inside their bounding box, which keeps a 512² x 144 phantom fast.

Public API:
    VoxelGrid(shape, voxel_to_head)
        .box(centre, radius) -> tuple[slice, slice, slice] | None
        .coordinates(box) -> (x, y, z) float32 arrays of the box
        .spacing -> mean voxel size in mm
    ellipsoid_distance(x, y, z, *, centre, semi_axes, rotation=None) -> radial distance (mm)
    inside(distance, *, width) -> partial-volume fraction in [0, 1]
"""

from __future__ import annotations

import numpy as np

Box = tuple[slice, slice, slice]
FULL: Box = (slice(None), slice(None), slice(None))


class VoxelGrid:
    """Voxel centres of an array (X, Y, Z) mapped into the head frame by a (4, 4) affine."""

    def __init__(self, shape: tuple[int, int, int], voxel_to_head: np.ndarray) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.matrix = np.asarray(voxel_to_head, dtype=np.float64)
        self.inverse = np.linalg.inv(self.matrix)
        self.spacing = float(np.mean(np.linalg.norm(self.matrix[:3, :3], axis=0)))

    def box(self, centre: np.ndarray, radius: float) -> Box | None:
        """Index slices covering the cube centre ± radius (mm); None if outside the array."""
        corners = np.array(np.meshgrid(*[[-radius, radius]] * 3, indexing="ij")).reshape(3, -1)
        index = self.inverse[:3, :3] @ (corners + np.reshape(centre, (3, 1)))
        index += self.inverse[:3, 3:]
        low = np.maximum(np.floor(index.min(axis=1)).astype(int), 0)
        high = np.minimum(np.ceil(index.max(axis=1)).astype(int) + 1, self.shape)
        if np.any(high <= low):
            return None
        return (slice(low[0], high[0]), slice(low[1], high[1]), slice(low[2], high[2]))

    def coordinates(self, box: Box = FULL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head-frame coordinates (mm) of the voxel centres in `box`, each of the box's shape."""
        axes = [np.arange(n, dtype=np.float32)[s] for n, s in zip(self.shape, box, strict=True)]
        i, j, k = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        m = self.matrix.astype(np.float32)
        return tuple(m[c, 0] * i + m[c, 1] * j + m[c, 2] * k + m[c, 3] for c in range(3))


def ellipsoid_distance(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    *,
    centre: np.ndarray,
    semi_axes: np.ndarray,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Signed distance (mm) to an ellipsoid's surface along the ray from its centre.

    Negative inside. Exact for spheres, a smooth approximation otherwise, which is all a
    partial-volume rasteriser needs.

    Args:
        x, y, z: head-frame coordinates (broadcastable arrays).
        centre: (3,) mm.
        semi_axes: (3,) mm, along the rotation's columns.
        rotation: (3, 3) with the ellipsoid's axes as columns; None = head axes.

    Returns:
        float32 array of the broadcast shape.
    """
    dx, dy, dz = x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float32)
        dx, dy, dz = (r[0, c] * dx + r[1, c] * dy + r[2, c] * dz for c in range(3))
    a = np.asarray(semi_axes, dtype=np.float32)
    radius = np.sqrt(dx * dx + dy * dy + dz * dz)
    scaled = np.sqrt((dx / a[0]) ** 2 + (dy / a[1]) ** 2 + (dz / a[2]) ** 2)
    reach = np.clip(radius / np.maximum(scaled, np.float32(1e-6)), a.min(), a.max())
    return (scaled - 1) * reach


def inside(distance: np.ndarray, *, width: float) -> np.ndarray:
    """Partial-volume fraction of a voxel at signed `distance` (mm) from a surface.

    Returns float32 in [0, 1]: 1 deep inside (distance <= -width/2), 0 outside.
    """
    return np.clip(np.float32(0.5) - distance / np.float32(width), 0, 1).astype(np.float32)

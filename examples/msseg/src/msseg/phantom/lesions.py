"""MS-like lesions for the phantom: small ovoid FLAIR hyperintensities and their mask.

Where lesions go (typical of MS): mostly periventricular, as ovoids whose long axis points away
from the ventricle wall ("Dawson's fingers"); juxtacortical, touching the cortex; a few in deep
white matter and in the brainstem. Sizes follow a log-normal equivalent radius (median 2.4 mm,
a heavy tail of confluent lesions) with a floor of about one voxel so every lesion is visible at
the phantom's resolution. Lesions are painted with partial volume, only into brain parenchyma;
the mask is where a voxel is at least half lesion. Lesions are added until the mask reaches a
target fraction of the array's voxels.

Public API:
    Lesion(shape: Ellipsoid, intensity)
    sample_lesion(rng, head, *, min_semi_axis) -> Lesion
    add_lesions(image, parenchyma, grid, head, rng, *, ratio) -> mask (X, Y, Z) uint8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msseg.phantom.anatomy import CORTEX_MM, Ellipsoid, HeadModel
from msseg.phantom.grid import VoxelGrid, inside

SITES = ("periventricular", "juxtacortical", "deep", "infratentorial")
SITE_WEIGHTS = (0.55, 0.27, 0.12, 0.06)
_MAX_LESIONS = 20000
_OVERSHOOT = 1.1  # a scan's lesion load ends within [1, 1.1] x its target


@dataclass(frozen=True, eq=False)
class Lesion:
    """One lesion: its ovoid in the head frame and its peak intensity (WM = 1)."""

    shape: Ellipsoid
    intensity: float


def sample_lesion(rng: np.random.Generator, head: HeadModel, *, min_semi_axis: float) -> Lesion:
    """Draw one lesion's site, size, orientation and brightness.

    Args:
        rng: random generator.
        head: the patient's anatomy (ventricles, cerebrum, brainstem).
        min_semi_axis: smallest semi-axis in mm (about one voxel of the target grid).

    Returns:
        A `Lesion` in the head frame.
    """
    site = SITES[rng.choice(len(SITES), p=SITE_WEIGHTS)]
    radius = float(np.clip(rng.lognormal(np.log(2.4), 0.45), 1.3, 7.0))
    if site == "periventricular" and rng.random() < 0.15:
        radius *= 1.8  # confluent periventricular lesion
    elongation = rng.uniform(1.3, 2.3) if site == "periventricular" else rng.uniform(1.0, 1.5)
    semi = radius * elongation ** np.array([2 / 3, -1 / 3, -1 / 3])  # volume of the r-sphere
    semi = np.maximum(semi, min_semi_axis)
    if site == "periventricular":
        centre, axis = _periventricular(rng, head, semi)
    elif site == "juxtacortical":
        centre, axis = _juxtacortical(rng, head, semi)
    else:
        host = head.cerebrum if site == "deep" else head.brainstem
        depth = rng.uniform(0.2, 0.65) if site == "deep" else rng.uniform(0.0, 0.6)
        axis = _unit(rng.normal(size=3))
        centre = host.centre + _unit(rng.normal(size=3)) * host.semi_axes * depth
    return Lesion(Ellipsoid(centre, semi, _frame(axis, rng)), float(rng.uniform(1.4, 2.1)))


def add_lesions(
    image: np.ndarray,
    parenchyma: np.ndarray,
    grid: VoxelGrid,
    head: HeadModel,
    rng: np.random.Generator,
    *,
    ratio: float,
) -> np.ndarray:
    """Paint lesions into `image` (in place) until the mask covers `ratio` of all voxels.

    Args:
        image: (X, Y, Z) float32 head image from `render_head`; modified in place.
        parenchyma: (X, Y, Z) brain-tissue fraction; lesions only grow there.
        grid: the voxel grid in the head frame.
        head: the anatomy the lesions are placed in.
        rng: random generator.
        ratio: target lesion voxel fraction of the whole array (e.g. 0.0014).

    Returns:
        (X, Y, Z) uint8 consensus mask {0, 1} (voxel at least half lesion), covering between
        1 and 1.1 times `ratio` of the voxels.

    Raises:
        RuntimeError: the target cannot be reached (the grid misses the brain).
    """
    mask = np.zeros(grid.shape, np.uint8)
    target = ratio * mask.size
    count = 0
    min_semi = 0.75 * float(np.max(np.linalg.norm(grid.matrix[:3, :3], axis=0)))
    for _ in range(_MAX_LESIONS):
        if count >= target:
            return mask
        lesion = sample_lesion(rng, head, min_semi_axis=min_semi)
        box = grid.box(lesion.shape.centre, lesion.shape.reach * 1.2 + grid.spacing)
        if box is None:
            continue
        x, y, z = grid.coordinates(box)
        smallest = float(lesion.shape.semi_axes.min())
        distance = lesion.shape.distance(x, y, z) + _lumps(rng, x, y, z) * (0.2 * smallest)
        fraction = inside(distance, width=grid.spacing) * parenchyma[box]
        core = np.clip(-distance / smallest, 0, 1)
        value = np.float32(lesion.intensity) * (0.85 + 0.15 * core)
        grown = mask[box] | (fraction >= 0.5)
        added = int(grown.sum()) - int(mask[box].sum())
        if count + added > target * _OVERSHOOT:
            continue  # too big for what is left of the load; a smaller lesion will follow
        image[box] += (value - image[box]) * fraction
        mask[box] = grown
        count += added
    raise RuntimeError(f"could not reach lesion ratio {ratio} in {_MAX_LESIONS} lesions "
                       f"(reached {count / mask.size:.5f}); does the grid cover the brain?")


def _periventricular(rng, head: HeadModel, semi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point just outside a lateral ventricle wall, long axis along the wall normal."""
    host = head.lateral_ventricles[int(rng.integers(len(head.lateral_ventricles)))]
    direction = _unit(rng.normal(size=3) * [1.0, 0.6, 1.0])
    rot = np.eye(3) if host.rotation is None else host.rotation
    local = direction * host.semi_axes
    normal = _unit(rot @ (direction / host.semi_axes))
    surface = host.centre + rot @ local
    gap = rng.uniform(-0.3, 0.6) * semi[0]
    return surface + normal * (semi[0] + gap), normal


def _juxtacortical(rng, head: HeadModel, semi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point in white matter touching the cortex, mostly in the upper half of the cerebrum."""
    direction = _unit(rng.normal(size=3) + np.array([0.0, 0.0, 0.6]))
    surface = head.cerebrum.centre + direction * head.cerebrum.semi_axes
    inward = -_unit(direction / head.cerebrum.semi_axes)
    depth = CORTEX_MM + rng.uniform(0.3, 0.9) * semi.min()
    return surface + inward * depth, _unit(rng.normal(size=3))


def _frame(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation whose first column is `axis` (the lesion's long axis), random roll."""
    helper = _unit(rng.normal(size=3))
    second = _unit(np.cross(axis, helper))
    return np.column_stack([axis, second, np.cross(axis, second)])


def _lumps(rng: np.random.Generator, x, y, z) -> np.ndarray:
    """Smooth field in about [-1, 1] that makes a lesion's boundary lumpy."""
    k = rng.normal(size=(3, 3)) * 0.6
    phase = rng.uniform(0, 6.3, 3)
    bumps = sum(np.sin(k[i, 0] * x + k[i, 1] * y + k[i, 2] * z + phase[i]) for i in range(3))
    return (bumps / np.sqrt(3)).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)

"""An analytic FLAIR head for the synthetic phantom: scalp, skull, CSF, cortex, white matter,
deep grey matter, ventricles, cerebellum and the bright things that fool a threshold.

Everything is described in a head frame (mm; x to the right, y anterior, z superior; origin at
the centre of the cerebrum) with smooth shapes: ellipsoids whose surfaces are perturbed by a few
low-frequency waves, a cortex folded by a band-limited "gyral" wave field, and an
interhemispheric fissure. `render_head` samples it on any voxel grid with partial volume.

Intensities are FLAIR-like, relative to white matter (WM = 1): CSF is suppressed (dark), grey
matter is a little brighter than WM, scalp fat and diploë are bright, bone is dark. Bright
distractors a lesion detector must learn to ignore: scalp and neck fat (brighter than lesions),
periventricular "caps" (a normal bright rim around the ventricles) and CSF-flow artefacts (bright
blobs inside the ventricles).

Public API:
    Ellipsoid(centre, semi_axes, rotation=None)
    HeadModel                         per-patient shapes; sample_head(rng) draws one
    TISSUE                             default intensities (WM = 1)
    render_head(grid, head, *, tissue=TISSUE) -> (image, parenchyma), both (X, Y, Z) float32
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from msseg.phantom.grid import Box, VoxelGrid, ellipsoid_distance, inside

TISSUE: dict[str, float] = {
    "wm": 1.0, "gm": 1.2, "deep_gm": 1.08, "cerebellum": 1.12, "brainstem": 1.02,
    "csf": 0.25, "rim": 1.35, "fat": 2.6, "skin": 1.0, "bone": 0.1, "diploe": 1.4,
    "muscle": 0.75,
}  # fmt: skip
CORTEX_MM = 2.8  # cortical thickness
SULCUS_MM = 0.8  # half-width of CSF in a sulcus
SULCUS_DEPTH_MM = 14.0
RIM_MM = 1.6  # periventricular bright rim
HALO_MM, HALO_WEIGHT = 4.0, 0.6  # fading periventricular hyperintensity around the rim
# Shell boundaries outside the brain surface (mm): CSF, inner table, diploë, outer table, fat, skin.
SHELLS = (("csf", 2.5), ("bone", 4.5), ("diploe", 6.5), ("bone", 8.0), ("fat", 13.0),
          ("skin", 15.0))  # fmt: skip


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """(3, 3) rotation from angles in degrees about z (yaw), x (pitch) and y (roll)."""
    a, b, c = np.radians([yaw, pitch, roll])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


@dataclass(frozen=True, eq=False)
class Ellipsoid:
    """Ellipsoid in the head frame: centre (3,) mm, semi-axes (3,) mm, rotation (3, 3) or None."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray | None = None

    @property
    def reach(self) -> float:
        """Largest semi-axis: radius of a bounding sphere."""
        return float(np.max(self.semi_axes))

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed radial distance (mm) to the surface; negative inside."""
        return ellipsoid_distance(
            x, y, z, centre=self.centre, semi_axes=self.semi_axes, rotation=self.rotation
        )


@dataclass(frozen=True, eq=False)
class HeadModel:
    """One patient's head. Waves are (K, 4) rows (kx, ky, kz, phase) in rad/mm."""

    cerebrum: Ellipsoid
    cerebellum: Ellipsoid
    brainstem: Ellipsoid
    lower_head: Ellipsoid
    lateral_ventricles: tuple[Ellipsoid, ...]  # bodies, frontal horns, atria: lesions line them
    other_ventricles: tuple[Ellipsoid, ...]  # temporal horns, third ventricle
    caps: tuple[Ellipsoid, ...]
    deep_grey: tuple[Ellipsoid, ...]
    flow_artefacts: tuple[Ellipsoid, ...]
    flow_intensity: tuple[float, ...]
    gyri: np.ndarray = field(repr=False)
    shape_waves: np.ndarray = field(repr=False)

    @property
    def ventricles(self) -> tuple[Ellipsoid, ...]:
        """Every ventricle part (all CSF)."""
        return self.lateral_ventricles + self.other_ventricles


def sample_head(rng: np.random.Generator) -> HeadModel:
    """Draw a head: size ±5 %, ventricles enlarged by atrophy, own gyri, CSF-flow artefacts."""
    size = rng.uniform(0.95, 1.04)
    a = rng.uniform(0.95, 1.45)  # ventricle enlargement (atrophy)

    def ell(centre, semi, rot=None, scale=size):
        return Ellipsoid(np.array(centre, float) * scale, np.array(semi, float) * scale, rot)

    lateral, horns, caps = [], [], []
    for side in (-1, 1):
        lateral += [
            ell((side * (8 + 2 * a), -5, 14), (4 * a, 24, 6 * a), rotation(side * 8)),  # body
            ell((side * (9 + 2 * a), 22, 8), (4.5 * a, 11, 8 * a), rotation(-side * 10)),
            ell((side * 18, -30, 6), (5 * a, 12, 7 * a), rotation(side * 25)),  # atrium
        ]
        horns.append(ell((side * 28, -8, -14), (3 * a, 14, 3.5 * a), rotation(-side * 12, 10)))
        caps += [
            ell((side * (9 + 2 * a), 31, 8), (6 * a, 6, 8 * a)),
            ell((side * 21, -40, 6), (6 * a, 6, 7 * a), rotation(side * 25)),
        ]
    third = ell((0, -4, -2), (1.5 * a, 13, 9))
    deep_grey = [
        ell((s * 11, -12, 2), (7, 13, 8)) for s in (-1, 1)
    ] + [ell((s * 15, 13, 8), (4.5, 9, 7)) for s in (-1, 1)] + [
        ell((s * 25, 4, 0), (5.5, 14, 9)) for s in (-1, 1)
    ]
    n_flow = int(rng.integers(2, 6))
    sources = (lateral[0], lateral[3], third, third)  # bodies and (twice as often) the third
    flow_centres = [sources[int(i)].centre for i in rng.integers(0, len(sources), n_flow)]
    flow = tuple(
        Ellipsoid(c + rng.normal(0, 2.0, 3), rng.uniform(1.5, 4.0, 3)) for c in flow_centres
    )
    gyri_dir = rng.normal(size=(7, 3))
    gyri_dir /= np.linalg.norm(gyri_dir, axis=1, keepdims=True)
    gyri = np.c_[gyri_dir * (2 * np.pi / rng.uniform(16, 24, (7, 1))), rng.uniform(0, 6.3, 7)]
    waves_dir = rng.normal(size=(4, 3))
    shape_waves = np.c_[waves_dir * 0.03, rng.uniform(0, 6.3, 4)]
    return HeadModel(
        cerebrum=ell((0, 0, 0), (66, 84, 57)),
        cerebellum=ell((0, -52, -40), (48, 30, 21)),
        brainstem=ell((0, -22, -42), (11, 12, 28), rotation(0, 15)),
        lower_head=ell((0, 12, -85), (64, 90, 70)),
        lateral_ventricles=tuple(lateral),
        other_ventricles=(*horns, third),
        caps=tuple(caps),
        deep_grey=tuple(deep_grey),
        flow_artefacts=flow,
        flow_intensity=tuple(rng.uniform(1.4, 2.4, n_flow)),
        gyri=gyri,
        shape_waves=shape_waves,
    )


def render_head(
    grid: VoxelGrid, head: HeadModel, *, tissue: dict[str, float] = TISSUE
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the head on a voxel grid with partial volume.

    Args:
        grid: the scan's voxel grid in the head frame.
        head: the patient's shapes.
        tissue: intensities relative to WM (keys of `TISSUE`).

    Returns:
        image: (X, Y, Z) float32 noiseless FLAIR-like intensities, WM = tissue["wm"].
        parenchyma: (X, Y, Z) float32 fraction of brain tissue (not CSF) per voxel, where
            lesions may grow.
    """
    h = grid.spacing
    x, y, z = grid.coordinates()
    image = np.zeros(grid.shape, np.float32)

    lower = head.lower_head.distance(x, y, z)
    _paint(image, tissue["muscle"], inside(lower, width=h))
    _paint(image, tissue["fat"], inside(lower, width=h) - inside(lower + 6, width=h))

    brain = np.minimum(head.cerebrum.distance(x, y, z), head.cerebellum.distance(x, y, z))
    brain += _waves(head.shape_waves, x, y, z, amplitude=2.0)
    for name, outer in reversed(SHELLS):
        _paint(image, tissue[name], inside(brain - outer, width=h))
    in_brain = inside(brain, width=h)
    _paint(image, tissue["gm"], in_brain)

    sulcus = _sulcus_distance(head, x, y, z, brain)
    to_csf = np.minimum(-brain, sulcus)
    _paint(image, tissue["wm"], inside(CORTEX_MM - to_csf, width=h))
    sulcal_csf = inside(sulcus - SULCUS_MM, width=h) * in_brain
    del x, y, z, lower, to_csf

    for part in head.deep_grey:
        _paint_shape(image, grid, part, tissue["deep_gm"])
    _paint_shape(image, grid, head.cerebellum, tissue["cerebellum"], folia=True)
    _paint_shape(image, grid, head.brainstem, tissue["brainstem"])
    _paint(image, tissue["csf"], sulcal_csf)
    parenchyma = in_brain * (1 - sulcal_csf)
    del sulcal_csf, in_brain, brain

    for cap in head.caps:
        _paint_shape(image, grid, cap, tissue["rim"], keep=parenchyma)
    box = _union_box(grid, head.ventricles, margin=6 * HALO_MM)  # halo < 0.2 % at the edge
    if box is not None:
        xv, yv, zv = grid.coordinates(box)
        ventricle = np.min([v.distance(xv, yv, zv) for v in head.ventricles], axis=0)
        halo = np.float32(HALO_WEIGHT) * np.exp(-np.maximum(ventricle, 0) / np.float32(HALO_MM))
        _paint(image[box], tissue["rim"], halo * parenchyma[box])
        _paint(image[box], tissue["rim"], inside(ventricle - RIM_MM, width=h) * parenchyma[box])
        fluid = inside(ventricle, width=h)
        _paint(image[box], tissue["csf"], fluid)
        parenchyma[box] *= 1 - fluid
        for blob, value in zip(head.flow_artefacts, head.flow_intensity, strict=True):
            _paint_shape(image, grid, blob, value, keep=None, within=(box, fluid))
    return image, parenchyma


def _paint(image: np.ndarray, value: float, fraction: np.ndarray) -> None:
    """image = image * (1 - fraction) + value * fraction, in place (image is ours)."""
    image += (np.float32(value) - image) * fraction


def _paint_shape(
    image: np.ndarray,
    grid: VoxelGrid,
    shape: Ellipsoid,
    value: float,
    *,
    folia: bool = False,
    keep: np.ndarray | None = None,
    within: tuple[Box, np.ndarray] | None = None,
) -> None:
    box = grid.box(shape.centre, shape.reach + 2 * grid.spacing)
    if box is None:
        return
    x, y, z = grid.coordinates(box)
    fraction = inside(shape.distance(x, y, z), width=grid.spacing)
    if keep is not None:
        fraction *= keep[box]
    if within is not None:
        fraction *= _crop(within, box)
    values = np.float32(value)
    if folia:
        values = values * (1 + np.float32(0.07) * np.sin(1.3 * z + 0.4 * y))
    _paint(image[box], values, fraction)


def _crop(within: tuple[Box, np.ndarray], box: Box) -> np.ndarray:
    """Values of an array defined on box `within[0]` at the positions of `box` (0 outside)."""
    outer, values = within
    out = np.zeros([s.stop - s.start for s in box], np.float32)
    src, dst = [], []
    for b, o in zip(box, outer, strict=True):
        low, high = max(b.start, o.start), min(b.stop, o.stop)
        if high <= low:
            return out
        src.append(slice(low - o.start, high - o.start))
        dst.append(slice(low - b.start, high - b.start))
    out[tuple(dst)] = values[tuple(src)]
    return out


def _union_box(grid: VoxelGrid, shapes: tuple[Ellipsoid, ...], *, margin: float) -> Box | None:
    """Box around all shapes plus `margin` mm on every side."""
    centres = np.array([s.centre for s in shapes])
    low = (centres - [[s.reach] for s in shapes]).min(axis=0) - margin
    high = (centres + [[s.reach] for s in shapes]).max(axis=0) + margin
    return grid.box((low + high) / 2, float(np.max(high - low) / 2))


def _waves(waves: np.ndarray, x, y, z, *, amplitude: float) -> np.ndarray:
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), np.float32)
    for kx, ky, kz, phase in waves.astype(np.float32):
        total += np.sin(kx * x + ky * y + kz * z + phase)
    return total * np.float32(amplitude / np.sqrt(len(waves)))


def _sulcus_distance(head: HeadModel, x, y, z, brain: np.ndarray) -> np.ndarray:
    """Approximate distance (mm) to the nearest sulcus or the interhemispheric fissure."""
    field = _waves(head.gyri, x, y, z, amplitude=1.0)
    slope = np.float32(np.mean(np.linalg.norm(head.gyri[:, :3], axis=1)) * 0.7)
    sulcus = np.abs(field) / slope + np.maximum(0, -brain - SULCUS_DEPTH_MM)
    arch = np.sqrt(np.clip(1 - (y / np.float32(44)) ** 2, 0, 1))  # corpus callosum: an arch
    floor = np.float32(38) * arch - np.float32(20)
    midline = np.float32(1.5) * np.sin(np.float32(0.05) * y + np.float32(0.03) * z)
    fissure = np.abs(x - midline) + np.maximum(0, floor - z)
    return np.minimum(sulcus, fissure)

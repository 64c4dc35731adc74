"""Axial, coronal and sagittal pictures of a scan through one lesion, as the report shows them.

    views = lesion_views(scan.flair, analysis.labels, scan.geometry, label=1)
    views[0].png, views[0].ends      # PNG bytes; ("R", "L", "A", "P"): left, right, top, bottom

Each picture is the slice, in each of the three planes, that holds the most voxels of the lesion
(of several such, the one nearest its centroid), shown in the radiological convention of
clinical viewers: axial and coronal slices with the patient's right on the viewer's left, axial
from below (anterior up), coronal from the front
(superior up), sagittal with anterior on the left and superior up. The planes are those of the
scanner axes closest to the voxel axes (`msseg.io.orientation`: flips and permutations, no
interpolation), and the pictures keep the voxels' true proportions: every picture of a scan has
the same millimetres per pixel, about `DISPLAY_PIXELS` pixels for the scan's largest extent,
with each voxel a block of whole pixels (nearest neighbour). FLAIR grey levels run from the
0.5th to the 99.5th percentile of the head (its non-zero voxels).

A fourth picture shows the axial slice again, `ZOOM_MM` around the lesion, where small lesions
are a few voxels wide. Colours: the shown lesion in `SHOWN`, the other lesions in `OTHER`; with
a ground truth (cross-validation, the demo) the voxels are scored instead, in the colours of the
overlay figure (`msseg.evaluation.overlay`): true positive, false positive and missed lesion
voxels. Each coloured region is filled half-transparent over the FLAIR and outlined opaque.
Small marks on the picture's edges point at the lesion's centroid.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from msseg.evaluation.overlay import FALSE_NEGATIVE, FALSE_POSITIVE, TRUE_POSITIVE
from msseg.io.orientation import Geometry

__all__ = ["DISPLAY_PIXELS", "OTHER", "SHOWN", "View", "ZOOM_MM", "legend", "lesion_views"]

DISPLAY_PIXELS = 220  # the scan's largest extent, in pixels (4 pictures fit a 1200 px wide page)
ZOOM_MM = 48.0  # the field of view of the zoomed axial picture
SHOWN = (1.0, 0.25, 0.1)  # the lesion the slices go through: red-orange
OTHER = (1.0, 0.8, 0.0)  # every other lesion: yellow
MARK = (0.2, 0.9, 1.0)  # the centroid marks on the edges: cyan
_FILL_ALPHA = 0.5
# Canonical axes: 0 left -> right, 1 posterior -> anterior, 2 inferior -> superior. Each plane:
# the axis cut, and the patient's directions at the picture's (left, right, top, bottom) edges.
_PLANES = (("axial", 2, ("R", "L", "A", "P")), ("coronal", 1, ("R", "L", "S", "I")),
           ("sagittal", 0, ("A", "P", "S", "I")))


@dataclass(frozen=True)
class View:
    """One picture: PNG bytes, its plane, the slice shown, and the patient directions at its
    (left, right, top, bottom) edges."""

    png: bytes
    plane: str
    slice_index: int  # along the cut canonical axis, 0-based
    slices: int
    ends: tuple[str, str, str, str]
    width: int
    height: int


def legend(*, scored: bool) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    """The colours of `lesion_views` and what they mean."""
    if scored:
        return (("true positive: lesion found", TRUE_POSITIVE),
                ("false positive: not a lesion", FALSE_POSITIVE),
                ("false negative: lesion missed", FALSE_NEGATIVE),
                ("centroid of the lesion shown (edge marks)", MARK))
    return (("the lesion shown", SHOWN), ("other lesions", OTHER),
            ("centroid of the lesion shown (edge marks)", MARK))


def lesion_views(flair: np.ndarray, labels: np.ndarray, geometry: Geometry, *, label: int,
                 truth: np.ndarray | None = None) -> list[View]:
    """The pictures through lesion `label` (module docstring): axial, coronal, sagittal, and,
    for a lesion, the axial slice again with `ZOOM_MM` around it.

    Args:
        flair: (X, Y, Z) FLAIR on the scan's grid.
        labels: (X, Y, Z) lesion map on the same grid (`msseg.evaluation.lesion_table`).
        geometry: the scan's grid.
        label: the lesion to go through (1 = the largest); 0 shows the middle slices.
        truth: (X, Y, Z) binary ground truth, to score the prediction's voxels against.
    Returns:
        Three `View`s (axial, coronal, sagittal), and a fourth, the zoomed axial one, when
        `label` is a lesion.
    Raises:
        ValueError: arrays that are not on the geometry's grid.
    """
    canonical = [geometry.to_canonical(np.asarray(a)) for a in
                 (flair, labels, *(() if truth is None else (truth,)))]
    grey, lesions = _grey(canonical[0]), canonical[1]
    scored = None if truth is None else canonical[2] > 0
    where = np.argwhere(lesions == label) if label else np.empty((0, 3), int)
    spacing = _canonical_spacing(geometry)
    scale = DISPLAY_PIXELS / float(max(np.array(grey.shape) * spacing))  # pixels per mm
    views = []
    for plane, axis, ends in _PLANES:
        if len(where):
            counts = np.bincount(where[:, axis], minlength=grey.shape[axis])
            centre = where.mean(axis=0)
            fullest = np.flatnonzero(counts == counts.max())  # of these, the nearest the centroid
            index = int(fullest[np.argmin(np.abs(fullest - centre[axis]))])
        else:
            index, centre = grey.shape[axis] // 2, None
        cut = np.take(lesions, index, axis=axis)
        colour, layers = _colours(cut, label,
                                  None if scored is None else np.take(scored, index, axis))
        image = _paint(np.take(grey, index, axis=axis), colour, layers)
        kept = [a for a in range(3) if a != axis]
        # the centroid in display pixels of the slice: columns and rows both run reversed
        point = None if centre is None else np.array(grey.shape)[kept] - 0.5 - centre[kept]
        views.append(_view(image, spacing[kept], scale, point, plane, index, grey.shape[axis],
                           ends))
        if plane == "axial" and point is not None:
            half = ZOOM_MM / 2 / spacing[kept]  # in voxels, along columns and rows
            low = np.clip(np.round(point - half).astype(int), 0, None)
            high = np.minimum(low + np.ceil(2 * half).astype(int), image.shape[1::-1])
            low = np.maximum(high - np.ceil(2 * half).astype(int), 0)
            crop = image[low[1]:high[1], low[0]:high[0]]
            views.append(_view(crop, spacing[kept], DISPLAY_PIXELS / ZOOM_MM, point - low,
                               f"axial, {ZOOM_MM:g} mm around the lesion", index,
                               grey.shape[axis], ends))
    return views


def _view(image: np.ndarray, spacing: np.ndarray, scale: float, point: np.ndarray | None,
          plane: str, index: int, slices: int, ends: tuple[str, str, str, str]) -> View:
    """A display image at `scale` pixels per mm, the centroid `point` (columns, rows, in the
    image's voxels) marked on its edges, as a PNG `View`."""
    from matplotlib.image import imsave

    shown = _display(image, spacing, scale)
    if point is not None:
        _mark(shown, point / np.array(image.shape[1::-1]))
    buffer = io.BytesIO()
    imsave(buffer, shown, format="png")
    return View(buffer.getvalue(), plane, index, slices, ends, shown.shape[1], shown.shape[0])


def _grey(flair: np.ndarray) -> np.ndarray:
    head = flair[flair != 0]
    low, high = np.percentile(head if head.size else flair, (0.5, 99.5))
    return np.clip((flair - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)


def _colours(lesions: np.ndarray, label: int,
             truth: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A slice's overlay: (A, B, 3) colours and (A, B) layer numbers (0 where there is none)."""
    rgb = np.zeros((*lesions.shape, 3), np.float32)
    layers = np.zeros(lesions.shape, np.int8)
    predicted = lesions > 0
    if truth is None:
        regions = ((predicted & (lesions != label), OTHER), (lesions == label, SHOWN))
    else:
        regions = ((predicted & truth, TRUE_POSITIVE), (predicted & ~truth, FALSE_POSITIVE),
                   (truth & ~predicted, FALSE_NEGATIVE))
    for number, (where, colour) in enumerate(regions, start=1):
        rgb[where] = colour
        layers[where] = number
    return rgb, layers


def _paint(grey: np.ndarray, colour: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """A canonical slice (A, B) with its overlay, filled and outlined, turned to display rows
    and columns."""
    edge = np.zeros(layers.shape, bool)  # a voxel of a layer beside another layer or none
    edge[1:] |= layers[1:] != layers[:-1]
    edge[:-1] |= layers[:-1] != layers[1:]
    edge[:, 1:] |= layers[:, 1:] != layers[:, :-1]
    edge[:, :-1] |= layers[:, :-1] != layers[:, 1:]
    alpha = np.where(layers > 0, np.where(edge, 1.0, _FILL_ALPHA), 0.0)[..., None]
    rgb = (1 - alpha) * np.repeat(grey[..., None], 3, axis=-1) + alpha * colour
    return np.ascontiguousarray(rgb[::-1, ::-1].transpose(1, 0, 2))  # see _PLANES


def _canonical_spacing(geometry: Geometry) -> np.ndarray:
    spacing = np.zeros(3)
    sizes = np.linalg.norm(np.asarray(geometry.affine)[:3, :3], axis=0)
    for size, (axis, _) in zip(sizes, geometry.ornt, strict=True):
        spacing[int(axis)] = size
    return spacing


def _display(image: np.ndarray, spacing: np.ndarray, scale: float) -> np.ndarray:
    """Nearest-neighbour resize of a display image to `scale` pixels per mm, both ways."""
    columns, rows = spacing  # display columns run along the first kept axis, rows the second
    height = max(1, round(image.shape[0] * rows * scale))
    width = max(1, round(image.shape[1] * columns * scale))
    pick_rows = np.minimum((np.arange(height) + 0.5) * image.shape[0] / height, image.shape[0] - 1)
    pick_cols = np.minimum((np.arange(width) + 0.5) * image.shape[1] / width, image.shape[1] - 1)
    return image[pick_rows.astype(int)][:, pick_cols.astype(int)]


def _mark(image: np.ndarray, fraction: np.ndarray) -> None:
    """Ticks on the four edges at a point given as fractions of the width and height (in
    place)."""
    height, width = image.shape[:2]
    length, half = max(4, min(height, width) // 14), max(1, min(height, width) // 160)
    column = min(max(int(fraction[0] * width), half), width - 1 - half)
    row = min(max(int(fraction[1] * height), half), height - 1 - half)
    image[:length, column - half:column + half + 1] = MARK
    image[-length:, column - half:column + half + 1] = MARK
    image[row - half:row + half + 1, :length] = MARK
    image[row - half:row + half + 1, -length:] = MARK

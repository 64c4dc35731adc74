"""Overlay figure of one scan: FLAIR, the consensus mask, and the prediction scored voxel by voxel.

    save_overlay(scan.flair, scan.mask, predicted, scan.geometry, "overlays/01016SACH.png",
                 title="01016SACH  Dice 0.71")

Two rows (the sagittal and the axial slice with the most consensus lesion voxels) of three
panels: the FLAIR; the FLAIR with the consensus in red; the FLAIR with the prediction coloured
as true positive (green), false positive (yellow) and missed lesion voxels (red). The arrays are
on the scan's own grid; they are shown in the canonical frame (left to right, posterior to
anterior, inferior to superior) with the voxel aspect ratio from the affine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msseg.io.atomic import atomic_path
from msseg.io.orientation import Geometry

__all__ = ["save_overlay"]

_RED, _GREEN, _YELLOW = (0.9, 0.1, 0.1), (0.1, 0.85, 0.2), (1.0, 0.85, 0.0)


def save_overlay(
    flair: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    geometry: Geometry,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Write the overlay PNG (see the module docstring), atomically.

    Args:
        flair: (X, Y, Z) FLAIR on the scan's grid.
        truth, prediction: (X, Y, Z) binary masks on the same grid.
        geometry: the scan's geometry (orientation and voxel sizes).
        path: the PNG to write (folders are created).
        title: figure title, e.g. the patient id and its Dice.
    Returns:
        The path written.
    Raises:
        ValueError: arrays that are not on the geometry's grid.
    """
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, no global state

    flair, truth, prediction = (geometry.to_canonical(np.asarray(a)) for a in
                                (flair, truth, prediction))
    truth, prediction = truth > 0, prediction > 0
    low, high = np.percentile(flair, (0.5, 99.5))
    grey = np.clip((flair - low) / max(high - low, 1e-6), 0, 1)
    spacing = np.zeros(3)
    for size, (axis, _) in zip(np.linalg.norm(geometry.affine[:3, :3], axis=0), geometry.ornt):
        spacing[int(axis)] = size
    fig = Figure(figsize=(9, 6.2))
    axes = fig.subplots(2, 3)
    for row, (axis, name) in enumerate(((0, "sagittal"), (2, "axial"))):
        kept = tuple(a for a in range(3) if a != axis)
        shown = truth if truth.any() else prediction
        index = int(np.argmax(shown.sum(axis=kept))) if shown.any() else grey.shape[axis] // 2

        def cut(volume: np.ndarray, axis: int = axis, index: int = index) -> np.ndarray:
            return np.take(volume, index, axis=axis).T  # rows: the second kept axis, upwards

        image = np.repeat(cut(grey)[..., None], 3, axis=-1)
        panels = [(image, f"FLAIR ({name} {index})"),
                  (_paint(image, [(cut(truth), _RED)]), "consensus"),
                  (_paint(image, [(cut(truth & prediction), _GREEN),
                                  (cut(prediction & ~truth), _YELLOW),
                                  (cut(truth & ~prediction), _RED)]),
                   "prediction: TP green, FP yellow, FN red")]
        aspect = spacing[kept[1]] / spacing[kept[0]]
        for ax, (picture, label) in zip(axes[row], panels):
            ax.imshow(picture, origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=80, format="png")
    return Path(path)


def _paint(image: np.ndarray, layers: list[tuple[np.ndarray, tuple[float, float, float]]],
           alpha: float = 0.7) -> np.ndarray:
    out = image.copy()
    for where, colour in layers:
        out[where] = (1 - alpha) * out[where] + alpha * np.asarray(colour)
    return out

"""Overlay figure of one scan: FLAIR, the consensus mask, and the prediction scored voxel by voxel.

    save_overlay(scan.flair, scan.mask, predicted, scan.geometry, "overlays/01016SACH.png",
                 title="01016SACH  Dice 0.71")

Two rows (the sagittal and the axial slice with the most consensus lesion voxels) of three
panels: the FLAIR; the FLAIR with the consensus (yellow); the FLAIR with the prediction scored
against it: true positive (green), false positive (magenta), missed lesion voxels (blue) -- no
score colour is the consensus colour, and a legend says which is which. The arrays are on the
scan's own grid; they are shown whole in the canonical frame, with the voxel aspect ratio from
the affine and the patient directions (L/R, P/A, I/S) at the panel edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msseg.io.atomic import atomic_path
from msseg.io.orientation import Geometry

__all__ = ["save_overlay"]

TRUTH = (1.0, 0.85, 0.0)  # yellow
TRUE_POSITIVE = (0.1, 0.8, 0.2)  # green
FALSE_POSITIVE = (0.95, 0.2, 0.95)  # magenta
FALSE_NEGATIVE = (0.2, 0.55, 1.0)  # blue
LEGEND = (("consensus (truth)", TRUTH), ("true positive: lesion found", TRUE_POSITIVE),
          ("false positive: not a lesion", FALSE_POSITIVE),
          ("false negative: lesion missed", FALSE_NEGATIVE))
# Canonical axes run left -> Right, posterior -> Anterior, inferior -> Superior.
_ENDS = {0: ("L", "R"), 1: ("P", "A"), 2: ("I", "S")}


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
    from matplotlib.patches import Patch

    flair, truth, prediction = (geometry.to_canonical(np.asarray(a)) for a in
                                (flair, truth, prediction))
    truth, prediction = truth > 0, prediction > 0
    low, high = np.percentile(flair, (0.5, 99.5))
    grey = np.clip((flair - low) / max(high - low, 1e-6), 0, 1)
    spacing = np.zeros(3)
    for size, (axis, _) in zip(np.linalg.norm(geometry.affine[:3, :3], axis=0), geometry.ornt):
        spacing[int(axis)] = size
    fig = Figure(figsize=(9.5, 7))
    axes = fig.subplots(2, 3)
    for row, (axis, name) in enumerate(((0, "sagittal"), (2, "axial"))):
        kept = tuple(a for a in range(3) if a != axis)
        shown = truth if truth.any() else prediction
        index = int(np.argmax(shown.sum(axis=kept))) if shown.any() else grey.shape[axis] // 2

        def cut(volume: np.ndarray, axis: int = axis, index: int = index) -> np.ndarray:
            return np.take(volume, index, axis=axis).T  # rows: the second kept axis, upwards

        image = np.repeat(cut(grey)[..., None], 3, axis=-1)
        panels = [(image, f"FLAIR, {name} slice {index + 1} of {grey.shape[axis]}"),
                  (_paint(image, [(cut(truth), TRUTH)]), "consensus"),
                  (_paint(image, [(cut(truth & prediction), TRUE_POSITIVE),
                                  (cut(prediction & ~truth), FALSE_POSITIVE),
                                  (cut(truth & ~prediction), FALSE_NEGATIVE)]),
                   "prediction scored against the consensus")]
        aspect = spacing[kept[1]] / spacing[kept[0]]
        (left, right), (bottom, top) = _ENDS[kept[0]], _ENDS[kept[1]]
        for ax, (picture, label) in zip(axes[row], panels):
            ax.imshow(picture, origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_title(label, fontsize=9, pad=12)
            ax.axis("off")
            for x, y, text, ha, va in ((-0.02, 0.5, left, "right", "center"),
                                       (1.02, 0.5, right, "left", "center"),
                                       (0.5, -0.02, bottom, "center", "top"),
                                       (0.5, 1.0, top, "center", "bottom")):
                ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=8,
                        fontweight="bold", color="0.25")
    fig.legend(handles=[Patch(color=colour, label=text) for text, colour in LEGEND],
               loc="lower center", ncol=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0.01, 0.05, 0.99, 1.0), h_pad=2.0, w_pad=2.0)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=80, format="png")
    return Path(path)


def _paint(image: np.ndarray, layers: list[tuple[np.ndarray, tuple[float, float, float]]],
           alpha: float = 0.7) -> np.ndarray:
    out = image.copy()
    for where, colour in layers:
        out[where] = (1 - alpha) * out[where] + alpha * np.asarray(colour)
    return out

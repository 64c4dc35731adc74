"""Overlapping slabs along axis 0 (sagittal) and their recomposition (paper Eq. 1).

A cube of S slices is cut into slabs of `slab` consecutive slices whose starts are `step` apart
(`msseg.slab_geometry`: 31 slabs for the paper's S=256, slab=16, step=8). Recomposition maps
per-slab predictions back to S slices in one of two ways:

- ``"paper"`` (Eq. 1, generalised): every slice is taken from exactly one slab. With margin
  m = (slab - step) // 2, the first slab keeps its slices [0, m + step), middle slabs keep
  [m, m + step) and the last keeps [m, slab). For 16/8 that is slab 1 slices 1-12, slabs 2..30
  slices 5-12 and slab 31 slices 5-16 (1-based), as in the paper.
- ``"average"``: each slice is the mean over all slabs that contain it.

Public API:
    make_slabs(volume, *, slab=16, step=8) -> (n, slab, ...)
    recompose_slabs(slabs, *, step=8, method="paper") -> (S, ...)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from msseg.slab_geometry import SlabGeometry

RecomposeMethod = Literal["paper", "average"]
RECOMPOSE_METHODS: tuple[str, ...] = ("paper", "average")


def make_slabs(volume: np.ndarray, *, slab: int = 16, step: int = 8) -> np.ndarray:
    """Cut a volume into overlapping slabs along axis 0.

    Args:
        volume: (S, ...) array, e.g. the canonical (S, S, S) cube (axis 0 = sagittal slices).
        slab: slices per slab.
        step: distance between slab starts.

    Returns:
        New array (n, slab, ...) with n = (S - slab) / step + 1; slabs[i] = volume[i*step:][:slab].

    Raises:
        ValueError: volume has no axis, or slab/step do not tile S (see `SlabGeometry`).
    """
    volume = np.asarray(volume)
    if volume.ndim < 1:
        raise ValueError("volume must have at least one axis (the slab axis 0); found a scalar")
    starts = SlabGeometry(volume.shape[0], slab, step).starts
    return np.stack([volume[s : s + slab] for s in starts])


def recompose_slabs(
    slabs: np.ndarray, *, step: int = 8, method: RecomposeMethod = "paper"
) -> np.ndarray:
    """Reassemble per-slab arrays into one volume; inverse of `make_slabs`.

    Args:
        slabs: (n, slab, ...) array, e.g. predicted probabilities per slab.
        step: the step used to cut the slabs; S = slab + (n - 1) * step.
        method: "paper" (Eq. 1: each slice from one slab, see module docstring) or "average"
            (mean over all slabs that contain the slice).

    Returns:
        (S, ...) array; same dtype as `slabs` for "paper", floating for "average".

    Raises:
        ValueError: unknown method, fewer than 2 dims, or step invalid for the slab size.
    """
    slabs = np.asarray(slabs)
    if method not in RECOMPOSE_METHODS:
        raise ValueError(f"method must be one of {RECOMPOSE_METHODS}; found {method!r}")
    if slabs.ndim < 2 or slabs.shape[0] < 1:
        raise ValueError(f"slabs must be (n, slab, ...) with n >= 1; found shape {slabs.shape}")
    count, slab = slabs.shape[:2]
    size = SlabGeometry(slab + (count - 1) * step, slab, step).size
    if method == "paper":
        out = np.empty((size, *slabs.shape[2:]), dtype=slabs.dtype)
        margin = (slab - step) // 2
        for i in range(count):
            first = 0 if i == 0 else margin
            last = slab if i == count - 1 else margin + step
            out[i * step + first : i * step + last] = slabs[i, first:last]
        return out
    total = np.zeros((size, *slabs.shape[2:]), dtype=np.float64)
    hits = np.zeros(size, dtype=np.int64)
    for i in range(count):
        total[i * step : i * step + slab] += slabs[i]
        hits[i * step : i * step + slab] += 1
    total /= hits.reshape((size,) + (1,) * (slabs.ndim - 2))
    return total.astype(np.result_type(slabs.dtype, np.float32))

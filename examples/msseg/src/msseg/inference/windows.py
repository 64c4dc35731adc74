"""Sliding windows over a working volume of any size and aspect (recipe "spacing").

MONAI's `sliding_window_inference` owns cutting, batching and blending: windows of
(slab, window, window) voxels, `step` slices apart along the planar axis and
`window * (1 - overlap)` voxels apart in-plane (the grid `SlabDataset` trains on), the last
window of each axis flush with the volume's end, volumes smaller than a window padded with -1
(the scaled background). Overlapping predictions are blended with Gaussian importance weights
(highest at a window's centre, where the network sees the most context) or averaged.

    probability = predict_windows(volume, predictor, slab=16, step=8, window=256, overlap=0.5)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["BLENDS", "predict_windows"]

BLENDS = {"gaussian": "gaussian", "average": "constant"}  # msseg's name -> MONAI's BlendMode


def predict_windows(
    volume: np.ndarray,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    slab: int,
    step: int,
    window: int,
    overlap: float,
    batch_size: int = 2,
    blend: str = "gaussian",
) -> np.ndarray:
    """Lesion probabilities of a working volume, window by window, blended into one volume.

    Args:
        volume: (D, H, W) FLAIR in [-1, 1], planar axis first (`preprocess_scan`, the cache).
        predictor: (B, slab, window, window) FLAIR windows -> probabilities of the same shape.
        slab, step: window depth and the distance between window starts along depth.
        window, overlap: in-plane window edge and the overlap of neighbouring windows.
        batch_size: windows per predictor call.
        blend: "gaussian" or "average" (see the module docstring).
    Returns:
        (D, H, W) float32 probabilities.
    Raises:
        ValueError: an unknown blend, a batch_size < 1, or step outside 1..slab.
    """
    from monai.inferers import sliding_window_inference

    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {sorted(BLENDS)}; found {blend!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 1 <= step <= slab:
        raise ValueError(f"step must be in 1..slab={slab}; found {step}")
    # MONAI puts windows int(roi * (1 - overlap)) apart; the half voxel keeps `step` exact.
    depth_overlap = max(0.0, 1.0 - (step + 0.5) / slab)
    inputs = torch.from_numpy(np.array(volume, dtype=np.float32, order="C"))[None, None]
    with torch.inference_mode():
        out = sliding_window_inference(
            inputs, roi_size=(slab, window, window), sw_batch_size=batch_size,
            predictor=lambda batch: predictor(batch[:, 0])[:, None],
            overlap=(depth_overlap, overlap, overlap), mode=BLENDS[blend],
            padding_mode="constant", cval=-1.0)
    return np.asarray(out[0, 0].float().numpy(), dtype=np.float32)

"""Model forward on a stack of slabs, in batches: lesion probabilities out.

    model, config = load_model("runs/msseg/best.pt", device="cuda")
    probs = predict_probabilities(model, slabs, batch_size=4)   # (B, slab, S, S) float32, CPU

Recomposing the slabs of a scan into one cube (the paper's middle-8 rule, or averaging the
overlaps) and thresholding at `config.threshold` belong to the prediction command.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

__all__ = ["predict_probabilities"]


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module,
    slabs: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 2,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = True,
) -> torch.Tensor:
    """Sigmoid probabilities of `model` for every slab, computed `batch_size` slabs at a time.

    Args:
        model: a `PlanarResUNet` (put in eval mode here); runs on its own device.
        slabs: (B, C, slab, S, S) FLAIR slabs (C = 3 copies), or (B, slab, S, S) single-channel
            slabs, which are copied to the model's input channels.
        batch_size: slabs per forward pass.
        amp_dtype: autocast dtype (torch.bfloat16 / torch.float16) or None for float32.
        channels_last: feed channels_last_3d batches (match the model's memory format).
    Returns:
        (B, slab, S, S) float32 probabilities on the CPU.
    Raises:
        ValueError: for slabs of another rank or a batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    slabs = torch.as_tensor(slabs)
    param = next(model.parameters())
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv3d)).in_channels
    if slabs.dim() == 4:
        slabs = slabs.unsqueeze(1).expand(-1, channels, -1, -1, -1)
    if slabs.dim() != 5:
        raise ValueError(f"slabs must be (B, C, slab, S, S) or (B, slab, S, S), got "
                         f"{tuple(slabs.shape)}")
    model.eval()
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    autocast = (torch.autocast(param.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    out = torch.empty(slabs.shape[0], *slabs.shape[2:], dtype=torch.float32)
    for start in range(0, slabs.shape[0], batch_size):
        batch = slabs[start:start + batch_size].to(param.device, torch.float32,
                                                   non_blocking=True, memory_format=fmt)
        with autocast:
            logits = model(batch)
        out[start:start + batch_size] = torch.sigmoid(logits.float())[:, 0].cpu()
    return out

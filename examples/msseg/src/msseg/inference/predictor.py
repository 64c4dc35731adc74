"""The network as a `Predictor`: a callable from FLAIR inputs to lesion probabilities.

Everything that predicts takes a predictor (MONAI's inferers take the network the same way),
so the one prediction path (`msseg.inference.predict`) does not know where it comes from: a
trained model (`model_predictor`), a training checkpoint (`load_predictor`, which also gives
the config and the training scans' intensity profiles), or a stand-in in a test or benchmark.

    predictor, config, intensity = load_predictor("runs/paper/best.pt")   # device: auto
    probabilities = predictor(slabs)                              # (B, slab, h, w) -> same
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from msseg.config import TrainConfig
from msseg.device import Compute, resolve_compute
from msseg.recipes.recipe import Predictor
from msseg.training.checkpoint import load_trained
from msseg.training.run_data import checkpoint_data

__all__ = ["LoadedPredictor", "Predictor", "load_predictor", "model_predictor"]


class LoadedPredictor(NamedTuple):
    """A checkpoint's model as a predictor, with what prediction needs to know about it."""

    predictor: Predictor
    config: TrainConfig  # the config it was trained with
    intensity: list[list[float]] | None  # its training scans' intensity profiles, if saved


def model_predictor(model: nn.Module, *, compute: Compute, channels_last: bool = True) -> Predictor:
    """Wrap a trained network as a `Predictor` (eval mode, no autograd, sigmoid of its logits).

    Args:
        model: a `PlanarResUNet` (put on `compute.device`, eval mode; not copied).
        compute: device and autocast dtype (`msseg.device.resolve_compute`).
        channels_last: run in channels_last_3d memory format (as the model was trained).
    Returns:
        A predictor that copies each FLAIR input to the model's input channels and returns
        float32 probabilities on the CPU.
    """
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model.to(compute.device, memory_format=fmt).eval()
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv3d)).in_channels

    @torch.inference_mode()
    def predict(slabs: torch.Tensor) -> torch.Tensor:
        batch = slabs.unsqueeze(1).expand(-1, channels, -1, -1, -1)
        batch = batch.to(compute.device, torch.float32, non_blocking=True, memory_format=fmt)
        with compute.autocast():
            logits = model(batch)
        return torch.sigmoid(logits.float())[:, 0].cpu()

    return predict


def load_predictor(checkpoint: str | Path, *, device: str = "auto",
                   precision: str = "auto") -> LoadedPredictor:
    """The predictor of a training checkpoint, the config it was trained with and its training
    scans' intensity profiles (`msseg.data.intensity_checks`; None for a checkpoint without).

    Args:
        checkpoint: a checkpoint of a training run (e.g. ``best.pt``); read once.
        device, precision: as `msseg.device.resolve_compute` (checked before the checkpoint
            is read).
    Raises:
        FileNotFoundError, ValueError: a missing or foreign checkpoint, or an unusable device.
    """
    compute = resolve_compute(device, precision)
    model, config, read = load_trained(checkpoint, device=compute.device)
    saved = checkpoint_data(read, checkpoint)
    return LoadedPredictor(
        model_predictor(model, compute=compute, channels_last=config.channels_last), config,
        None if saved is None else saved.intensity)

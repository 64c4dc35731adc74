"""Checkpoints: written atomically, loaded safely, and models rebuilt from them.

A training checkpoint is a dict of plain values and tensors (loadable with
`torch.load(weights_only=True)`):
    format, config (TrainConfig.to_dict()), model, optimizer, scheduler, scaler (state_dicts),
    epoch (completed epochs), step (optimizer steps), best_val_loss, best_epoch, bad_epochs
    (the early-stopping counter), history (one dict per epoch), rng (python, numpy, torch, cuda).
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msseg.config import TrainConfig
from msseg.io.atomic import atomic_path
from msseg.model.encoder import RandomEncoderWarning
from msseg.model.resunet import PlanarResUNet, build_model

__all__ = [
    "FORMAT",
    "build_model_for_checkpoint",
    "get_rng_state",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = 1


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write `checkpoint` to `path` through `msseg.io.atomic`, so a crash never leaves a
    truncated checkpoint behind.

    Args:
        path: destination file (its folder is created).
        checkpoint: the dict to `torch.save`.
    Returns:
        The path written.
    """
    with atomic_path(path) as temporary:
        torch.save(checkpoint, temporary)
    return Path(path)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint` (tensors and plain values only).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not an msseg training checkpoint of a known format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
        raise ValueError(
            f"{path} is not an msseg checkpoint of format {FORMAT} (found format {found!r}); "
            f"it must come from msseg's train()"
        )
    return checkpoint


def get_rng_state() -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) random states, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` returned (CUDA states only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_model_for_checkpoint(config: TrainConfig) -> PlanarResUNet:
    """The model of `config` with no weight source (they come from a checkpoint): no hub
    download, no weights file, no random-encoder warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomEncoderWarning)
        return build_model(config.replace(pretrained=False, weights=None))


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[PlanarResUNet, TrainConfig]:
    """The trained model of a checkpoint, in eval mode, for prediction.

    Args:
        path: a checkpoint (e.g. `best.pt` of a training run).
        device: where to put the model.
    Returns:
        (model, config): the model (float32, eval mode) and the run's configuration.
    Raises:
        FileNotFoundError, ValueError: see `load_checkpoint`.
    """
    checkpoint = load_checkpoint(path)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = build_model_for_checkpoint(config)
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), config

"""Checkpoints: what a training checkpoint holds, written atomically with a checksum of its
contents, loaded safely, and models rebuilt from them.

A training checkpoint is a dict of plain values and tensors (loadable with
`torch.load(weights_only=True)`); this module is the one place that says what is in it, builds it
(`training_checkpoint`) and restores a run from it (`restore_training`):
    format, config (TrainConfig.to_dict()),
    model, optimizer, scheduler, scaler (the state_dicts of a `TrainingState`),
    epoch, step, best_val_loss, best_epoch, bad_epochs, history (a run's `Progress`),
    rng (python, numpy, torch, cuda),
    data (optional, `msseg.training.run_data.TrainingData`: the scans the run trains and
    validates on, by cache entry, and the training scans' intensity profiles),
    checksum (`msseg.io.checksum.values_digest` of everything else, checked on every load).

Every file is read by `msseg.io.torch_files.read_torch_file` (tensors and plain values only;
text, an ONNX model, a damaged file or a pickle that would run code is one line). A config is
checked by the code that checks the command line's (`TrainConfig`), and a trained model's must
fix its working grid (`TrainConfig.pipeline`); weights must be finite.

Each epoch `save_epoch` writes ``last.pt`` first: it is the run's commit point, holding the
epoch, the best epoch and the whole history. ``best.pt`` (the same bytes, when the epoch
improved), ``history.csv`` and ``curves.png`` follow from it. A crash at any point therefore
leaves a complete ``last.pt`` and the other files at most one save behind it: `load_model` refuses
a ``best.pt`` that the ``last.pt`` beside it says is superseded, and
`msseg.training.logbook.finish_best` (called when a run resumes) completes it. Every problem
with a file raises `CheckpointError`, one line naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msseg.config import TrainConfig
from msseg.io.atomic import atomic_write_bytes
from msseg.io.checksum import values_digest
from msseg.io.torch_files import TorchFileError, read_torch_file
from msseg.model.encoder import RandomEncoderWarning
from msseg.model.resunet import PlanarResUNet, build_model

if TYPE_CHECKING:
    from msseg.training.run_data import TrainingData

__all__ = [
    "FORMAT",
    "FROM_TRAIN",
    "RESUME_FIXED",
    "RESUME_KEYS",
    "CheckpointError",
    "Progress",
    "TrainingState",
    "build_model_for_checkpoint",
    "checkpoint_config",
    "get_rng_state",
    "load_checkpoint",
    "load_model",
    "load_trained",
    "load_weights",
    "restore_training",
    "saved_epoch",
    "save_checkpoint",
    "save_epoch",
    "set_rng_state",
    "training_checkpoint",
]

FORMAT = 2  # 2: with a checksum of the contents; 1 (no checksum) still loads, with a warning
# Fields that define the model and the optimizer's parameters: a resumed run must keep them.
RESUME_FIXED = ("encoder", "encoder_stages", "depth_policy", "train_encoder", "train_bottleneck",
                "bottleneck_filters", "decoder_filters", "slab")
FROM_TRAIN = "use a last.pt or best.pt written by `msseg train`"


@dataclass
class TrainingState:
    """The objects of a run whose state every checkpoint holds (`state_dict` each)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


@dataclass
class Progress:
    """Where a run stands after its last epoch: saved in every checkpoint, and all that early
    stopping and resuming read."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps
    best_val_loss: float = math.inf  # the lowest validation loss so far
    best_epoch: int = 0  # the 1-based epoch of that loss (best.pt); 0: none yet
    bad_epochs: int = 0  # epochs since the validation loss last improved
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch (history.csv)

    def end_epoch(self, row: dict[str, Any], *, steps: int) -> tuple[dict[str, Any], bool]:
        """Count an epoch of `steps` optimizer steps whose `row` (history.csv's columns but
        epoch and step) has its validation loss; returns the full row and whether the
        validation loss improved."""
        improved = row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch = row["val_loss"], self.epoch + 1
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.step += steps
        row = {"epoch": self.epoch, "step": self.step, **row}
        self.history = [*self.history, row]
        return row, improved

    def patience_spent(self, patience: int) -> bool:
        """Whether early stopping ends the run: `patience` epochs without improvement."""
        return self.bad_epochs > 0 and self.bad_epochs >= patience


# The keys of a training checkpoint that resuming reads.
RESUME_KEYS = ("config", *(f.name for f in dataclasses.fields(TrainingState)),
               *(f.name for f in dataclasses.fields(Progress)), "rng")


def training_checkpoint(config: TrainConfig, state: TrainingState, progress: Progress, *,
                        data: TrainingData | None = None) -> dict[str, Any]:
    """The checkpoint of a run after an epoch (see the module docstring for its keys)."""
    return {"format": FORMAT, "config": config.to_dict(),
            **{f.name: getattr(state, f.name).state_dict()
               for f in dataclasses.fields(TrainingState)},
            **{f.name: getattr(progress, f.name) for f in dataclasses.fields(Progress)},
            "rng": get_rng_state(), **({} if data is None else {"data": data.to_dict()})}


def restore_training(checkpoint: dict, path: str | Path, config: TrainConfig,
                     state: TrainingState) -> Progress:
    """Continue a run: load a checkpoint's states into `state` (in place) and its random
    states, and return its progress.

    Args:
        checkpoint: from `load_checkpoint(path)` (with `RESUME_KEYS`).
        path: where it was read, for messages.
        config: the resumed run's config; the fields of `RESUME_FIXED` must be the saved ones.
        state: the run's objects, built from `config`.
    Raises:
        ValueError: a field of `RESUME_FIXED` differs from the checkpoint's.
        CheckpointError: the weights do not fit the model, or the saved config is unusable.
    """
    saved = checkpoint_config(checkpoint, path)
    changed = {f: (getattr(saved, f), getattr(config, f)) for f in RESUME_FIXED
               if getattr(saved, f) != getattr(config, f)}
    if changed:
        raise ValueError(
            f"cannot resume from {path}: {changed} (checkpoint value, requested value) changed; "
            f"they define the model and optimizer, so a resumed run keeps the checkpoint's: "
            f"drop those flags (or --set items), or start a new run in another --out")
    load_weights(state.model, checkpoint, path)
    for name in ("optimizer", "scheduler", "scaler"):
        getattr(state, name).load_state_dict(checkpoint[name])
    set_rng_state(checkpoint["rng"])
    return Progress(**{f.name: checkpoint[f.name] for f in dataclasses.fields(Progress)})


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file, the problem and the fix."""


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write `checkpoint` (with `format` and `checksum` set) to `path`, atomically.

    Args:
        path: destination file (its folder is created).
        checkpoint: tensors and plain values (see the module docstring); not modified.
    Returns:
        The path written.
    Raises:
        msseg.io.atomic.WriteError: the disk is full or the folder not writable (the old file
            stays).
    """
    return atomic_write_bytes(path, _serialise(checkpoint))


def save_epoch(out_dir: str | Path, checkpoint: dict[str, Any], *, improved: bool) -> Path:
    """Save one epoch of a run: ``last.pt``, then ``best.pt`` (the same bytes) if `improved`.

    Returns:
        The path of ``last.pt``.
    Raises:
        msseg.io.atomic.WriteError: as `save_checkpoint`.
    """
    out_dir = Path(out_dir)
    data = _serialise(checkpoint)
    atomic_write_bytes(out_dir / "last.pt", data)
    if improved:
        atomic_write_bytes(out_dir / "best.pt", data)
    return out_dir / "last.pt"


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                    keys: tuple[str, ...] = RESUME_KEYS) -> dict:
    """Load and verify a checkpoint written by `save_checkpoint` (tensors and plain values only:
    a pickle that would run code is refused).

    Args:
        path: the file.
        map_location: where tensors go.
        keys: entries the checkpoint must have.
    Raises:
        FileNotFoundError: `path` does not exist.
        CheckpointError: a folder, empty, not a torch file (text, an ONNX model), truncated, a
            pickle with code in it (`msseg.io.torch_files`), not an msseg checkpoint, missing
            `keys`, or a checksum that does not match the contents.
    """
    path = Path(path)
    try:
        checkpoint = read_torch_file(path, role="checkpoint", fix=FROM_TRAIN,
                                     map_location=map_location)
    except TorchFileError as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in (1, FORMAT):
        found = (f"format {checkpoint.get('format')!r}" if isinstance(checkpoint, dict)
                 else f"a {type(checkpoint).__name__}")
        raise CheckpointError(f"{path}: not an msseg checkpoint of format {FORMAT} (found "
                              f"{found}, e.g. a 2D weights file); {FROM_TRAIN}")
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; it was edited or written by "
                              f"other code; {FROM_TRAIN}")
    _verify(path, checkpoint)
    return checkpoint


def checkpoint_config(checkpoint: dict, path: str | Path) -> TrainConfig:
    """The `TrainConfig` saved in a checkpoint, checked by the code that checks the command
    line's (`TrainConfig.validate`, the recipe's checks) and complete: a trained model's recipe
    fixes its working grid (`TrainConfig.pipeline`, e.g. recipe "spacing" with `spacing_mm`).

    Raises:
        CheckpointError: the saved config has fields this msseg does not know, invalid values,
            or an unfixed working grid.
    """
    values = checkpoint.get("config")
    try:
        if not isinstance(values, dict):
            raise TypeError(f"config is a {type(values).__name__}, expected a dict")
        config = TrainConfig.from_dict(values)  # the command line's checks
        config.pipeline  # noqa: B018 (a trained model's recipe has its grid: spacing_mm set)
        return config
    except TypeError as error:
        raise CheckpointError(f"{path}: its config does not fit this version of msseg ({error}); "
                              f"use the msseg version that wrote it, or retrain") from None
    except ValueError as error:
        raise CheckpointError(f"{path}: its config is invalid ({error}); {FROM_TRAIN}") from None


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
    """The trained model of a checkpoint, in eval mode, for prediction (`load_trained`).

    Returns:
        (model, config): the model (float32, eval mode) and the run's configuration.
    Raises:
        As `load_trained`.
    """
    model, config, _ = load_trained(path, device=device)
    return model, config


def load_trained(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[PlanarResUNet, TrainConfig, dict]:
    """The trained model of a checkpoint, its config and the checkpoint itself, read once.

    Args:
        path: a checkpoint (e.g. `best.pt` of a training run).
        device: where to put the model.
    Returns:
        (model, config, checkpoint): the model (float32, eval mode), the run's configuration,
        and the checkpoint as read (e.g. for `msseg.training.run_data.checkpoint_data`).
    Raises:
        FileNotFoundError: see `load_checkpoint`.
        CheckpointError: as `load_checkpoint`; a config or weights that do not make a model; a
            ``best.pt`` superseded by the ``last.pt`` beside it (an interrupted save).
    """
    checkpoint = load_checkpoint(path, keys=("config", "model", "epoch"))
    config = checkpoint_config(checkpoint, path)
    _check_not_superseded(Path(path), checkpoint)
    try:
        model = build_model_for_checkpoint(config)
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: its config does not build a model ({error}); "
                              f"{FROM_TRAIN}") from None
    load_weights(model, checkpoint, path)
    return model.to(device).eval(), config, checkpoint


def load_weights(model: torch.nn.Module, checkpoint: dict, path: str | Path) -> None:
    """Load a checkpoint's weights into `model` (built from its config), in place.

    Raises:
        CheckpointError: the weights do not fit the model (missing, unexpected or misshapen
            tensors), with the first of them named, or hold NaN or infinite values.
    """
    expected, state = model.state_dict(), checkpoint["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its model entry is a {type(state).__name__}, expected a "
                              f"state_dict; {FROM_TRAIN}")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in state if k in expected
                 and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)]
    if missing or unexpected or misshapen:
        encoder = checkpoint.get("config", {}).get("encoder")
        raise CheckpointError(
            f"{path}: its weights do not fit the model its config describes (encoder "
            f"{encoder}): {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(misshapen)} of another shape (first: {(missing + unexpected + misshapen)[0]});"
            f" it was edited or assembled from two runs; {FROM_TRAIN}")
    bad = next((k for k, v in state.items() if isinstance(v, torch.Tensor)
                and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(f"{path}: its weights hold NaN or infinite values (first: {bad}); "
                              f"the training diverged (try a lower --lr, or --precision fp32) "
                              f"or the file was edited; use an earlier checkpoint of the run, "
                              f"e.g. its best.pt")
    model.load_state_dict(state)


def _serialise(checkpoint: dict[str, Any]) -> bytes:
    values = {key: value for key, value in checkpoint.items() if key != "checksum"}
    values["format"] = FORMAT
    buffer = io.BytesIO()
    torch.save({**values, "checksum": values_digest(values)}, buffer)
    return buffer.getvalue()


def _verify(path: Path, checkpoint: dict) -> None:
    if checkpoint["format"] == 1:
        warnings.warn(f"{path}: written by an older msseg without a checksum, so its contents "
                      f"cannot be verified; retrain or resave it to get one", stacklevel=3)
        return
    values = {key: value for key, value in checkpoint.items() if key != "checksum"}
    try:
        found = values_digest(values)
    except TypeError as error:
        raise CheckpointError(f"{path}: {error}; {FROM_TRAIN}") from None
    if found != checkpoint.get("checksum"):
        raise CheckpointError(
            f"{path}: checksum mismatch: the contents changed after they were written (bit rot, "
            f"a bad copy or an edit), so it cannot be trusted; copy it again from a good source, "
            f"or use the run's other checkpoint (last.pt / best.pt)")


def saved_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint file holds, or None when it is missing or unusable."""
    try:
        return int(load_checkpoint(path, keys=("epoch",))["epoch"])
    except (OSError, CheckpointError):
        return None


def _check_not_superseded(path: Path, checkpoint: dict) -> None:
    """Refuse a best.pt whose run's last.pt names a later best epoch (a save interrupted
    between the two files)."""
    last = path.with_name("last.pt")
    if path.name != "best.pt" or not last.is_file():
        return
    try:
        record = read_torch_file(last, role="checkpoint", fix=FROM_TRAIN, mmap=True)
        last_epoch, best_epoch = int(record["epoch"]), int(record["best_epoch"])
    except (OSError, TorchFileError, KeyError, TypeError, ValueError):  # an unreadable last.pt
        return  # says nothing about best.pt
    if best_epoch > checkpoint["epoch"]:
        instead = (f"predict with {last} (it holds epoch {best_epoch}), or "
                   if last_epoch == best_epoch else "")
        raise CheckpointError(
            f"{path}: holds epoch {checkpoint['epoch']}, but {last} names epoch {best_epoch} "
            f"as the run's best: a save was interrupted; {instead}complete the run with "
            f"`msseg train ... --resume {last}`")

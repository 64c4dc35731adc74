"""Training: the paper's optimisation on a CPU, a GPU, or several GPUs with torchrun (DDP).

    from msseg.config import preset
    from msseg.data.slab_dataset import SlabDataset
    from msseg.training.engine import train
    result = train(preset("demo"), SlabDataset(images, masks), SlabDataset(val_images, val_masks))
    model, config = msseg.training.checkpoint.load_model(result.best_path)   # for prediction

Scale-out: `torchrun --nproc_per_node=4 <script calling train inside distributed_session()>`;
`config.batch_size` is the global batch, split evenly over the ranks, and every rank sees the
slabs a single process would see in the same order (a DistributedSampler shuffled with
seed + epoch), so N ranks train like one process with the same global batch (when the number
of slabs is a multiple of the number of ranks; otherwise the sampler repeats a few slabs).
The same order also lets a run be resumed on a different number of ranks.

Before the first epoch the plan is logged: samples per epoch, steps, validation samples, and,
after the first step, the epoch's time at that pace (`msseg.training.plan`). Progress shows as a
bar on a terminal and, without one (a batch job, a log file), as a line at least every minute
(`msseg.progress.StepProgress`).

Each epoch: train on every slab once (or on `samples_per_epoch` of them) -> validation loss and
Dice (over the validation slabs, in the working space: the native-grid Dice of the best
checkpoint is `msseg.workflows.validation`)
-> `last.pt` (and `best.pt` when the validation loss improved) -> a row in history.csv
(TensorBoard, curves.png) -> early stopping after `patience` epochs without improvement.
`train(..., resume="last.pt")` continues a run exactly where it stopped; a folder that holds a
run is not trained into otherwise (`overwrite=True` replaces it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from msseg.config import TrainConfig
from msseg.data.slab_dataset import SlabDataset
from msseg.evaluation.metrics import dice_from_counts
from msseg.model.losses import bce_dice_loss
from msseg.model.resunet import PlanarResUNet, build_model
from msseg.progress import StepProgress
from msseg.training.checkpoint import (
    Progress,
    TrainingState,
    build_model_for_checkpoint,
    finish_best,
    load_checkpoint,
    restore_training,
    save_epoch,
    training_checkpoint,
)
from msseg.training.logbook import TrainingLog, check_run_folder, clear_run
from msseg.training.plan import epoch_sampler, estimate_text, plan_text
from msseg.training.runtime import Runtime, make_runtime, seed_everything

__all__ = ["TrainResult", "keras_decay", "make_optimizer", "train", "validate"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: PlanarResUNet  # the final weights (not the best), on the training device
    best_path: Path | None  # checkpoint of the lowest validation loss (None: never finite)
    last_path: Path  # checkpoint of the last epoch (for resuming)
    history: list[dict[str, Any]]  # one row per epoch, as in history.csv
    best_val_loss: float
    best_epoch: int  # 1-based epoch of best_path
    stopped_early: bool  # True if early stopping ended the run before config.epochs


def keras_decay(lr_decay: float) -> Callable[[int], float]:
    """Keras' time-based decay as a LambdaLR factor: lr_t = lr / (1 + lr_decay * t) at step t."""
    return lambda step: 1.0 / (1.0 + lr_decay * step)


def make_optimizer(
    model: nn.Module, config: TrainConfig
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """Adam over the trainable parameters with Keras' defaults, and the decay schedule.

    Raises:
        ValueError: if the model has no trainable parameter.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("every parameter is frozen: nothing to train")
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas, eps=config.adam_eps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, keras_decay(config.lr_decay))


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train the planar res-u-net of `config` on slabs (see the module docstring).

    Args:
        config: the run's configuration (saved in every checkpoint).
        train_set, val_set: datasets of (image (3, slab, S, S), mask (1, slab, S, S)) float32
            pairs, e.g. `SlabDataset`.
        resume: a `last.pt` to continue from (epochs, optimizer, schedule, early stopping, RNG).
        overwrite: replace a run that `config.out_dir` holds (default: refuse to start).
    Returns:
        A `TrainResult`. Files in `config.out_dir` (rank 0 writes them): last.pt, best.pt,
        history.csv, curves.png, tensorboard/ (if installed).
    Raises:
        ValueError: empty datasets, a global batch not divisible by the number of ranks, or a
            checkpoint whose model fields differ from `config`.
        FileExistsError: `config.out_dir` holds a run, and neither `resume` nor `overwrite`.
    """
    check_run_folder(config.out_dir, resume=resume, overwrite=overwrite)
    rt = make_runtime(config)
    _check_datasets(config, train_set, val_set, rt)
    out = Path(config.out_dir)
    seed_everything(config.seed)
    state = _training_state(config, rt, for_checkpoint=resume is not None)
    checkpoint = None if resume is None else load_checkpoint(resume, map_location=rt.device)
    progress = (Progress() if checkpoint is None
                else restore_training(checkpoint, resume, config, state))
    net = _wrapped(state.model, config, rt)
    sampler, train_loader, val_loader = _loaders(config, train_set, val_set, rt)
    log = (_open_record(out, config, progress, overwrite=overwrite, resumed_from=resume,
                        checkpoint=checkpoint) if rt.is_main else None)
    if rt.is_main:
        volumes = len(train_set.images) if isinstance(train_set, SlabDataset) else None
        logger.info("%s", plan_text(config, train_set, val_set, steps=len(train_loader),
                                    volumes=volumes))
    first_step = (lambda seconds: logger.info("%s", estimate_text(
        first_step_s=seconds, steps=len(train_loader), epochs=config.epochs))
        ) if rt.is_main else None

    # a resumed run that early stopping had ended stays ended (unless more patience is given)
    stopped_early = progress.patience_spent(config.patience) and progress.epoch < config.epochs
    for epoch in range(config.epochs if stopped_early else progress.epoch, config.epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(net, train_loader, state, rt, config,
                                  desc=f"epoch {epoch + 1}/{config.epochs}",
                                  on_first_step=first_step)
        first_step = None
        val_loss, val_dice_working = validate(state.model, val_loader, rt, config)
        row, improved = progress.end_epoch(
            {"train_loss": train_loss, "val_loss": val_loss, "val_dice_working": val_dice_working,
             "lr": state.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - start},
            steps=len(train_loader))
        if rt.is_main:
            save_epoch(out, training_checkpoint(config, state, progress), improved=improved)
            log.write(row)  # after last.pt, the commit point (see the checkpoint module)
            logger.info("epoch %d/%d: train loss %.4f  validation loss %.4f  working-space Dice "
                        "%.3f  (%.1f s)", epoch + 1, config.epochs, train_loss, val_loss,
                        val_dice_working, row["seconds"])
        if not improved and progress.patience_spent(config.patience):
            stopped_early = epoch + 1 < config.epochs
            break

    if log is not None:
        log.close()
    rt.barrier()
    best = out / "best.pt" if progress.best_epoch else None
    return TrainResult(model=state.model, best_path=best, last_path=out / "last.pt",
                       history=progress.history, best_val_loss=progress.best_val_loss,
                       best_epoch=progress.best_epoch, stopped_early=stopped_early)


@torch.no_grad()
def validate(
    model: nn.Module, loader: DataLoader, rt: Runtime, config: TrainConfig
) -> tuple[float, float]:
    """Validation loss (mean per slab) and Dice of the thresholded prediction over all slabs,
    summed over ranks.

    Args:
        model: the (unwrapped) network; `loader` yields (images, masks) batches of this rank.
        rt: the runtime (device, precision, ranks).
        config: `dice_smooth`, `threshold`, `channels_last`.
    Returns:
        (loss, dice); the Dice is `msseg.evaluation.metrics.dice_from_counts` of the voxels
        counted over all slabs: nan when the validation slabs hold no lesion voxel.
    """
    model.eval()
    fmt = _memory_format(config)
    cut = math.log(config.threshold / (1 - config.threshold))  # sigmoid(x) >= t  <=>  x >= cut
    sums = torch.zeros(4, dtype=torch.float64, device=rt.device)  # loss, TP, |pred|, |truth|
    count = 0
    for images, masks in loader:
        images, masks = _to_device(images, rt, fmt), _to_device(masks, rt, fmt)
        with rt.autocast():
            logits = model(images)
        losses = bce_dice_loss(logits, masks, smooth=config.dice_smooth, reduction="none")
        pred, truth = logits.float() >= cut, masks > 0.5
        sums += torch.stack([losses.sum(), (pred & truth).sum(), pred.sum(), truth.sum()]).double()
        count += len(images)
    totals = rt.all_reduce_sum(torch.cat([sums, sums.new_tensor([count])]))
    loss_sum, tp, predicted, true, count = totals.tolist()
    return loss_sum / max(count, 1.0), dice_from_counts(tp, predicted, true)


def _check_datasets(config: TrainConfig, train_set: Dataset, val_set: Dataset,
                    rt: Runtime) -> None:
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"need training and validation slabs, got {len(train_set)} and "
                         f"{len(val_set)}")
    if config.batch_size % rt.world_size:
        raise ValueError(f"batch_size {config.batch_size} (global) must be divisible by the "
                         f"{rt.world_size} ranks")


def _training_state(config: TrainConfig, rt: Runtime, *, for_checkpoint: bool) -> TrainingState:
    """The model (its weights from the config's source, or none when a checkpoint has them),
    Adam with its schedule, and the loss scaler, on the run's device."""
    model = build_model_for_checkpoint(config) if for_checkpoint else build_model(config)
    model = model.to(rt.device, memory_format=_memory_format(config))
    optimizer, scheduler = make_optimizer(model, config)
    return TrainingState(model, optimizer, scheduler, rt.grad_scaler())


def _wrapped(model: nn.Module, config: TrainConfig, rt: Runtime) -> nn.Module:
    """The network the training steps call: DDP across ranks, compiled if asked."""
    net = model
    if rt.distributed:
        net = DistributedDataParallel(model, device_ids=[rt.device] if rt.device.type == "cuda"
                                      else None)
    return torch.compile(net) if config.compile else net


def _loaders(config: TrainConfig, train_set: Dataset, val_set: Dataset,
             rt: Runtime) -> tuple[DistributedSampler, DataLoader, DataLoader]:
    """Every rank takes its share of one global shuffled order (seed + epoch; all of it, or the
    `samples_per_epoch` first), and its share of the validation slabs."""
    loader_args = dict(batch_size=config.batch_size // rt.world_size,
                       num_workers=config.num_workers, pin_memory=rt.device.type == "cuda",
                       persistent_workers=config.num_workers > 0)
    sampler = epoch_sampler(train_set, config, rank=rt.rank, world_size=rt.world_size)
    train_loader = DataLoader(train_set, sampler=sampler, **loader_args)
    val_loader = DataLoader(Subset(val_set, range(rt.rank, len(val_set), rt.world_size)),
                            **loader_args)
    return sampler, train_loader, val_loader


def _open_record(out: Path, config: TrainConfig, progress: Progress, *, overwrite: bool,
                 resumed_from: str | Path | None, checkpoint: dict | None) -> TrainingLog:
    """The run folder's record (rank 0): the old run removed when replaced, a `best.pt` that an
    interrupted save left behind completed when resuming, history.csv rewritten."""
    if overwrite:
        clear_run(out)
    if checkpoint is not None:
        finish_best(out, checkpoint, resumed_from)
    return TrainingLog(out, history=progress.history, tensorboard=config.tensorboard)


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last_3d if config.channels_last else torch.contiguous_format


def _to_device(batch: torch.Tensor, rt: Runtime, fmt: torch.memory_format) -> torch.Tensor:
    return batch.to(rt.device, non_blocking=True, memory_format=fmt)


def _train_epoch(net: nn.Module, loader: DataLoader, state: TrainingState, rt: Runtime,
                 config: TrainConfig, desc: str,
                 on_first_step: Callable[[float], None] | None = None) -> float:
    """One pass over the training slabs; the mean loss per slab over all ranks. The first
    step's seconds go to `on_first_step` (the device synchronised first)."""
    net.train()
    fmt = _memory_format(config)
    total = torch.zeros((), dtype=torch.float64, device=rt.device)
    count = 0
    shown = StepProgress(len(loader), desc=desc, unit="sample",
                         enabled=config.progress and rt.is_main)
    start = time.perf_counter()
    for images, masks in loader:
        images, masks = _to_device(images, rt, fmt), _to_device(masks, rt, fmt)
        with rt.autocast():
            logits = net(images)
        loss = bce_dice_loss(logits, masks, smooth=config.dice_smooth)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        total += loss.detach() * len(images)
        count += len(images)
        if on_first_step is not None:
            loss.item()  # waits for the device
            on_first_step(time.perf_counter() - start)
            on_first_step = None
        shown.step(len(images) * rt.world_size, loss=loss.item)
    shown.close()
    sums = rt.all_reduce_sum(torch.stack([total, total.new_tensor(count)]))
    return (sums[0] / sums[1]).item()

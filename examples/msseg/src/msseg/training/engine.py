"""Training: the paper's optimisation on a CPU, a GPU, or several GPUs with torchrun (DDP).

    from msseg.config import preset
    from msseg.data.slab_dataset import SlabDataset
    from msseg.training.engine import train
    result = train(preset("demo"), SlabDataset(images, masks), SlabDataset(val_images, val_masks))
    model, config = msseg.training.checkpoint.load_model(result.best_path)   # for prediction

Scale-out: `torchrun --nproc_per_node=4 <script calling train inside distributed_session()>`;
`config.batch_size` is the global batch, split evenly over the ranks, and every step's global
batch holds the slabs a single process's batch holds (a DistributedSampler shuffled with
seed + epoch). Where the slabs do not fill the last step, the sampler repeats a few slabs to
give every rank a batch: those repeats weigh 0, and each rank's loss is scaled so that the
gradient DDP averages is the single process's mean over the step's slabs. So N ranks train as
one process does, equal up to float rounding (a frozen encoder's BatchNorm uses its running
statistics; a trainable one's batch statistics are per rank, as in any DDP without
SyncBatchNorm). The same order also lets a run be resumed on a different number of ranks.

Before the first epoch the plan is logged: samples per epoch, steps, validation samples, and,
after the first step, the epoch's time at that pace (`msseg.training.plan`). Progress shows as a
bar on a terminal and, without one (a batch job, a log file), as a line at least every minute
(`msseg.progress.StepProgress`).

Each epoch: train on every slab once (or on `samples_per_epoch` of them) -> validation loss and
Dice (over the validation slabs, in the working space: the native-grid Dice of the best
checkpoint is `msseg.workflows.validation`)
-> `last.pt` (and `best.pt` when the validation loss improved) -> a row in history.csv
(TensorBoard, curves.png) -> early stopping after `patience` epochs without improvement.
`train(..., resume="last.pt")` continues a run exactly where it stopped: in the checkpoint's
folder (refused when that folder's last.pt is newer than the checkpoint, which would cut its
later epochs), or in a new folder, which gets the run's last.pt and best.pt first. A folder
that holds a saved epoch is not trained into otherwise (`overwrite=True` replaces it); one
whose run stopped before its first saved epoch starts again. Rank 0 holds the folder's lock
(`msseg.io.lock`) while it writes there: a second run into it is refused. `data`, what the run
trains on (`msseg.training.run_data`), goes into every checkpoint; resuming on other scans
says what changed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
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
from msseg.io.lock import folder_lock
from msseg.model.losses import bce_dice_loss
from msseg.model.resunet import PlanarResUNet, build_model
from msseg.progress import StepProgress
from msseg.training.checkpoint import (
    Progress,
    TrainingState,
    build_model_for_checkpoint,
    load_checkpoint,
    restore_training,
    save_epoch,
    training_checkpoint,
)
from msseg.training.logbook import (
    TrainingLog,
    adopt_run,
    check_run_folder,
    clear_run,
    finish_best,
)
from msseg.training.plan import epoch_sampler, estimate_text, plan_text, samples_per_epoch
from msseg.training.run_data import TrainingData, changed_data, checkpoint_data
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
    data: TrainingData | None = None,
) -> TrainResult:
    """Train the planar res-u-net of `config` on slabs (see the module docstring).

    Args:
        config: the run's configuration (saved in every checkpoint).
        train_set, val_set: datasets of (image (3, slab, S, S), mask (1, slab, S, S)) float32
            pairs, e.g. `SlabDataset`.
        resume: a `last.pt` to continue from (epochs, optimizer, schedule, early stopping, RNG),
            in its own folder or in a new `config.out_dir`.
        overwrite: replace a run that `config.out_dir` holds (default: refuse to start).
        data: what the run trains on (`msseg.training.run_data.training_data`), saved in every
            checkpoint; None: nothing saved, nothing compared on resume.
    Returns:
        A `TrainResult`. Files in `config.out_dir` (rank 0 writes them): last.pt, best.pt,
        history.csv, curves.png, tensorboard/ (if installed).
    Raises:
        ValueError: empty datasets, a global batch not divisible by the number of ranks, a
            checkpoint whose model fields differ from `config`, or one older than the last.pt
            of its folder, which the run would cut back.
        FileExistsError: `config.out_dir` holds a run, and neither `resume` nor `overwrite`.
        msseg.io.lock.FolderLockedError: another process writes into `config.out_dir`.
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
    if rt.is_main:
        volumes = len(train_set.images) if isinstance(train_set, SlabDataset) else None
        logger.info("%s", plan_text(config, train_set, val_set, steps=len(train_loader),
                                    volumes=volumes))
    first_step = (lambda seconds: logger.info("%s", estimate_text(
        first_step_s=seconds, steps=len(train_loader), epochs=config.epochs))
        ) if rt.is_main else None
    with _run_folder(out, config, progress, rt, overwrite=overwrite, resumed_from=resume,
                     checkpoint=checkpoint, data=data) as log:
        # a resumed run that early stopping had ended stays ended (unless more patience is given)
        stopped_early = progress.patience_spent(config.patience) and \
            progress.epoch < config.epochs
        for epoch in range(config.epochs if stopped_early else progress.epoch, config.epochs):
            start = time.perf_counter()
            sampler.set_epoch(epoch)
            train_loss = _train_epoch(net, train_loader, state, rt, config,
                                      desc=f"epoch {epoch + 1}/{config.epochs}",
                                      on_first_step=first_step)
            first_step = None
            val_loss, val_dice_working = validate(state.model, val_loader, rt, config)
            row, improved = progress.end_epoch(
                {"train_loss": train_loss, "val_loss": val_loss,
                 "val_dice_working": val_dice_working, "lr": state.scheduler.get_last_lr()[0],
                 "seconds": time.perf_counter() - start}, steps=len(train_loader))
            if log is not None:
                save_epoch(out, training_checkpoint(config, state, progress, data=data),
                           improved=improved)
                log.write(row)  # after last.pt, the commit point (see the checkpoint module)
                logger.info("epoch %d/%d: train loss %.4f  validation loss %.4f  working-space "
                            "Dice %.3f  (%.1f s)", epoch + 1, config.epochs, train_loss,
                            val_loss, val_dice_working, row["seconds"])
            if not improved and progress.patience_spent(config.patience):
                stopped_early = epoch + 1 < config.epochs
                break
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


@contextlib.contextmanager
def _run_folder(out: Path, config: TrainConfig, progress: Progress, rt: Runtime, *,
                overwrite: bool, resumed_from: str | Path | None, checkpoint: dict | None,
                data: TrainingData | None) -> Iterator[TrainingLog | None]:
    """While the epochs run: rank 0 holds the folder's lock and its record (`_open_record`,
    yielded; None on the other ranks)."""
    with contextlib.ExitStack() as held, warnings.catch_warnings():
        # DDP compares the strides of size-1 axes too (a (1, C, 1, 1, 1) head in channels_last):
        # the same memory layout, three lines of noise on every run
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        if not rt.is_main:
            yield None
            return
        held.enter_context(folder_lock(out, command="msseg train"))
        log = _open_record(out, config, progress, overwrite=overwrite,
                           resumed_from=resumed_from, checkpoint=checkpoint, data=data)
        held.callback(log.close)
        yield log


def _open_record(out: Path, config: TrainConfig, progress: Progress, *, overwrite: bool,
                 resumed_from: str | Path | None, checkpoint: dict | None,
                 data: TrainingData | None) -> TrainingLog:
    """The run folder's record (rank 0): the old run removed when replaced, or the record of a
    run that saved no epoch; when resuming, a `best.pt` that an interrupted save left behind
    completed (in the run's folder) or the run's checkpoints copied (into a new folder), and
    what changed in the data said; history.csv rewritten."""
    if overwrite:
        clear_run(out)
    elif checkpoint is None and clear_run(out):  # check_run_folder: no saved epoch there
        logger.info("%s: holds no saved epoch (a run stopped before its first one); starting it "
                    "again", out)
    if checkpoint is not None:
        if Path(resumed_from).resolve().parent == out.resolve():
            finish_best(out, checkpoint, resumed_from)
        else:
            adopt_run(out, checkpoint, resumed_from)
        saved = checkpoint_data(checkpoint, resumed_from)
        change = None if saved is None or data is None else changed_data(saved, data)
        if change:
            logger.warning("%s: %s; the run continues on the scans given now", resumed_from,
                           change)
    return TrainingLog(out, history=progress.history, tensorboard=config.tensorboard)


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last_3d if config.channels_last else torch.contiguous_format


def _to_device(batch: torch.Tensor, rt: Runtime, fmt: torch.memory_format) -> torch.Tensor:
    return batch.to(rt.device, non_blocking=True, memory_format=fmt)


def _train_epoch(net: nn.Module, loader: DataLoader, state: TrainingState, rt: Runtime,
                 config: TrainConfig, desc: str,
                 on_first_step: Callable[[float], None] | None = None) -> float:
    """One pass over the training slabs; the mean loss per slab over all ranks. The first
    step's seconds go to `on_first_step` (the device synchronised first).

    Step k's global batch is the slabs at positions k * batch_size onwards of the epoch's
    order; this rank's j-th sample in it sits at position rank + world_size * (local index).
    Positions past the epoch's samples (`msseg.training.plan.samples_per_epoch`) are the
    sampler's repeats: they weigh 0, and the loss is scaled by world_size / (slabs in the
    step), so DDP's average of the ranks' gradients is the mean gradient over the step's slabs,
    as one process computes it.
    """
    net.train()
    fmt = _memory_format(config)
    total = torch.zeros((), dtype=torch.float64, device=rt.device)
    count = torch.zeros((), dtype=torch.float64, device=rt.device)
    slabs = samples_per_epoch(config, loader.dataset)
    local_batch = config.batch_size // rt.world_size
    shown = StepProgress(len(loader), desc=desc, unit="sample",
                         enabled=config.progress and rt.is_main)
    start = time.perf_counter()
    for i, (images, masks) in enumerate(loader):
        images, masks = _to_device(images, rt, fmt), _to_device(masks, rt, fmt)
        local = torch.arange(i * local_batch, i * local_batch + len(images), device=rt.device)
        real = (rt.rank + rt.world_size * local < slabs).float()
        in_step = min(config.batch_size, slabs - i * config.batch_size)
        with rt.autocast():
            logits = net(images)
        losses = bce_dice_loss(logits, masks, smooth=config.dice_smooth, reduction="none")
        loss = (losses * real).sum() * rt.world_size / in_step
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.scheduler.step()
        total += (losses.detach() * real).sum()
        count += real.sum()
        if on_first_step is not None:
            loss.item()  # waits for the device
            on_first_step(time.perf_counter() - start)
            on_first_step = None
        shown.step(in_step, loss=loss.item)
    shown.close()
    sums = rt.all_reduce_sum(torch.stack([total, count]))
    return (sums[0] / sums[1]).item()

"""What an epoch holds and what it will cost, said before the run spends it.

    sampler = epoch_sampler(train_set, config, rank=0, world_size=1)
    logger.info("%s", plan_text(config, train_set, val_set, steps=len(loader)))
    logger.info("%s", estimate_text(first_step_s=12.3, steps=421, epochs=100))

An epoch trains on every sample once, in an order shuffled with seed + epoch, each rank taking
its share (a `DistributedSampler`); with `TrainConfig.samples_per_epoch` it trains on that many
of them, the first ones of the same shuffled order, so each epoch sees a different part and the
run stays exactly resumable. The plan line gives the volumes, the samples per epoch, the steps
and the validation samples; after the first training step, the estimate line turns its measured
time into the epoch's and the run's (the first step includes the warm-up, so the estimate errs
long).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler

from msseg.config import TrainConfig
from msseg.progress import format_duration

__all__ = ["EpochSampler", "epoch_sampler", "estimate_text", "plan_text", "samples_per_epoch"]


class EpochSampler(DistributedSampler):
    """A `DistributedSampler` over the first `count` samples of each epoch's shuffled order.

    Args:
        dataset: the training samples.
        count: samples per epoch (all ranks together), at most `len(dataset)`.
        num_replicas, rank, seed: as `DistributedSampler`.
    """

    def __init__(self, dataset: Sized, *, count: int, num_replicas: int, rank: int,
                 seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.num_samples = math.ceil(count / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        order = (order * math.ceil(self.total_size / len(order)))[:self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas])


def samples_per_epoch(config: TrainConfig, dataset: Sized) -> int:
    """The samples an epoch trains on: all of `dataset`, or `config.samples_per_epoch` of
    them."""
    return min(config.samples_per_epoch or len(dataset), len(dataset))


def epoch_sampler(dataset: Sized, config: TrainConfig, *, rank: int,
                  world_size: int) -> DistributedSampler:
    """This rank's sampler of the training samples (see the module docstring)."""
    count = samples_per_epoch(config, dataset)
    if count == len(dataset):
        return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                  seed=config.seed)
    return EpochSampler(dataset, count=count, num_replicas=world_size, rank=rank,
                        seed=config.seed)


def plan_text(config: TrainConfig, train_set: Sized, val_set: Sized, *, steps: int,
              volumes: int | None = None) -> str:
    """The plan line: volumes, samples per epoch (and the cap), steps, validation, epochs."""
    per_epoch = samples_per_epoch(config, train_set)
    capped = (f" (of {len(train_set)}: --samples-per-epoch {config.samples_per_epoch})"
              if per_epoch < len(train_set) else " (all of them; --samples-per-epoch caps it)")
    source = f" of {volumes} training volume(s)" if volumes is not None else ""
    return (f"plan: {per_epoch} training samples{source} per epoch{capped}, batch "
            f"{config.batch_size}: {steps} steps; {len(val_set)} validation samples; at most "
            f"{config.epochs} epochs (early stopping after {config.patience} without "
            f"improvement)")


def estimate_text(*, first_step_s: float, steps: int, epochs: int) -> str:
    """The estimate line, from the first step's measured time."""
    epoch = first_step_s * steps
    return (f"the first step took {first_step_s:.2f} s: an epoch of {steps} steps takes about "
            f"{format_duration(epoch)} (plus validation), {epochs} epochs at most "
            f"{format_duration(epoch * epochs)}; the first step includes the warm-up, so this "
            f"errs long")

"""A training run's runtime: its `Compute` (device, autocast), loss scaling, DDP ranks, seeds.

Distributed training is torchrun's: `torchrun --nproc_per_node=N ...` sets RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT; `distributed_session()` opens the process group from them
(NCCL on CUDA, gloo on CPU) and closes it. Code that opens the group itself (tests) is respected.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from msseg.config import TrainConfig
from msseg.device import Compute, resolve_compute

__all__ = ["Runtime", "distributed_session", "make_runtime", "seed_everything"]


@dataclass(frozen=True)
class Runtime:
    compute: Compute  # device and autocast dtype (`msseg.device`)
    rank: int  # this process' rank (0 without DDP)
    world_size: int  # number of processes (1 without DDP)

    @property
    def device(self) -> torch.device:
        return self.compute.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the compute's dtype on its device (a no-op for float32)."""
        return self.compute.autocast()

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled for float16 only (bf16 and fp32 need no loss scaling)."""
        return torch.amp.GradScaler(self.device.type,
                                    enabled=self.compute.amp_dtype == torch.float16)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks, in place (nothing to do without DDP)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def make_runtime(config: TrainConfig) -> Runtime:
    """Resolve `config.device` / `config.precision` for this process and set kernel flags.

    Raises:
        ValueError: as `msseg.device.resolve_compute`.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    compute = resolve_compute(config.device, config.precision,
                              local_rank=int(os.environ.get("LOCAL_RANK", rank)))
    device = compute.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(compute=compute, rank=rank, world_size=world)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def distributed_session() -> Iterator[None]:
    """Open the torchrun process group for the body of the `with` (if torchrun started us and
    no group is open yet), and close it afterwards."""
    opened = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        opened = True
    try:
        yield
    finally:
        if opened:
            dist.destroy_process_group()

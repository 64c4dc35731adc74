"""Where and how a run computes: device, precision (autocast, grad scaling), DDP ranks, seeds.

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

__all__ = ["Runtime", "distributed_session", "make_runtime", "seed_everything"]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    device: torch.device  # where the model and batches live
    amp_dtype: torch.dtype | None  # autocast dtype (None: plain float32)
    rank: int  # this process' rank (0 without DDP)
    world_size: int  # number of processes (1 without DDP)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to `amp_dtype` on this device (a no-op for float32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled for float16 only (bf16 and fp32 need no loss scaling)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

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
        ValueError: for a CUDA device without CUDA.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    name = config.device
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and world > 1:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} requested but CUDA is not available; "
                         f"use device='cpu' or 'auto'")
    precision = config.precision
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp32"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(device=device, amp_dtype=_DTYPES[precision], rank=rank, world_size=world)


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

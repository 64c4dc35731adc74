"""Where a model computes and in which precision: the one resolver, for training and prediction.

One vocabulary (`msseg.config.PRECISIONS`): "auto" (bf16 on a GPU that has it, else fp32),
"fp32" (no autocast), "bf16", "fp16" (autocast to that dtype; fp16 training adds loss scaling).
Devices: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ... A precision the CPU has no
fast kernels for (`SLOW_ON_CPU`: fp16, where an epoch of seconds in fp32 had not ended after
minutes) is refused on the CPU before any work.

    compute = resolve_compute("auto", "auto")       # Compute(device=cuda:0, amp_dtype=bf16)
    with compute.autocast():
        logits = model(batch.to(compute.device))
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from msseg.config import PRECISIONS

__all__ = ["Compute", "resolve_compute"]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SLOW_ON_CPU = ("fp16",)  # precisions refused on the CPU


@dataclass(frozen=True)
class Compute:
    """A resolved device and autocast dtype."""

    device: torch.device  # where the model and its inputs live
    amp_dtype: torch.dtype | None  # autocast dtype; None: plain float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to `amp_dtype` on this device (a no-op for float32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def resolve_compute(device: str = "auto", precision: str = "auto", *,
                    local_rank: int = 0) -> Compute:
    """Turn a device name and a precision name into a `Compute`.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N"; "auto" and "cuda" mean this process' GPU
            (`local_rank`, as torchrun numbers the processes of a machine).
        precision: one of `PRECISIONS`.
        local_rank: this process' GPU index on its machine (0 without torchrun).
    Returns:
        The `Compute`.
    Raises:
        ValueError: an unknown precision or device name, another device type, a CUDA device
            that this machine does not have, or a precision in `SLOW_ON_CPU` on the CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device name; use 'auto', 'cpu', 'cuda' "
                         f"or 'cuda:N'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: msseg runs on 'cpu' or 'cuda' ('auto' picks); "
                         f"found a {resolved.type!r} device")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use "
                         f"device 'cpu' or 'auto'")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         f"GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if resolved.type == "cpu" and precision in SLOW_ON_CPU:
        raise ValueError(f"precision {precision} on the CPU: torch has no fast {precision} "
                         f"kernels there, so training and prediction would run many times "
                         f"slower than in fp32; use --precision fp32 (or bf16) on the CPU, "
                         f"{precision} on a GPU")
    if precision == "auto":
        bf16 = resolved.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp32"
    return Compute(resolved, _DTYPES[precision])

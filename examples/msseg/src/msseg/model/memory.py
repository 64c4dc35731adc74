"""Training memory of one batch, measured on any device (the CPU works): does it fit a GPU?

Counts what a training step keeps alive at the end of the forward pass:
- parameters, their gradients and Adam's two moments (trainable parameters only),
- the tensors autograd saves for the backward pass (`torch.autograd.graph.saved_tensors_hooks`,
  each storage counted once, parameters excluded),
- the encoder's outputs (skips), alive until the forward pass returns; a frozen encoder records
  no graph, so autograd does not save them.
Not counted: the backward pass' transient gradient buffers (about the size of the largest few
activations) and the allocator's cache.

    estimate = measure_training_memory(model, (2, 3, 16, 256, 256))
    print(estimate)   # ... total  X.XX GiB
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from msseg.device import Compute
from msseg.model.losses import bce_dice_loss

__all__ = ["MemoryEstimate", "measure_training_memory"]

GiB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int  # bytes of all parameters
    gradients: int  # bytes of the trainable parameters' gradients
    optimizer: int  # bytes of Adam's exp_avg and exp_avg_sq
    saved_activations: int  # bytes autograd keeps for the backward pass
    encoder_outputs: int  # bytes of the encoder's outputs (skips), alive during the forward

    @property
    def total(self) -> int:
        return (self.parameters + self.gradients + self.optimizer + self.saved_activations
                + self.encoder_outputs)

    def __str__(self) -> str:
        rows = [("parameters", self.parameters), ("gradients", self.gradients),
                ("Adam moments", self.optimizer), ("saved activations", self.saved_activations),
                ("encoder outputs", self.encoder_outputs), ("total", self.total)]
        return "\n".join(f"{name:<18} {value / GiB:8.2f} GiB" for name, value in rows)


def _storage(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def measure_training_memory(
    model: nn.Module, input_shape: tuple[int, ...], *, amp_dtype: torch.dtype | None = None
) -> MemoryEstimate:
    """Run one forward pass and the loss of `model` on a random batch and count the bytes.

    Args:
        model: a `PlanarResUNet` in train mode, on the device to measure on.
        input_shape: (N, C, D, H, W) batch shape, e.g. (2, 3, 16, 256, 256).
        amp_dtype: autocast dtype to measure with (torch.bfloat16 / torch.float16), or None.
    Returns:
        A `MemoryEstimate` (bytes; `str()` prints GiB).
    """
    param = next(model.parameters())
    params = {_storage(p)[0] for p in model.parameters()}
    saved: dict[int, int] = {}
    outputs: dict[int, torch.Tensor] = {}  # held until the end: no address is reused meanwhile

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr, nbytes = _storage(t)
        if ptr not in params:
            saved[ptr] = nbytes
        return t

    def record(module, args, result) -> None:
        for t in result:
            outputs[_storage(t)[0]] = t

    x = torch.randn(input_shape, device=param.device)
    target = (torch.rand(input_shape[0], 1, *input_shape[2:], device=param.device) > 0.99)
    autocast = Compute(param.device, amp_dtype).autocast()
    handle = model.encoder.register_forward_hook(record)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            loss = bce_dice_loss(model(x), target.float())
    finally:
        handle.remove()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    estimate = MemoryEstimate(
        parameters=sum(p.numel() * p.element_size() for p in model.parameters()),
        gradients=trainable,
        optimizer=2 * trainable,
        saved_activations=sum(saved.values()),
        encoder_outputs=sum(_storage(t)[1] for ptr, t in outputs.items() if ptr not in saved),
    )
    del loss  # the graph held every saved tensor alive until now
    return estimate

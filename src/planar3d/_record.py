"""Record what every module of a 2D network receives and returns on one example batch.

The records drive conversion: which modules are part of the per-slice body and which belong to
a classifier's head, and the reference outputs that each converted module is probed against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["CallRecord", "record_calls"]


@dataclass
class CallRecord:
    """The first call of one module during the example run (tensors cloned, detached)."""

    path: str
    args: tuple
    kwargs: dict
    output: Any
    order: int
    training: bool

    def is_spatial(self, batch: int) -> bool:
        """Whether the output holds a per-image feature map (B, ..., h, w) with h*w > 1."""
        return any(is_map(t, batch) for t in tensors(self.output))

    def is_flat(self, batch: int) -> bool:
        """Whether the output holds a tensor that is no per-image map at all (pooled features
        (B, K), logits, a loss); a 1x1 map (B, C, 1, 1) is still a per-image map."""
        return any(not (t.dim() >= 4 and t.shape[0] == batch) for t in tensors(self.output))


def is_map(t: torch.Tensor, batch: int) -> bool:
    """A per-image feature map of the example batch: (B, ..., h, w), at least 4-D, h*w > 1."""
    return t.dim() >= 4 and t.shape[0] == batch and t.shape[-2] * t.shape[-1] > 1


def tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _snapshot(tree):
    return tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, tree)


def _run(model: nn.Module, example: torch.Tensor, records: dict[int, CallRecord],
         paths: dict[int, str], training: bool) -> None:
    pending: dict[int, tuple] = {}
    counter = [len(records)]

    def pre(module, args, kwargs):
        key = id(module)
        if key not in records and key not in pending:
            pending[key] = (_snapshot(args), _snapshot(kwargs), counter[0])
            counter[0] += 1

    def post(module, args, kwargs, output):
        key = id(module)
        if key in pending and key not in records:
            a, k, order = pending.pop(key)
            records[key] = CallRecord(paths[key], a, k, _snapshot(output), order, training)

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True, always_call=False))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()


def record_calls(model: nn.Module, example: torch.Tensor) -> dict[int, CallRecord]:
    """Run `model` on `example` and record each module's first call, keyed by id(module).

    The run is in eval mode; modules only reached in train mode (auxiliary heads) are recorded
    by a second, train-mode run whose effect on buffers (BatchNorm statistics) is undone.
    Train/eval flags are restored.

    Raises:
        RuntimeError: if the 2D model cannot run on the example.
    """
    flags = {m: m.training for m in model.modules()}
    paths: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), name)
    records: dict[int, CallRecord] = {}
    try:
        model.eval()
        try:
            _run(model, example, records, paths, training=False)
        except Exception as error:
            raise RuntimeError(
                f"the 2D model does not run on the example batch of shape "
                f"{tuple(example.shape)} ({type(error).__name__}: {error}); pass "
                f"example_input=<a (B, C, H, W) batch the 2D model accepts> to convert()"
            ) from error
        if any(id(m) not in records for m in model.modules()):
            buffers = {id(b): b.detach().clone() for b in model.buffers()}
            model.train()
            try:
                _run(model, example, records, paths, training=True)
            except Exception:
                pass
            finally:
                with torch.no_grad():
                    for b in model.buffers():
                        b.copy_(buffers[id(b)])
    finally:
        for module, flag in flags.items():
            module.training = flag
    return records

"""Running a network in eval or train mode for a comparison, and giving it back as it was.

- `eval_mode` / `train_mode`: the mode for one run; flags (and, in train mode, buffers such as
  BatchNorm statistics) come back after;
- `Derandomized`: train-mode runs draw deterministic values from random ops, the same in a 2D
  and a 3D run, so that what is compared is the computation, never a random outcome;
- `training_flags` / `restore_flags`: flags put back through `train()`, since some modules
  change more than the flag (torchvision's feature extractors swap their graph).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["Derandomized", "eval_mode", "restore_flags", "train_mode", "training_flags"]


def training_flags(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    """Every module's train/eval flag, parents before children."""
    return [(m, m.training) for m in model.modules()]


def restore_flags(flags: list[tuple[nn.Module, bool]]) -> None:
    """Put back flags from `training_flags`: through `train()` for modules that override it,
    parents first, so that each module ends with its own flag."""
    for module, flag in flags:
        if type(module).train is not nn.Module.train:
            if module.training != flag:
                module.train(flag)
        else:
            module.training = flag


class Derandomized(TorchFunctionMode):
    """Random ops return deterministic values (dropout keeps everything, uniform draws are
    0.5, normal draws 0, Bernoulli draws 1), the same in a 2D and a 3D run."""

    _IDENTITY = frozenset({
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
        F.feature_alpha_dropout, torch.dropout, torch.feature_dropout, torch.alpha_dropout,
        torch.feature_alpha_dropout,
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._IDENTITY:
            return args[0] if args else kwargs["input"]
        if func is F.rrelu:
            lower = kwargs.get("lower", args[1] if len(args) > 1 else 1.0 / 8)
            upper = kwargs.get("upper", args[2] if len(args) > 2 else 1.0 / 3)
            return F.leaky_relu(args[0], (lower + upper) / 2)
        name = getattr(func, "__name__", "")
        if name in ("rand", "rand_like", "uniform_"):
            return _filled(func, args, kwargs, 0.5)
        if name in ("randn", "randn_like", "normal_", "normal"):
            return _filled(func, args, kwargs, 0.0)
        if name in ("bernoulli", "bernoulli_"):
            return _filled(func, args, kwargs, 1.0)
        return func(*args, **kwargs)


def _filled(func, args, kwargs, value: float):
    out = func(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        with torch.no_grad():
            out.fill_(value)
    return out


@contextlib.contextmanager
def train_mode(module: nn.Module):
    """Run `module` in train mode with deterministic random ops; flags and buffers come back
    after."""
    flags = training_flags(module)
    buffers = [b.detach().clone() for b in module.buffers()]
    module.train()
    try:
        with Derandomized():
            yield
    finally:
        with torch.no_grad():
            for b, saved in zip(module.buffers(), buffers):
                b.copy_(saved)
        restore_flags(flags)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Run `module` in eval mode; its flags come back after."""
    flags = training_flags(module)
    module.eval()
    try:
        yield
    finally:
        restore_flags(flags)

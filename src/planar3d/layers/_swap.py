"""Build a module of another class from an existing one, keeping everything torch tracks.

Like torch.ao.quantization's swap_module, the new module keeps the old one's parameters (same
objects unless replaced), buffers, hooks, train/eval flag and plain attributes; only the class
(and the attributes the caller overrides) change.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def reclass(module: nn.Module, cls: type[M], **attrs: object) -> M:
    """Return a new instance of `cls` sharing `module`'s state, with `attrs` set on it."""
    new = cls.__new__(cls)
    state = module.__dict__.items()
    new.__dict__.update({k: (v.copy() if isinstance(v, dict) else v) for k, v in state})
    for name, value in attrs.items():
        setattr(new, name, value)
    return new

"""Build a module of another class from an existing one, keeping everything torch tracks.

Like torch.ao.quantization's swap_module, the new module keeps the old one's parameters (same
objects unless replaced), buffers, hooks, train/eval flag and plain attributes; only the class
(and the attributes the caller overrides) change.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


# the dicts the new module gets its own copy of; every other dict (the hook dicts above all) is
# shared, so that a RemovableHandle of a hook registered before the swap still removes it
_OWN_DICTS = ("_parameters", "_buffers", "_modules")


def reclass(module: nn.Module, cls: type[M], **attrs: object) -> M:
    """Return a new instance of `cls` sharing `module`'s state, with `attrs` set on it."""
    new = cls.__new__(cls)
    state = module.__dict__.items()
    new.__dict__.update({k: (v.copy() if k in _OWN_DICTS else v) for k, v in state})
    for name, value in attrs.items():
        setattr(new, name, value)
    return new


def original_type(module: nn.Module) -> type:
    """The class a module had before planar3d gave it a derived class of its own (folded or
    rewritten modules keep their 2D class as a base, `_planar3d_base`); else its class."""
    return getattr(type(module), "_planar3d_base", type(module))

"""Build a module of another class from an existing one, keeping everything torch tracks.

Like torch.ao.quantization's swap_module, the new module keeps the old one's parameters (same
objects unless replaced), buffers, hooks, train/eval flag and plain attributes; only the class
(and the attributes the caller overrides) change.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
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


def deepcopy_module(module: nn.Module) -> nn.Module:
    """`copy.deepcopy` of a module, also when it holds tensors computed with autograd (the
    hook-based `torch.nn.utils.weight_norm` keeps its weight as one, which deepcopy refuses):
    those are copied detached, as their hooks compute them again at each call."""
    memo: dict = {}
    for m in module.modules():
        for value in m.__dict__.values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)

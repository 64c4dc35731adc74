"""Build a module of another class from an existing one, keeping everything torch tracks.

Like torch.ao.quantization's swap_module, the new module keeps the old one's parameters (same
objects unless replaced), buffers, hooks, train/eval flag and plain attributes; only the class
(and the attributes the caller overrides) change.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from .._state import copy_state, original_type

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


@contextlib.contextmanager
def _as_original(module: nn.Module):
    """`module` as an instance of its original class."""
    cls = type(module)
    module.__class__ = original_type(module)
    try:
        yield module
    finally:
        module.__class__ = cls


def copy_derived(module: nn.Module, memo: dict, remake: Callable[[nn.Module], nn.Module]
                 ) -> nn.Module:
    """`copy.deepcopy` of a module of a derived class: a copy made by its original class's own
    deepcopy (a torch.fx GraphModule builds a class of its own for each copy), then remade."""
    with _as_original(module):
        copied = copy.deepcopy(module, memo)
    copy_state(module, copied, memo)  # a GraphModule copy keeps only its own state
    return remake(copied)


def reduce_derived(module: nn.Module, protocol: int, remake: Callable, *args) -> tuple:
    """`__reduce_ex__` of a module of a derived class: pickled as its original class pickles
    itself (a GraphModule as its code), then remade with `remake(module, *args)` on load."""
    with _as_original(module):
        reduced = module.__reduce_ex__(protocol)
    return _remade, (reduced, remake, args)


def _remade(reduced: tuple, remake: Callable, args: tuple) -> nn.Module:
    rebuild, rebuild_args, *rest = reduced
    module = rebuild(*rebuild_args)
    state = rest[0] if rest else None
    if state is not None:
        if hasattr(module, "__setstate__"):
            module.__setstate__(state)
        else:
            module.__dict__.update(state)
    return remake(module, *args)

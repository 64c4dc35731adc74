"""Give a module a depth layer as a new child, keeping its class, names and state.

A depth layer (position embedding, depth attention) is added to an existing module of a
converted network: the module gets a class derived from its own (which may itself be derived:
folded, slice code) whose forward also runs the new child, so the parameter names of the 2D
network stay as they are and the new parameters live under the child's name. Such a module
deep-copies and pickles as the class it was derived from does, then is derived again
(`_state.copy_derived` / `reduce_derived`); its record (`_state.PlanarState`) names its 2D
class.
"""

from __future__ import annotations

from functools import cache

from torch import nn

from .._state import copy_derived, reduce_derived, state

__all__ = ["Attached", "attach", "attached"]


class Attached:
    """Base of the mixins: what a derived class with an added child must be able to do."""

    # set on each derived class: the class it derives from, and the mixin that added the child
    _planar3d_inner: type
    _planar3d_mixin: type

    def __deepcopy__(self, memo):
        cls = type(self)
        return copy_derived(self, memo, lambda m: _rederive(m, cls._planar3d_mixin),
                            as_class=cls._planar3d_inner)

    def __reduce_ex__(self, protocol):
        cls = type(self)
        return reduce_derived(self, protocol, _rederive, cls._planar3d_mixin,
                              as_class=cls._planar3d_inner)


@cache
def _derived(mixin: type, inner: type) -> type:
    name = mixin.__name__.lstrip("_").removesuffix("Mixin") + inner.__name__
    return type(name, (mixin, inner), {"_planar3d_inner": inner, "_planar3d_mixin": mixin,
                                       "__module__": __name__})


def _rederive(module: nn.Module, mixin: type) -> nn.Module:
    record = state(module)
    if record.base is None:  # a module of its 2D class: that class is the one to name
        record.base = type(module)
    module.__class__ = _derived(mixin, type(module))
    return module


def attach(module: nn.Module, mixin: type, name: str, layer: nn.Module) -> nn.Module:
    """Add `layer` to `module` (in place) as child `name`, and derive its class with `mixin`,
    whose forward runs it. Returns `module`.

    Raises:
        ValueError: if `module` already has an attribute `name`.
    """
    if hasattr(module, name):
        raise ValueError(f"{type(module).__name__} already has an attribute {name!r}")
    module.add_module(name, layer)
    return _rederive(module, mixin)


def attached(module: nn.Module, mixin: type) -> bool:
    """Whether `module`'s class was derived with `mixin` (at any depth)."""
    return any(getattr(cls, "_planar3d_mixin", None) is mixin for cls in type(module).__mro__)

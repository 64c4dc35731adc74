"""Give a module a depth layer as a new child, keeping its class, names and state.

A depth layer (position embedding, depth attention) is added to an existing module of a
converted network: the module gets a class derived from its own whose forward also runs the new
child, so the parameter names of the 2D network stay as they are and the new parameters live
under the child's name. Derived classes deep-copy and pickle as their base class does and are
derived again afterwards (`_swap.copy_derived` / `reduce_derived`), as folded modules do.
"""

from __future__ import annotations

from functools import cache

from torch import nn

from ..layers._swap import copy_derived, reduce_derived

__all__ = ["Attached", "attach", "attached"]


class Attached:
    """Base of the mixins: what a derived class with an added child must be able to do."""

    # set on each derived class: the class it derives from, and the mixin that added the child
    _planar3d_base: type
    _planar3d_mixin: type

    def __deepcopy__(self, memo):
        mixin = type(self)._planar3d_mixin
        return copy_derived(self, memo, lambda m: _rederive(m, mixin))

    def __reduce_ex__(self, protocol):
        return reduce_derived(self, protocol, _rederive, type(self)._planar3d_mixin)


@cache
def _derived(mixin: type, base: type) -> type:
    name = mixin.__name__.lstrip("_").removesuffix("Mixin") + base.__name__
    return type(name, (mixin, base), {"_planar3d_base": base, "_planar3d_mixin": mixin,
                                      "__module__": __name__})


def _rederive(module: nn.Module, mixin: type) -> nn.Module:
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

"""The containers of tensors that networks take and return, walked the same way everywhere.

torch's pytree walks tuples, lists, dicts and the containers registered with it (namedtuples,
transformers' `ModelOutput`); a plain `@dataclass` or a mapping class of one's own is a leaf to
it, so a walk built on it would leave the tensors inside unfolded, uncompared, uncloned. Here
every container is walked: tuples and namedtuples, lists, mappings (dicts, OrderedDicts,
mapping classes), dataclass instances, and whatever pytree knows beyond those; each is rebuilt
as its own type. A leaf is anything else: a tensor, a plain value (None, a number, a string...),
or an object that no comparison can look into (`opaque_leaves` names those).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["Structure", "flatten", "map_leaves", "opaque_leaves", "tensors", "unflatten"]

# leaves that compare by value
PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device,
         torch.Size, type(Ellipsis), slice)


@dataclasses.dataclass(frozen=True)
class Structure:
    """Where the leaves of a tree sit: each node's type and keys, and its children's
    structures. Two trees hold their leaves in the same places when their structures are
    equal."""

    kind: type | None  # None: a leaf
    keys: tuple = ()
    children: tuple[Structure, ...] = ()
    # rebuilds the node from its children (not compared)
    rebuild: Callable[[list], Any] | None = dataclasses.field(default=None, compare=False)


_LEAF = Structure(None)


def _dataclass_node(tree) -> tuple[list, tuple, Callable]:
    names = tuple(f.name for f in dataclasses.fields(tree))

    def rebuild(values: list):
        new = copy.copy(tree)
        for name, value in zip(names, values):
            object.__setattr__(new, name, value)
        return new

    return [getattr(tree, name) for name in names], names, rebuild


def _mapping_node(tree: Mapping) -> tuple[list, tuple, Callable]:
    keys = tuple(tree)

    def rebuild(values: list):
        if type(tree) is not dict and isinstance(tree, MutableMapping):
            new = copy.copy(tree)
            new.clear()
            new.update(zip(keys, values))
            return new
        return dict(zip(keys, values))

    return [tree[key] for key in keys], keys, rebuild


def _node(tree) -> tuple[list, tuple, Callable] | None:
    """A container's children, keys and how to rebuild it; None for a leaf."""
    if isinstance(tree, (torch.Tensor, *PLAIN)):
        return None
    kind = type(tree)
    registered = pytree.SUPPORTED_NODES.get(kind)
    if registered is not None:
        children, context = registered.flatten_fn(tree)
        return (list(children), (repr(context),),
                lambda values: registered.unflatten_fn(values, context))
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return list(tree), tuple(tree._fields), lambda values: kind(*values)
    if isinstance(tree, (tuple, list)):
        return list(tree), (len(tree),), lambda values: kind(values)
    if isinstance(tree, Mapping):
        return _mapping_node(tree)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return _dataclass_node(tree)
    return None


def flatten(tree) -> tuple[list, Structure]:
    """The leaves of `tree`, in order, and its structure."""
    node = _node(tree)
    if node is None:
        return [tree], _LEAF
    children, keys, rebuild = node
    leaves: list = []
    structures = []
    for child in children:
        sub, structure = flatten(child)
        leaves += sub
        structures.append(structure)
    return leaves, Structure(type(tree), keys, tuple(structures), rebuild)


def unflatten(leaves: list, structure: Structure):
    """The tree of `structure` holding `leaves` (as `flatten` gives them)."""
    it = iter(leaves)

    def build(s: Structure):
        if s.kind is None:
            return next(it)
        return s.rebuild([build(child) for child in s.children])

    return build(structure)


def map_leaves(fn: Callable, tree):
    """`tree` with `fn` applied to every leaf, every container rebuilt as its own type."""
    leaves, structure = flatten(tree)
    return unflatten([fn(leaf) for leaf in leaves], structure)


def tensors(tree) -> list[torch.Tensor]:
    """The tensors among the leaves of `tree`."""
    return [t for t in flatten(tree)[0] if isinstance(t, torch.Tensor)]


def opaque_leaves(tree) -> list[str]:
    """The class names of the leaves no comparison can look into: neither a tensor nor a plain
    value (an object holding tensors in attributes, say)."""
    return sorted({type(leaf).__name__ for leaf in flatten(tree)[0]
                   if not isinstance(leaf, (torch.Tensor, *PLAIN))})

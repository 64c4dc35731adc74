"""A head module that pools positions, run on the positions of all slices at once.

A head module whose output does not depend on the order of its input positions (a mean or max
over tokens, attention pooling with learned queries: MAP, `AttentionPoolLatent`) pools a set.
On a volume, P0's head pool pools over the slices too: `all_slices_module(m)` runs `m`'s 2D code
on the positions of all slices of each volume laid end to end along a position dim, so attention
pooling attends over the tokens of all slices, and a mean over tokens is the mean over every
slice's tokens. On a volume whose slices are all equal the result is the 2D result (P2: repeated
keys leave attention weights unchanged).

Token volumes (N, S, L, C) become (N, S·L, C); other volumes are laid end to end along the
per-slice dim `position_dim` (maps (N, C, D, H, W) with position_dim 2: (N, C, D·H, W)).
Inputs without volumes (already pooled) run the 2D code as they are.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from .._axis import TOKEN_RANK, fold
from .._state import copy_derived, original_type, reduce_derived, state, type_name

__all__ = ["all_slices_module", "is_all_slices", "slices_end_to_end"]


def slices_end_to_end(volume: torch.Tensor, *, axis: int, position_dim: int) -> torch.Tensor:
    """A volume's per-slice positions laid end to end along the per-slice dim `position_dim`.

    Returns:
        (N, ...) with S times the per-slice size at `position_dim`: (N, S, L, C) -> (N, S·L, C).
    """
    per_slice = fold(volume, axis)
    n = volume.shape[0]
    grouped = per_slice.reshape(n, per_slice.shape[0] // n, *per_slice.shape[1:])
    return grouped.movedim(1, position_dim).flatten(position_dim, position_dim + 1)


class _AllSlicesMixin:
    def forward(self, *args, **kwargs):
        record = state(self)
        axis, position_dim, base = record.axis, record.position_dim, original_type(self)
        if not any(isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK
                   for t in tree_flatten((args, kwargs))[0]):
            return base.forward(self, *args, **kwargs)

        def joined(t):
            if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK:
                return slices_end_to_end(t, axis=axis, position_dim=position_dim)
            return t

        return base.forward(self, *tree_map(joined, args), **tree_map(joined, kwargs))

    def _get_name(self) -> str:
        return f"AllSlices[{type_name(self)}]"

    def __deepcopy__(self, memo):
        return copy_derived(self, memo, _rederive)

    def __reduce_ex__(self, protocol):
        return reduce_derived(self, protocol, _rederive)


@cache
def _all_slices_class(base: type) -> type:
    return type("AllSlices" + base.__name__, (_AllSlicesMixin, base), {"__module__": __name__})


def _rederive(module: nn.Module) -> nn.Module:
    record = state(module)
    if record.base is None:  # loaded from a pickle: the class it is made of is its 2D class
        record.base = type(module)
    module.__class__ = _all_slices_class(record.base)
    return module


def is_all_slices(module: nn.Module) -> bool:
    """True if `module` was made by `all_slices_module`."""
    return isinstance(module, _AllSlicesMixin)


def all_slices_module(module: nn.Module, *, axis: int = 2, position_dim: int = 1) -> nn.Module:
    """Make `module` (in place) run its 2D code on the positions of all slices of each volume.

    Args:
        module: a 2D head module whose output does not depend on the order of its positions.
        axis: the planar axis as tensor dim (2, 3 or 4).
        position_dim: the per-slice dim along which the slices are laid end to end (1 for
            token sequences (B, L, C) and channels-last grids, 2 for maps (B, C, H, W)).
    Returns:
        The same object, of class AllSlices<Type>; names and state unchanged.
    """
    record = state(module)
    record.base = original_type(module) if is_all_slices(module) else type(module)
    record.axis, record.position_dim = axis, position_dim
    return _rederive(module)

"""Depth folding: run any 2D module slice by slice on a volume, keeping its names and state.

`fold_module(m)` turns `m` into an instance of a subclass of its own class whose forward folds
every (N, C, D, H, W) argument into (N * D, C, H, W) images, calls the 2D forward, and unfolds
every 4-D result: exactly planar semantics (docs/design.md P0) for any module, including ones
no converter knows, while parameter and buffer names stay those of the 2D module.

A *slice-wise* fold (`passthrough=True`) also accepts 2D-shaped inputs unchanged: used at the head
of classifiers, where a module may see per-slice volumes before the head pool and already pooled
(N, C, h, w) tensors after it.

A folded module's tensors stay 2D, so `model.to(memory_format=torch.channels_last_3d)` on the
converted network gives its 4-D weights the layout of the slices it then runs on: channels_last.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from .._axis import TOKEN_RANK, axis_name, fold, slice_dim, unfold
from .._state import (
    clear_derived,
    copy_derived,
    original_type,
    reduce_derived,
    state,
    type_name,
)

__all__ = ["fold_module", "is_folded", "is_slice_wise", "unfold_module"]


class _FoldMixin:
    """Forward of folded modules; the axis and passthrough flag are in their record
    (`_state.PlanarState`)."""

    def forward(self, *args, **kwargs):
        record = state(self)
        axis = record.axis
        # The usual call takes one tensor: skip the pytree walks, which cost more than the fold.
        single = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
        flat = args if single else tree_flatten((args, kwargs))[0]
        # volumes: (N, C, D, H, W) maps, and (N, S, L, C) token sequences except in a head's
        # slice-wise layers, which see already pooled 4-D maps after the head pool
        lowest = 5 if record.passthrough else TOKEN_RANK + 1
        volumes = [t for t in flat if isinstance(t, torch.Tensor) and t.dim() >= lowest]
        if not volumes:
            if record.passthrough:
                return super().forward(*args, **kwargs)
            raise ValueError(
                f"{self._get_name()} expects (N, C, D, H, W) volumes or (N, S, L, C) token "
                f"volumes; got neither among its inputs. A 2D image batch (N, C, H, W) is a "
                f"volume of depth 1: x.unsqueeze(2)."
            )
        n, slices = volumes[0].shape[0], volumes[0].shape[slice_dim(volumes[0].dim(), axis)]
        for v in volumes[1:]:
            if v.shape[0] != n or v.shape[slice_dim(v.dim(), axis)] != slices:
                raise ValueError(
                    f"{self._get_name()}: all volume inputs must share batch and "
                    f"{axis_name(axis)} size, got {tuple(volumes[0].shape)} and {tuple(v.shape)}"
                )

        def down(t):
            return fold(t, axis) if isinstance(t, torch.Tensor) and t.dim() >= lowest else t

        def up(t):
            if not isinstance(t, torch.Tensor):
                return t
            if t.dim() >= TOKEN_RANK and t.shape[0] == n * slices:
                return unfold(t, n, axis)
            raise RuntimeError(
                f"{self._get_name()} returned a tensor of shape {tuple(t.shape)} from its 2D "
                f"forward on {n * slices} slices; only per-slice maps (N*D, C, H, W) (or with "
                f"more leading dims) and token sequences (N*S, L, C) can be unfolded into "
                f"volumes"
            )

        if single:
            out = super().forward(fold(args[0], axis))
        else:
            out = super().forward(*tree_map(down, args), **tree_map(down, kwargs))
        return up(out) if isinstance(out, torch.Tensor) else tree_map(up, out)

    def _apply(self, fn, recurse=True):
        # nn.Module.to(memory_format=torch.channels_last_3d) refuses 4-D tensors; a 2D weight
        # converted as a one-slice volume (O, I, 1, kh, kw) gets channels_last, the layout of
        # the slices of a channels_last_3d volume. Any other failure is raised as it is.
        def apply(t: torch.Tensor) -> torch.Tensor:
            try:
                return fn(t)
            except RuntimeError:
                if t.dim() != 4:
                    raise
                return fn(t.unsqueeze(2)).squeeze(2)

        return super()._apply(apply, recurse)

    def _get_name(self) -> str:
        kind = "SliceWise" if state(self).passthrough else "Folded"
        return f"{kind}[{type_name(self)}]"

    def extra_repr(self) -> str:
        base = original_type(self).extra_repr(self)
        note = f"2D per {axis_name(state(self).axis)} slice"
        return f"{base}, {note}" if base else note

    def __deepcopy__(self, memo):
        record = state(self)
        return copy_derived(self, memo, lambda m: _refold(m, record.axis, record.passthrough))

    def __reduce_ex__(self, protocol):
        record = state(self)
        return reduce_derived(self, protocol, _refold, record.axis, record.passthrough)


@cache
def _folded_class(base: type, passthrough: bool) -> type:
    name = ("SliceWise" if passthrough else "Folded") + base.__name__
    return type(name, (_FoldMixin, base), {"__module__": __name__})


def _refold(module: nn.Module, axis: int, passthrough: bool) -> nn.Module:
    return fold_module(module, axis=axis, passthrough=passthrough)


def is_folded(module: nn.Module) -> bool:
    """True if `module` was folded by `fold_module`."""
    return isinstance(module, _FoldMixin)


def is_slice_wise(module: nn.Module) -> bool:
    """True if `module` was folded with `passthrough=True` (a head layer)."""
    return is_folded(module) and state(module).passthrough


def fold_module(module: nn.Module, *, axis: int = 2, passthrough: bool = False) -> nn.Module:
    """Make `module` (in place) run its 2D forward on every slice along `axis` of its inputs.

    Args:
        module: any 2D module; its children stay 2D.
        axis: planar axis as tensor dim (2, 3 or 4).
        passthrough: also accept inputs with no 5-D tensor, running the plain 2D forward.
    Returns:
        The same object, now of class Folded<Type> (or SliceWise<Type>); names and state unchanged.
    """
    base = original_type(module) if is_folded(module) else type(module)
    module.__class__ = _folded_class(base, passthrough)
    record = state(module)
    record.base, record.axis, record.passthrough = base, axis, passthrough
    return module


def unfold_module(module: nn.Module) -> nn.Module:
    """Undo `fold_module` in place."""
    if is_folded(module):
        clear_derived(module)
    return module

"""Which op of a head's code pools the positions of a per-slice tensor, and how slices merge.

P0 (docs/design.md): a head that pools pools over the slices too. When a head's own code runs on
the N·S stacked slices, the first op that pools the positions of a per-slice tensor is its head
pool, and its result merges the S slices of each volume:

- a reduction over non-batch dims (mean, sum, amax/max, amin/min, logsumexp) of token sequences
  (N·S, L, C) and of other per-slice tensors of rank 2 or 3 (masks (N·S, L), channels-first tokens
  (N·S, C, L), pooled by `adaptive_avg_pool1d(x, 1)` too): the slices merge with the same
  reduction. With equal token counts per slice, the
  mean of the slices' means is the mean over all tokens of all slices; `max(dim)` also returns
  the argmax among the slices' positions laid end to end;
- a global pool of feature maps (N·S, C, H, W) (`global_pool_kind`: adaptive pools to 1x1,
  `x.mean((2, 3))`, channels-last `x.mean((1, 2))`, a window covering the plane);
- a class-token selection `x[:, i]` (an int index on dim 1 of a rank-3 per-slice tensor, or
  `x.select(1, i)`): each slice's class token is averaged over the slices.
"""

from __future__ import annotations

import torch

from ._head_rewrite import global_pool_kind

__all__ = ["merge_slices", "slice_pool_kind"]

_REDUCTIONS = {"mean": "mean", "sum": "sum", "amax": "amax", "max": "amax", "amin": "amin",
               "min": "amin", "logsumexp": "logsumexp"}
# pools of (N·S, C, L) sequences to one position
_POOLS_1D = {"adaptive_avg_pool1d": "mean", "adaptive_max_pool1d": "amax"}


def _dims(args, kwargs):
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if isinstance(dims, int):
        return (dims,)
    if isinstance(dims, (tuple, list)) and all(isinstance(d, int) for d in dims) and dims:
        return tuple(dims)
    return None


def _selects_a_token(name: str, x: torch.Tensor, args, kwargs) -> bool:
    if x.dim() != 3:
        return False
    if name == "__getitem__":
        index = args[1] if len(args) > 1 else None
        return (isinstance(index, tuple) and len(index) == 2 and index[0] == slice(None)
                and isinstance(index[1], int) and not isinstance(index[1], bool))
    if name == "select":
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return isinstance(dim, int) and dim % 3 == 1
    return False


def slice_pool_kind(func, args, kwargs, out) -> str | None:
    """How `func(*args, **kwargs)` (result `out`), applied to the per-slice tensor `args[0]`,
    pools its positions: "mean", "sum", "amax", "amin", "logsumexp", "select" (a class token),
    or None when it does not pool them."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return None
    name = getattr(func, "__name__", "")
    if x.dim() == 4:
        return global_pool_kind(func, args, kwargs, out)
    if _selects_a_token(name, x, args, kwargs):
        return "select"
    if x.dim() == 3 and name in _POOLS_1D:
        size = kwargs.get("output_size", args[1] if len(args) > 1 else None)
        return _POOLS_1D[name] if size in (1, (1,), [1]) else None
    if x.dim() > 4 or name not in _REDUCTIONS:
        return None
    dims = _dims(args, kwargs)
    if dims is None or any(d % x.dim() == 0 for d in dims):
        return None  # a reduction over every dim, or over the batch: not a per-slice pool
    return _REDUCTIONS[name]


def merge_slices(out, *, volumes: int, kind: str, x: torch.Tensor | None = None,
                 dim: int | None = None):
    """The result `out` of a pool of N·S per-slice rows, merged to one row per volume.

    Args:
        out: the pooled per-slice result (N·S, ...), or the (values, indices) of `max`/`min`.
        volumes: N.
        kind: the merge reduction (`slice_pool_kind`); "select" averages.
        x, dim: for (values, indices): the pooled tensor and the dim pooled, so that the indices
            count the positions of the volume's slices laid end to end.
    Returns:
        (N, ...), or the merged (values, indices).
    """
    def grouped(t):
        return t.reshape(volumes, t.shape[0] // volumes, *t.shape[1:])

    if isinstance(out, torch.Tensor):
        reduction = "mean" if kind == "select" else kind
        return getattr(grouped(out), reduction)(1)
    values, indices = out
    best = grouped(values).max(1) if kind == "amax" else grouped(values).min(1)
    chosen = grouped(indices).gather(1, best.indices.unsqueeze(1)).squeeze(1)
    size = x.shape[dim % x.dim()] if x is not None and dim is not None else 0
    return type(out)((best.values, chosen + best.indices * size))

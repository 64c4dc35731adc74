"""What a head pool is: the ops of a head's code that pool positions, and how slices merge.

P0 (docs/design.md): a head that pools pools over the slices too. Its definition, for the
reference and for every converted head that pools in its own code:

- `global_pool_kind`: a 2D call that pools every position of a feature map (B, C, H, W):
  adaptive pools, `x.mean((2, 3))` (or channels-last `x.mean((1, 2))`), a window covering the
  plane. The head rewrite makes these calls pool the planar axis too.
- `AS_IS_POOLS`: for code that pooled the slices as it is (timm's `x.flatten(1, -2)` then
  `x.mean(1)`), the first reduction of a per-slice tensor is the pool.
- `slice_pool_kind`: for a head's code run on the stacked slices (slice code), the op that pools
  the positions of a per-slice tensor: a global pool of maps as above; a reduction over non-batch
  dims of token sequences (N·S, L, C) and of other per-slice tensors of rank 2 or 3 (masks
  (N·S, L), channels-first tokens (N·S, C, L), also pooled by `adaptive_avg_pool1d(x, 1)`); or a
  class-token selection `x[:, i]` (an int index on dim 1 of a rank-3 tensor, or `x.select(1, i)`).
- `merge_slices`: the merge of a pool's per-slice result: the slices of each volume reduced as
  the pool reduced positions (the mean of the slices' means is the mean over all tokens of all
  slices, as every slice has as many); a class token is averaged over the slices; `max(dim)`
  also returns the argmax among the slices' positions laid end to end.
"""

from __future__ import annotations

import torch

__all__ = ["AS_IS_POOLS", "covers_plane", "global_pool_kind", "merge_slices", "slice_pool_kind"]


def covers_plane(x: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether a 2D window op on `x` that returned `out` pooled the whole plane (one output
    position from several input positions)."""
    return out.shape[-2:] == (1, 1) and x.shape[-2] * x.shape[-1] > 1


_REDUCTIONS = {"mean": "mean", "amax": "amax", "amin": "amin", "adaptive_avg_pool2d": "mean",
               "adaptive_max_pool2d": "amax", "avg_pool2d": "mean", "max_pool2d": "amax"}


def global_pool_kind(fn, args, kwargs, out) -> str | None:
    """How a 2D call on a (B, C, H, W) tensor pools every position of the plane, as the head
    pool does: "mean", "amax", "amin", or None for any other call. These are the calls whose
    head rewrite pools the planar axis too (`out`: the call's 2D result)."""
    name = getattr(fn, "__name__", "")
    reduction = _REDUCTIONS.get(name)
    x = args[0] if args else None
    if reduction is None or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return None
    if name.startswith("adaptive"):
        return reduction
    if name in ("avg_pool2d", "max_pool2d"):
        return reduction if isinstance(out, torch.Tensor) and covers_plane(x, out) else None
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dims is None:
        return None
    dims = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims)}
    return reduction if len(dims) >= 2 and 2 in dims else None


# For "as-is" sites (code that pooled the slices as it is, e.g. timm's `x.flatten(1, -2)` then
# `x.mean(1)` over tokens): the first reduction of a per-slice tensor is the pool.
AS_IS_POOLS = {"mean": "mean", "sum": "sum", "amax": "amax", "max": "amax", "amin": "amin",
               "min": "amin", "adaptive_avg_pool2d": "mean", "adaptive_max_pool2d": "amax",
               "avg_pool2d": "mean", "max_pool2d": "amax", "adaptive_avg_pool1d": "mean",
               "adaptive_max_pool1d": "amax"}

_TOKEN_REDUCTIONS = {"mean": "mean", "sum": "sum", "amax": "amax", "max": "amax",
                     "amin": "amin", "min": "amin", "logsumexp": "logsumexp"}
# pools of (N·S, C, L) sequences to one position
_POOLS_1D = {"adaptive_avg_pool1d": "mean", "adaptive_max_pool1d": "amax"}


def _dims(args, kwargs) -> tuple[int, ...] | None:
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if isinstance(dims, int) and not isinstance(dims, bool):
        return (dims,)
    if isinstance(dims, (tuple, list)) and dims and all(isinstance(d, int) for d in dims):
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
    if x.dim() > 4 or name not in _TOKEN_REDUCTIONS:
        return None
    dims = _dims(args, kwargs)
    if dims is None or any(d % x.dim() == 0 for d in dims):
        return None  # a reduction over every dim, or over the batch: not a per-slice pool
    return _TOKEN_REDUCTIONS[name]


def merge_slices(t, slices: int, reduction: str, *, x: torch.Tensor | None = None,
                 dim: int | None = None):
    """(V·S, ...) -> (V, ...): the S slices of each volume pooled with `reduction` ("select":
    averaged).

    Args:
        t: a pool's per-slice result, or the (values, indices) of `max`/`min`.
        x, dim: for (values, indices): the pooled tensor and the dim pooled, so that the indices
            count the positions of the volume's slices laid end to end.
    """
    def grouped(u: torch.Tensor) -> torch.Tensor:
        return u.reshape(u.shape[0] // slices, slices, *u.shape[1:])

    if isinstance(t, torch.Tensor):
        return getattr(grouped(t), "mean" if reduction == "select" else reduction)(1)
    values, indices = t
    best = grouped(values).max(1) if reduction == "amax" else grouped(values).min(1)
    chosen = grouped(indices).gather(1, best.indices.unsqueeze(1)).squeeze(1)
    size = x.shape[dim % x.dim()] if x is not None and dim is not None else 0
    return type(t)((best.values, chosen + best.indices * size))

"""How close is equal: the tolerance of every comparison the judge makes, and what of two
outputs is compared (their leaves, and the structure that holds them)."""

from __future__ import annotations

import math

import torch
from torch.utils._pytree import tree_flatten

__all__ = ["LOOSE_FACTOR", "difference", "output_leaves", "tolerance"]

# Deciding whether a module's own forward is exact uses a tight tolerance (planar layers run the
# very 2D kernels, so real results agree to a few ulps and wrong code is caught even when its
# effect is small). Where float sums are reordered (the head pool's mean over D, H, W against the
# 2D mean over H, W; a fold's batched kernels) the tolerance is LOOSE_FACTOR times larger.
LOOSE_FACTOR = 10


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of an exact computation in `dtype` (a few ulps of the output scale)."""
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2
    return 1e-10 if dtype == torch.float64 else 2e-6


def difference(got: torch.Tensor, want: torch.Tensor, *, loose: bool = False) -> str:
    """Why `got` is not `want` up to float rounding ("" when it is)."""
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    if not want.is_floating_point() or not want.numel():
        return "" if torch.equal(got, want) else "values differ"
    limit = tolerance(want.dtype) * (LOOSE_FACTOR if loose else 1)
    with torch.no_grad():
        err = (got - want).abs().max().item()
        scale = max(want.abs().max().item(), 1e-6)
        if math.isfinite(err) and math.isfinite(scale):  # the usual case, in one pass each
            if err <= limit * scale:
                return ""
            return f"max abs difference {err:.3g} against a 2D output scale of {scale:.3g}"
        finite = torch.isfinite(want)
        if not torch.equal(torch.isfinite(got), finite):
            return "non-finite values where the 2D output has finite ones (or the reverse)"
        if not torch.equal(got[~finite].nan_to_num(0.0), want[~finite].nan_to_num(0.0)):
            return "non-finite values differ"
        return difference(got[finite], want[finite], loose=loose) if finite.any() else ""


def output_leaves(tree) -> tuple[list, object]:
    """The leaves of an output (a tensor, or a container of them) and its structure: two
    outputs are equal when their structures are and their leaves are, one by one."""
    return tree_flatten(tree)

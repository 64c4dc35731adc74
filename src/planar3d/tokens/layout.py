"""The volume layout of per-slice tensors of every rank, token sequences included.

A 2D network applied to the N·S slices of N volumes computes per-slice tensors whose leading dim
is N·S. Their volume layout depends on their rank:

- rank >= 4 (feature maps (N·S, C, H, W), channels-last grids, maps with more leading dims): the
  planar axis is inserted at its place counted from the end, as for every converted CNN:
  (N·D, C, H, W) -> (N, C, D, H, W) for axis D;
- rank 3 (token sequences (N·S, L, C), prefix tokens included): the slices come right after
  the batch, (N, S, L, C), whatever the planar axis. Slice s of the volume, `t[:, s]`, is the 2D
  token sequence of that slice;
- rank <= 2 (pooled vectors, logits): no volume layout; a head pool merges the slices first.

For axis D the two rules agree (the planar axis is third from the end in both). Both are views
when the volume is stored slice-major ((N, S, L, C) contiguous for tokens).
"""

from __future__ import annotations

import torch

from .._axis import fold, unfold

__all__ = ["TOKEN_RANK", "fold_slices", "slice_dim", "unfold_slices"]

# the rank of a 2D token sequence (B, L, C); its volume has one dim more
TOKEN_RANK = 3


def slice_dim(volume_rank: int, axis: int) -> int:
    """Where the slices are in a volume of `volume_rank` dims (the per-slice rank plus one).

    Raises:
        ValueError: for a rank that has no volume layout (below 4).
    """
    if volume_rank == TOKEN_RANK + 1:
        return 1
    if volume_rank >= 5:
        return volume_rank - 5 + axis
    raise ValueError(
        f"a {volume_rank}-D tensor is no volume: token volumes are (N, S, L, C) and map volumes "
        f"(N, C, D, H, W)"
    )


def fold_slices(volume: torch.Tensor, axis: int) -> torch.Tensor:
    """A volume -> its per-slice tensor (N·S, ...): (N, S, L, C) -> (N·S, L, C) for tokens,
    (N, C, D, H, W) -> (N·D, C, H, W) for maps (axis D).

    Raises:
        ValueError: for a tensor of fewer than 4 dims.
    """
    if volume.dim() == TOKEN_RANK + 1:
        return volume.reshape(volume.shape[0] * volume.shape[1], *volume.shape[2:])
    slice_dim(volume.dim(), axis)  # raises for ranks without a layout
    return fold(volume, axis)


def unfold_slices(t: torch.Tensor, n: int, axis: int) -> torch.Tensor:
    """Inverse of `fold_slices`: a per-slice tensor (N·S, ...) of `n` volumes -> its volume.

    Raises:
        ValueError: for a tensor of fewer than 3 dims (pooled: no volume layout) or a leading
            dim that is not a multiple of `n`.
    """
    if t.dim() < TOKEN_RANK:
        raise ValueError(
            f"a per-slice tensor of shape {tuple(t.shape)} has no volume layout (it is pooled "
            f"per slice: a head pool must merge the slices first)"
        )
    if t.shape[0] % n:
        raise ValueError(
            f"a per-slice tensor of {t.shape[0]} rows cannot hold the slices of {n} volumes"
        )
    if t.dim() == TOKEN_RANK:
        return t.reshape(n, t.shape[0] // n, *t.shape[1:])
    return unfold(t, n, axis)

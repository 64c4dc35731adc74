"""Planar-axis bookkeeping and the depth fold that runs 2D ops on the slices of a volume.

Tensor layout is (N, C, D, H, W). The *planar axis* is the tensor dim (2, 3 or 4) along which a
converted kernel has size 1. Folding moves that axis next to the batch and merges the two, giving
(N * A, C, s1, s2) 2D images; unfolding is the inverse. Both are views when the volume is stored
slice-major (the strides of a contiguous (N, A, C, s1, s2) tensor) or channels_last_3d along D.

The volume layout of a per-slice tensor (N·S, ...) of the 2D network, S slices along the planar
axis, depends on its rank:
- rank >= 4 (feature maps, channels-last grids, maps with more leading dims): the planar axis at
  its place counted from the end, (N·D, C, H, W) -> (N, C, D, H, W) for axis D;
- rank 3, token sequences (N·S, L, C) with their prefix tokens: **(N, S, L, C)**, the slices
  right after the batch whatever the axis (for axis D the same as the rule above): `t[:, s]` is
  the 2D token sequence of slice s;
- rank <= 2 (pooled vectors, logits): none; a head pool merges the slices first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

AXIS_NAMES = {"D": 2, "H": 3, "W": 4}


def parse_axis(axis: str | int) -> int:
    """Return the tensor dim (2, 3 or 4) of a planar axis given as "D"/"H"/"W" or 2/3/4/-3/-2/-1.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(axis, str) and axis.upper() in AXIS_NAMES:
        return AXIS_NAMES[axis.upper()]
    if isinstance(axis, int) and not isinstance(axis, bool) and axis in (2, 3, 4, -3, -2, -1):
        return axis % 5
    raise ValueError(
        f"planar axis must be 'D', 'H' or 'W' (tensor dims 2, 3, 4 of (N, C, D, H, W)), "
        f"got {axis!r}"
    )


def axis_name(axis: int) -> str:
    return "DHW"[axis - 2]


def insert(values: Sequence, axis: int, value) -> tuple:
    """Insert `value` into a 2-tuple of in-plane values at the planar axis' spatial position."""
    out = list(values)
    out.insert(axis - 2, value)
    return tuple(out)


def drop(values: Sequence, axis: int) -> tuple:
    """Remove the planar axis' entry from a 3-tuple of spatial values."""
    out = list(values)
    del out[axis - 2]
    return tuple(out)


# the rank of a 2D token sequence (B, L, C); its volume, (N, S, L, C), has one dim more
TOKEN_RANK = 3


def slice_dim(volume_rank: int, axis: int) -> int:
    """Where the slices are in a volume of `volume_rank` dims (the per-slice rank plus one).

    Raises:
        ValueError: for a rank that has no volume layout (below 4).
    """
    if volume_rank == TOKEN_RANK + 1:
        return 1
    if volume_rank > TOKEN_RANK + 1:
        return volume_rank - 5 + axis
    raise ValueError(
        f"a {volume_rank}-D tensor is no volume: token volumes are (N, S, L, C) and map volumes "
        f"(N, C, D, H, W)"
    )


def fold(x: torch.Tensor, axis: int) -> torch.Tensor:
    """(N, C, D, H, W) -> (N * A, C, s1, s2), A = x.shape[axis]: one 2D image per slice.

    A volume with more leading dims, (N, K, C, D, H, W), folds to (N * A, K, C, s1, s2): the
    planar axis counts from the end, as it does for `unfold`. A token volume (N, S, L, C) folds
    to (N * S, L, C).

    Raises:
        ValueError: for a tensor of fewer than 4 dims (no volume).
    """
    where = slice_dim(x.dim(), axis)
    moved = x.movedim(where, 1)
    return moved.reshape(moved.shape[0] * moved.shape[1], *moved.shape[2:])


def unfold(y: torch.Tensor, n: int, axis: int) -> torch.Tensor:
    """Inverse of `fold`: (N * A, C, s1, s2) -> volume with the slices back along `axis`.

    A 2D result with more leading dims, (N * A, K, C, s1, s2), gets the planar axis at the same
    place counted from the end: (N, K, C, D, H, W) for axis D. Token sequences (N * S, L, C)
    become (N, S, L, C).

    Raises:
        ValueError: for a tensor of fewer than 3 dims (pooled: no volume layout), or one whose
            rows are not the slices of `n` volumes.
    """
    if y.dim() < TOKEN_RANK:
        raise ValueError(
            f"a per-slice tensor of shape {tuple(y.shape)} has no volume layout (it is pooled "
            f"per slice: a head pool must merge the slices first)"
        )
    if y.shape[0] % n:
        raise ValueError(
            f"a per-slice tensor of {y.shape[0]} rows cannot hold the slices of {n} volumes"
        )
    grouped = y.reshape(n, y.shape[0] // n, *y.shape[1:])
    return grouped.movedim(1, slice_dim(y.dim() + 1, axis))


class _UnfoldResult(torch.autograd.Function):
    """`unfold` whose output autograd sees as a tensor of its own, not as a view."""

    generate_vmap_rule = True  # torch.func transforms (vmap, grad, jvp) work through it

    @staticmethod
    def forward(y: torch.Tensor, n: int, axis: int) -> torch.Tensor:
        return unfold(y, n, axis).detach()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.n, ctx.axis = inputs

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return fold(grad, ctx.axis), None, None

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor, *_) -> torch.Tensor:
        return unfold(tangent, ctx.n, ctx.axis)


def unfold_result(y: torch.Tensor, n: int, axis: int) -> torch.Tensor:
    """`unfold` for the fresh result of a 2D op (conv, norm, pool) that nothing else holds.

    The volume shares `y`'s memory as `unfold`'s does, but autograd does not track it as a view
    of `y`. In-place ops on views (torchvision's `out += identity`, `ReLU(inplace=True)`) go
    through autograd's CopySlices, whose backward copies the gradient three times, once into a
    contiguous NCDHW layout that every layer below then copies again; on a tensor of its own
    they cost what they cost in the 2D network. Without autograd recording, and under
    torch.compile (whose graphs handle in-place ops on views without CopySlices, and whose
    tracer refuses an autograd.Function with a forward-mode rule), it is `unfold`.
    """
    if torch.is_grad_enabled() and y.requires_grad and not torch.compiler.is_compiling():
        return _UnfoldResult.apply(y, n, axis)
    return unfold(y, n, axis)


def require_volume(x: object, where: str) -> torch.Tensor:
    """Check that `x` is a 5-D (N, C, D, H, W) tensor; raise a ValueError saying so otherwise."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        if isinstance(x, torch.Tensor):
            got = f"a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        else:
            got = type(x).__name__
        raise ValueError(
            f"{where} expects a 5-D volume (N, C, D, H, W), got {got}. A single 2D image batch "
            f"(N, C, H, W) is a volume of depth 1: use x.unsqueeze(2)."
        )
    return x

"""A learnable depth position embedding, zero at initialisation.

A 2D token model knows where each token sits in its slice (its position embedding), not which
slice it comes from. `DepthPosition` adds row s of a (max_depth, C) table to every token of
slice s. The table starts at zero, so the converted network computes exactly what it computed
without it, and learns depth positions from there.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attach import Attached, attach

__all__ = ["DEFAULT_MAX_DEPTH", "DepthPosition", "with_depth_position"]

DEFAULT_MAX_DEPTH = 64


class DepthPosition(nn.Module):
    """`x + table[s]` for every element of slice s.

    Args:
        channels: C, the size of the channel dim.
        max_depth: rows of the table: the most slices a volume may have here.
        slice_dim: the dim of the slices in the input (1 for token volumes (N, S, L, C)).
        channel_dim: the channel dim (-1 for tokens, 1 for maps (N, C, D, H, W)).

    Shapes:
        any volume with S <= max_depth slices at `slice_dim` and C at `channel_dim` -> the same.
    """

    def __init__(self, channels: int, *, max_depth: int = DEFAULT_MAX_DEPTH, slice_dim: int = 1,
                 channel_dim: int = -1, device=None, dtype=None) -> None:
        super().__init__()
        if channels < 1 or max_depth < 1:
            raise ValueError(f"channels and max_depth must be positive, got {channels}, "
                             f"{max_depth}")
        self.table = nn.Parameter(torch.zeros(max_depth, channels, device=device, dtype=dtype))
        self.slice_dim, self.channel_dim = slice_dim, channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s_dim, c_dim = self.slice_dim % x.dim(), self.channel_dim % x.dim()
        slices, channels = x.shape[s_dim], x.shape[c_dim]
        if slices > self.table.shape[0] or channels != self.table.shape[1]:
            raise ValueError(
                f"a depth position table of {self.table.shape[0]} slices x {self.table.shape[1]} "
                f"channels cannot be added to a volume of {slices} slices x {channels} channels "
                f"(shape {tuple(x.shape)}); split the volume into windows of at most "
                f"{self.table.shape[0]} slices, or resize the table"
            )
        rows = self.table[:slices] if s_dim < c_dim else self.table[:slices].t()
        shape = [1] * x.dim()
        shape[s_dim], shape[c_dim] = slices, channels
        return x + rows.reshape(shape)

    def extra_repr(self) -> str:
        return (f"max_depth={self.table.shape[0]}, channels={self.table.shape[1]}, "
                f"slice_dim={self.slice_dim}, channel_dim={self.channel_dim}")


class _DepthPositionMixin(Attached):
    """Forward of a module whose output gets a depth position embedding."""

    def forward(self, *args, **kwargs):
        return self.depth_position(super().forward(*args, **kwargs))


def with_depth_position(module: nn.Module, position: DepthPosition) -> nn.Module:
    """Make `module` (in place) add `position` to its output, as child `depth_position`.

    Returns:
        `module`, of a class derived from its own; its 2D parameter names are unchanged.
    """
    return attach(module, _DepthPositionMixin, "depth_position", position)

"""Divided space-depth attention: a depth attention branch that starts at zero.

Video transformers divide attention into attention within a frame and attention across frames
at the same position. A converted token model attends within each slice (that is the 2D
network); `DepthAttention` adds the other half: at each token position, the tokens of all slices
attend to each other. It is a residual branch

    LayerNorm -> multi-head attention over the slices -> output projection

whose output projection starts at zero, so at initialisation the branch adds exactly nothing and
the network computes what the planar network computes; the first optimisation step gives the
projection a gradient (and the attention's q/k/v the step after), so depth is learned from an
exact start. The q/k/v projections may start as a copy of the spatial attention's (`from_qkv`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attach import Attached, attach

__all__ = ["DepthAttention", "with_depth_attention"]


class DepthAttention(nn.Module):
    """Attention over the slices at each position of a volume, output projection zero at first.

    Args:
        channels: C, the size of the channel dim.
        num_heads: attention heads (must divide C).
        slice_dim: the dim of the slices in the input (1 for token volumes (N, S, L, C)).
        channel_dim: the channel dim (-1 for tokens and channels-last grids, 1 for maps).
        qkv_bias: whether the q/k/v projection has a bias.

    Shapes:
        any volume with C at `channel_dim` -> the same shape; every position (all dims but the
        slices and channels) is one sequence of S tokens.
    """

    def __init__(self, channels: int, *, num_heads: int = 1, slice_dim: int = 1,
                 channel_dim: int = -1, qkv_bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads:
            raise ValueError(f"num_heads must divide channels ({channels}), got {num_heads}")
        kw = {"device": device, "dtype": dtype}
        self.num_heads, self.slice_dim, self.channel_dim = num_heads, slice_dim, channel_dim
        self.norm = nn.LayerNorm(channels, **kw)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias, **kw)
        self.proj = nn.Linear(channels, channels, **kw)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    @classmethod
    def from_qkv(cls, qkv: nn.Linear, *, num_heads: int, slice_dim: int = 1,
                 channel_dim: int = -1) -> DepthAttention:
        """A depth attention whose q/k/v projection starts as a copy of `qkv`, the fused
        (C -> 3C) projection of a spatial attention; the output projection starts at zero.

        Raises:
            ValueError: if `qkv` does not map C channels to 3C.
        """
        channels = qkv.in_features
        if qkv.out_features != 3 * channels:
            raise ValueError(f"a fused q/k/v projection maps C to 3C channels, got {qkv}")
        new = cls(channels, num_heads=num_heads, slice_dim=slice_dim, channel_dim=channel_dim,
                  qkv_bias=qkv.bias is not None, device=qkv.weight.device,
                  dtype=qkv.weight.dtype)
        with torch.no_grad():
            new.qkv.weight.copy_(qkv.weight)
            if qkv.bias is not None:
                new.qkv.bias.copy_(qkv.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (self.slice_dim % x.dim(), self.channel_dim % x.dim())
        moved = x.movedim(dims, (-2, -1))
        positions, (slices, channels) = moved.shape[:-2], moved.shape[-2:]
        seq = self.norm(moved.reshape(-1, slices, channels))
        heads, width = self.num_heads, channels // self.num_heads
        q, k, v = self.qkv(seq).reshape(-1, slices, 3, heads, width).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(-1, slices, channels))
        return out.reshape(*positions, slices, channels).movedim((-2, -1), dims)

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, slice_dim={self.slice_dim}, "
                f"channel_dim={self.channel_dim}")


class _DepthAttentionMixin(Attached):
    """Forward of a module with a depth attention branch beside it: module(x) + branch(x)."""

    def forward(self, x, *args, **kwargs):
        out = super().forward(x, *args, **kwargs)
        return out + self.depth_attention(x)


def with_depth_attention(module: nn.Module, attention: DepthAttention) -> nn.Module:
    """Make `module` (in place) return `module(x) + attention(x)`, `attention` as child
    `depth_attention`. `module` must map a volume to a volume of the same shape.

    Returns:
        `module`, of a class derived from its own; its 2D parameter names are unchanged.
    """
    return attach(module, _DepthAttentionMixin, "depth_attention", attention)

"""Pooling layers for converted networks.

- `PlanarMaxPool3d` / `PlanarAvgPool3d` / `PlanarAdaptive*Pool3d`: window 1 along the planar axis,
  computed slice by slice as the 2D op (depth preserved, exactly the 2D cost).
- `HeadAdaptiveAvgPool2d` / `HeadAdaptiveMaxPool2d`: the pool at the head of a classifier. Given a
  volume it pools the planar axis entirely (and the in-plane axes to the 2D output size) and
  returns a 2D-shaped (N, C, h, w) tensor, so the rest of the 2D head runs unchanged; given an
  already pooled 4-D tensor it is the plain 2D pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .._axis import (
    axis_name,
    drop,
    fold,
    insert,
    parse_axis,
    require_volume,
    unfold,
    unfold_result,
)
from ..context import Axis
from ._swap import reclass

__all__ = [
    "HeadAdaptiveAvgPool2d",
    "HeadAdaptiveMaxPool2d",
    "PlanarAdaptiveAvgPool3d",
    "PlanarAdaptiveMaxPool3d",
    "PlanarAvgPool3d",
    "PlanarMaxPool3d",
]


def _planar(values, axis: int, along: int) -> tuple:
    return insert(_pair(values), axis, along)


class PlanarMaxPool3d(nn.MaxPool3d):
    """MaxPool3d with window (1, kh, kw) (axis D), computed as F.max_pool2d on the slices."""

    @classmethod
    def from_2d(cls, pool: nn.MaxPool2d, *, axis: Axis | int = "D") -> PlanarMaxPool3d:
        a = parse_axis(axis)
        return reclass(
            pool, cls,
            kernel_size=_planar(pool.kernel_size, a, 1),
            stride=_planar(pool.stride if pool.stride is not None else pool.kernel_size, a, 1),
            padding=_planar(pool.padding, a, 0),
            dilation=_planar(pool.dilation, a, 1),
            axis=a,
        )

    def forward(self, x: torch.Tensor):
        require_volume(x, type(self).__name__)
        a, n = self.axis, x.shape[0]
        out = F.max_pool2d(
            fold(x, a), drop(self.kernel_size, a), drop(self.stride, a), drop(self.padding, a),
            drop(self.dilation, a), self.ceil_mode, self.return_indices,
        )
        if self.return_indices:
            return unfold_result(out[0], n, a), unfold(out[1], n, a)
        return unfold_result(out, n, a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"


class PlanarAvgPool3d(nn.AvgPool3d):
    """AvgPool3d with window (1, kh, kw) (axis D), computed as F.avg_pool2d on the slices."""

    @classmethod
    def from_2d(cls, pool: nn.AvgPool2d, *, axis: Axis | int = "D") -> PlanarAvgPool3d:
        a = parse_axis(axis)
        return reclass(
            pool, cls,
            kernel_size=_planar(pool.kernel_size, a, 1),
            stride=_planar(pool.stride if pool.stride is not None else pool.kernel_size, a, 1),
            padding=_planar(pool.padding, a, 0),
            axis=a,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_volume(x, type(self).__name__)
        a, n = self.axis, x.shape[0]
        out = F.avg_pool2d(
            fold(x, a), drop(self.kernel_size, a), drop(self.stride, a), drop(self.padding, a),
            self.ceil_mode, self.count_include_pad, self.divisor_override,
        )
        return unfold_result(out, n, a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"


class PlanarAdaptiveAvgPool3d(nn.AdaptiveAvgPool3d):
    """Adaptive average pool of each slice to the 2D output size (planar axis kept)."""

    @classmethod
    def from_2d(cls, pool: nn.AdaptiveAvgPool2d, *, axis: Axis | int = "D"):
        a = parse_axis(axis)
        return reclass(pool, cls, output_size=_planar(pool.output_size, a, None), axis=a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_volume(x, type(self).__name__)
        a = self.axis
        pooled = F.adaptive_avg_pool2d(fold(x, a), drop(self.output_size, a))
        return unfold_result(pooled, x.shape[0], a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"


class PlanarAdaptiveMaxPool3d(nn.AdaptiveMaxPool3d):
    """Adaptive max pool of each slice to the 2D output size (planar axis kept)."""

    @classmethod
    def from_2d(cls, pool: nn.AdaptiveMaxPool2d, *, axis: Axis | int = "D"):
        a = parse_axis(axis)
        return reclass(pool, cls, output_size=_planar(pool.output_size, a, None), axis=a)

    def forward(self, x: torch.Tensor):
        require_volume(x, type(self).__name__)
        a, n = self.axis, x.shape[0]
        out = F.adaptive_max_pool2d(fold(x, a), drop(self.output_size, a), self.return_indices)
        if self.return_indices:
            return unfold_result(out[0], n, a), unfold(out[1], n, a)
        return unfold_result(out, n, a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"


class HeadAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Head pool: a (N, C, D, H, W) volume -> (N, C, h, w), averaging the whole planar axis."""

    @classmethod
    def from_2d(cls, pool: nn.AdaptiveAvgPool2d, *, axis: Axis | int = "D"):
        return reclass(pool, cls, axis=parse_axis(axis))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            return super().forward(x)
        a = self.axis
        # Each slice pooled in 2D, then the slices averaged: adaptive_avg_pool3d's numbers, and
        # its backward keeps the slices' memory layout (adaptive_avg_pool3d's returns a
        # contiguous gradient, which every layer below would then copy).
        pooled = F.adaptive_avg_pool2d(fold(x, a), self.output_size)
        return unfold(pooled, x.shape[0], a).mean(a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pools axis {axis_name(self.axis)} entirely"


class HeadAdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """Head pool: a (N, C, D, H, W) volume -> (N, C, h, w), max over the whole planar axis."""

    @classmethod
    def from_2d(cls, pool: nn.AdaptiveMaxPool2d, *, axis: Axis | int = "D"):
        return reclass(pool, cls, axis=parse_axis(axis))

    def forward(self, x: torch.Tensor):
        if x.dim() != 5:
            return super().forward(x)
        a = self.axis
        out = F.adaptive_max_pool3d(x, insert(_pair(self.output_size), a, 1), self.return_indices)
        if self.return_indices:
            return out[0].squeeze(a), out[1].squeeze(a)
        return out.squeeze(a)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pools axis {axis_name(self.axis)} entirely"

"""Planar BatchNorm: a BatchNorm3d computed as the 2D BatchNorm of the folded slices.

Batch statistics over (N, D, H, W) are those of a BatchNorm2d over the N * D slices, so the result
is `nn.BatchNorm3d`'s. Running it on the folded slices keeps the memory layout the planar layers
around it produce: `nn.BatchNorm3d` returns a contiguous (N, C, D, H, W) tensor for a slice-major
input, which the next planar layer would have to copy back, and its CPU kernel is several times
slower on such strided input (docs/design.md §2).
"""

from __future__ import annotations

import torch
from torch import nn

from .._axis import axis_name, fold, parse_axis, require_volume, unfold_result
from ..context import Axis
from ._swap import reclass

__all__ = ["PlanarBatchNorm3d"]


class PlanarBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d (statistics over N, D, H, W) run as BatchNorm2d on the folded slices.

    Parameters, buffers, momentum and train/eval behaviour are `nn.BatchNorm3d`'s; `axis` only
    chooses which spatial axis is folded into the batch (the converted network's planar axis,
    whose fold is free in the layouts the planar layers produce).

    Shapes:
        input (N, C, D, H, W) -> output of the same shape.
    """

    def __init__(self, num_features: int, *args, axis: Axis | int = "D", **kwargs) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.axis = parse_axis(axis)

    @classmethod
    def from_2d(cls, bn: nn.BatchNorm2d, *, axis: Axis | int = "D") -> PlanarBatchNorm3d:
        """The same module (parameters, statistics, flags, hooks) as a planar BatchNorm3d."""
        return reclass(bn, cls, axis=parse_axis(axis))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_volume(x, type(self).__name__)
        return unfold_result(super().forward(fold(x, self.axis)), x.shape[0], self.axis)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        # `forward` hands the 2D BatchNorm code the folded (N * D, C, H, W) slices.
        if input.dim() != 4:
            raise ValueError(f"expected the folded 4-D slices, got {input.dim()}-D input")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"

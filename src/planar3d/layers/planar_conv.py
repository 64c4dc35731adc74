"""Planar 3D convolutions: a (1, kh, kw) kernel run as a 2D convolution on the folded slices.

`PlanarConv3d` *is* an `nn.Conv3d` (weight (O, I, 1, kh, kw) for the default axis D, the
torchvision `Conv3DNoTemporal` layer), so it saves, loads and prints like one; its forward folds
the planar axis into the batch and calls `F.conv2d`, which is exactly the 2D network's cost.
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
    unfold_result,
)
from ..context import Axis
from ..kernels import planar_kernel
from ._swap import reclass

__all__ = ["PlanarConv3d", "PlanarConvTranspose3d"]


def _pad2d_for_mode(kernel: tuple, padding, dilation: tuple) -> list[int]:
    """F.pad amounts (last dim first) reproducing Conv2d's padding for non-zero padding modes."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        amounts = []
        for k, d in zip(reversed(kernel), reversed(dilation)):
            total = d * (k - 1)
            amounts += [total // 2, total - total // 2]
        return amounts
    return [p for p in reversed(padding) for _ in range(2)]


def _planar_padding(padding, axis: int):
    return padding if isinstance(padding, str) else insert(_pair(padding), axis, 0)


class PlanarConv3d(nn.Conv3d):
    """Conv3d with kernel size 1 along the planar axis, computed slice by slice as a Conv2d.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode: as for `nn.Conv2d` (in-plane values).
        axis: planar axis "D", "H" or "W" (tensor dims 2, 3, 4 of (N, C, D, H, W)).
        depth_stride: stride along the planar axis (1 keeps every slice).

    Shapes:
        input (N, C, D, H, W) -> output (N, O, D / depth_stride, H', W') for axis D.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        axis: Axis | int = "D",
        depth_stride: int = 1,
        device=None,
        dtype=None,
    ) -> None:
        a = parse_axis(axis)
        super().__init__(
            in_channels,
            out_channels,
            insert(_pair(kernel_size), a, 1),
            stride=insert(_pair(stride), a, depth_stride),
            padding=_planar_padding(padding, a),
            dilation=insert(_pair(dilation), a, 1),
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.axis = a

    @classmethod
    def from_2d(
        cls, conv: nn.Conv2d, *, axis: Axis | int = "D", depth_stride: int = 1
    ) -> PlanarConv3d:
        """Planar copy of `conv`: same parameters (kernel reshaped), hooks, flags, device, dtype."""
        a = parse_axis(axis)
        kernel = planar_kernel(conv.weight.detach(), axis=a)
        weight = nn.Parameter(kernel, conv.weight.requires_grad)
        new = reclass(
            conv,
            cls,
            kernel_size=insert(conv.kernel_size, a, 1),
            stride=insert(conv.stride, a, depth_stride),
            padding=_planar_padding(conv.padding, a),
            dilation=insert(conv.dilation, a, 1),
            output_padding=(0, 0, 0),
            _reversed_padding_repeated_twice=[0, 0, *conv._reversed_padding_repeated_twice],
            axis=a,
        )
        new.weight = weight
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_volume(x, type(self).__name__)
        a = self.axis
        if self.weight.shape[a] != 1:
            raise RuntimeError(
                f"{type(self).__name__} needs a kernel of size 1 along axis {axis_name(a)}, its "
                f"weight is {tuple(self.weight.shape)}; use nn.Conv3d for thick kernels"
            )
        step = self.stride[a - 2]
        if step != 1:
            index = [slice(None)] * 5
            index[a] = slice(None, None, step)
            x = x[tuple(index)]
        n = x.shape[0]
        stride = drop(self.stride, a)
        dilation = drop(self.dilation, a)
        weight = self.weight.squeeze(a)
        images = fold(x, a)
        padding = self.padding if isinstance(self.padding, str) else drop(self.padding, a)
        if self.padding_mode != "zeros":
            pad = _pad2d_for_mode(drop(self.kernel_size, a), padding, dilation)
            images = F.pad(images, pad, mode=self.padding_mode)
            padding = 0
        out = F.conv2d(images, weight, self.bias, stride, padding, dilation, self.groups)
        return unfold_result(out, n, a)

    def map_2d_parameter(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """The value of parameter `name` for a 2D checkpoint's `value` (kernel made planar)."""
        return planar_kernel(value, axis=self.axis) if name == "weight" else value

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"


class PlanarConvTranspose3d(nn.ConvTranspose3d):
    """ConvTranspose3d with kernel size 1 along the planar axis, run as a 2D transposed conv.

    Shapes:
        input (N, C, D, H, W) -> output (N, O, D, H', W') for axis D.
    """

    @classmethod
    def from_2d(cls, conv: nn.ConvTranspose2d, *, axis: Axis | int = "D") -> PlanarConvTranspose3d:
        """Planar copy of `conv` (weight (I, O/g, kh, kw) -> (I, O/g, 1, kh, kw) for axis D)."""
        a = parse_axis(axis)
        kernel = planar_kernel(conv.weight.detach(), axis=a)
        weight = nn.Parameter(kernel, conv.weight.requires_grad)
        new = reclass(
            conv,
            cls,
            kernel_size=insert(conv.kernel_size, a, 1),
            stride=insert(conv.stride, a, 1),
            padding=insert(conv.padding, a, 0),
            dilation=insert(conv.dilation, a, 1),
            output_padding=insert(conv.output_padding, a, 0),
            axis=a,
        )
        new.weight = weight
        return new

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        require_volume(x, type(self).__name__)
        a = self.axis
        n = x.shape[0]
        images = fold(x, a)
        kernel = drop(self.kernel_size, a)
        stride = drop(self.stride, a)
        padding = drop(self.padding, a)
        dilation = drop(self.dilation, a)
        size2d = None
        if output_size is not None:
            size2d = drop(list(output_size)[-3:], a)
        output_padding = self._output_padding(
            images, size2d, list(stride), list(padding), list(kernel), 2, list(dilation)
        ) if size2d is not None else drop(self.output_padding, a)
        out = F.conv_transpose2d(
            images, self.weight.squeeze(a), self.bias, stride, padding, output_padding,
            self.groups, dilation,
        )
        return unfold_result(out, n, a)

    def map_2d_parameter(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """The value of parameter `name` for a 2D checkpoint's `value` (kernel made planar)."""
        return planar_kernel(value, axis=self.axis) if name == "weight" else value

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}"

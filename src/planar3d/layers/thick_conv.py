"""Convolutions with a kernel of depth k > 1 along the planar axis, initialised from 2D kernels.

`ThickConv3d` is an `nn.Conv3d` whose (O, I, k, kh, kw) kernel (axis D) comes from a 2D kernel
by centre initialisation (Shan et al. 2018: the middle plane holds the 2D kernel, so at
initialisation it equals the planar layer, docs/design.md P3) or I3D inflation (Carreira &
Zisserman 2017: the kernel repeated k times and divided by k, so a volume constant along the axis
gets the 2D response, P2). Depth is padded to keep the number of slices ('same' along the axis).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._axis import axis_name, insert, parse_axis
from ..context import Axis
from ..kernels import center_kernel, inflate_kernel
from ._swap import reclass

__all__ = ["THICK_INITS", "ThickConv3d", "ThickInit", "thick_kernel"]

ThickInit = Literal["center", "inflate"]
THICK_INITS = ("center", "inflate")


def thick_kernel(weight: torch.Tensor, *, init: str, depth: int, axis: int) -> torch.Tensor:
    """(O, I, kh, kw) -> a depth-`depth` kernel along `axis` by centre or inflate initialisation."""
    if init == "center":
        return center_kernel(weight, depth=depth, axis=axis)
    if init == "inflate":
        return inflate_kernel(weight, depth=depth, axis=axis)
    raise ValueError(f"thick kernel initialisation must be one of {THICK_INITS}, got {init!r}")


def _depth_pad(depth: int, dilation: int) -> tuple[int, int]:
    total = dilation * (depth - 1)
    return total // 2, total - total // 2


class ThickConv3d(nn.Conv3d):
    """Conv3d with depth-k kernels along the planar axis made from a 2D convolution.

    Attributes (besides nn.Conv3d's):
        axis: the planar axis (tensor dim 2, 3 or 4).
        init: "center" or "inflate": how 2D kernels map onto this layer (used when a 2D
            checkpoint is loaded with `planar3d.load_2d_state_dict`).

    Shapes:
        input (N, C, D, H, W) -> (N, O, D / depth_stride, H', W') for axis D.
    """

    @classmethod
    def from_2d(
        cls, conv: nn.Conv2d, *, init: str, depth: int, axis: Axis | int = "D",
        depth_stride: int = 1, pad_depth: bool = True,
    ) -> ThickConv3d:
        """Thick copy of `conv`: kernel mapped by `init`, same hooks, flags, device, dtype.

        `pad_depth`: 'same' padding along the planar axis (the number of slices kept at depth
        stride 1); without it, no depth padding (tubelets: each output from `depth` slices).
        """
        a = parse_axis(axis)
        kernel = thick_kernel(conv.weight.detach(), init=init, depth=depth, axis=a)
        before, after = _depth_pad(depth, 1) if pad_depth else (0, 0)
        in_plane = (0, 0) if conv.padding == "valid" else conv.padding
        if in_plane == "same":
            padding, pre = "same", (0, 0)
        else:  # 'same' along the planar axis keeps the number of slices
            padding = insert(in_plane, a, before if before == after else 0)
            pre = (0, 0) if before == after else (before, after)
        new = reclass(
            conv, cls,
            kernel_size=insert(conv.kernel_size, a, depth),
            stride=insert(conv.stride, a, depth_stride),
            padding=padding,
            dilation=insert(conv.dilation, a, 1),
            output_padding=(0, 0, 0),
            axis=a,
            init=init,
            depth_prepad=pre,
        )
        new._reversed_padding_repeated_twice = _reversed_padding(new)
        new.weight = nn.Parameter(kernel, conv.weight.requires_grad)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.depth_prepad):
            pad = [0] * 6
            slot = 2 * (4 - self.axis)  # F.pad lists the last dim first
            pad[slot], pad[slot + 1] = self.depth_prepad
            x = F.pad(x, pad, mode="constant" if self.padding_mode == "zeros" else
                      self.padding_mode)
        return super().forward(x)

    def map_2d_parameter(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """The value of parameter `name` for a 2D checkpoint's `value` (kernel mapped by init)."""
        if name != "weight":
            return value
        return thick_kernel(value, init=self.init, depth=self.kernel_size[self.axis - 2],
                            axis=self.axis)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", axis={axis_name(self.axis)}, init={self.init}"


def _reversed_padding(conv: nn.Conv3d) -> list[int]:
    """nn.Conv3d's F.pad amounts for non-zero padding modes (last dim first)."""
    if isinstance(conv.padding, str):
        out = []
        for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation)):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return out
    return [p for p in reversed(conv.padding) for _ in range(2)]

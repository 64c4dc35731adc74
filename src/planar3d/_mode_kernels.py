"""The mode's kernels: how a 2D convolution convolves along the planar axis (docs/design.md §1).

One rule for every place a 2D convolution becomes 3D: a `Conv2d` layer (the built-in
converter, when conversion applies the mode), an `F.conv2d` call in a rewritten forward (the
body rewrite's rule), and a planar convolution that `thicken` gives depth kernels.

- planar: kernels (1, kh, kw), the 2D convolution on each slice;
- center / inflate: depth-k kernels (`ThickConv3d`, the kernel mappings of `kernels.py`);
- acs: the output channels in three parts, each planar along another axis (`ACSConv3d`).

1x1 kernels stay planar in every mode (a 1x1 kernel has no plane to thicken or orient), and so
do, in acs mode, kernels the three orientations cannot share (see `acs_orientable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ._axis import insert
from .errors import UnsupportedModuleError
from .layers.acs_conv import ACSConv3d, acs_conv3d, acs_orientable
from .layers.planar_conv import PlanarConv3d
from .layers.thick_conv import ThickConv3d, thick_kernel

__all__ = ["ModeKernels", "spatial"]

Kind = Literal["planar", "thick", "acs"]


def spatial(kernel_size: tuple[int, ...]) -> bool:
    """Whether a kernel has a plane that a mode can thicken or orient (it is not 1x1)."""
    return max(kernel_size) > 1


@dataclass(frozen=True)
class ModeKernels:
    """The kernels of one mode.

    Attributes:
        mode: "planar", "center", "inflate" or "acs".
        depth: kernel size along the planar axis for "center" and "inflate".
    """

    mode: str = "planar"
    depth: int = 3

    def kind(self, kernel_size: tuple[int, ...], padding, dilation: tuple[int, ...]) -> Kind:
        """How a 2D convolution with these hyper-parameters convolves in this mode."""
        if self.mode == "planar" or not spatial(kernel_size) or (
            self.mode == "acs" and not acs_orientable(kernel_size, padding, dilation)
        ):
            return "planar"
        return "acs" if self.mode == "acs" else "thick"

    def layer(self, conv: nn.Conv2d, *, axis: int, depth_stride: int = 1, path: str = ""
              ) -> nn.Module:
        """The 3D layer of `conv` (its weights mapped, hooks, flags, device and dtype kept).

        Raises:
            UnsupportedModuleError: acs with a planar axis other than D (ACS orients kernels
                along all three axes); `path` names the layer.
        """
        kind = self.kind(conv.kernel_size, conv.padding, conv.dilation)
        if kind == "planar":
            return PlanarConv3d.from_2d(conv, axis=axis, depth_stride=depth_stride)
        if kind == "acs":
            if axis != 2:
                raise UnsupportedModuleError(
                    path, type(conv).__name__,
                    "ACS orients kernels along all three axes, so it has no planar axis to "
                    "choose",
                    "use axis='D' with mode='acs'",
                )
            return ACSConv3d.from_2d(conv, depth_stride=depth_stride)
        return ThickConv3d.from_2d(conv, init=self.mode, depth=self.depth, axis=axis,
                                   depth_stride=depth_stride)

    def conv3d(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride,
               padding, dilation, groups: int, *, axis: int) -> torch.Tensor:
        """`F.conv2d(x, weight, ...)`'s 3D counterpart on a (N, C, D, H, W) volume `x` for a
        kernel of kind "thick" or "acs" (a planar kernel runs as F.conv2d on the slices);
        depth is padded so that the number of slices is kept."""
        stride, dilation = _pair(stride), _pair(dilation)
        padding = padding if isinstance(padding, str) else _pair(padding)
        if self.mode == "acs":
            return acs_conv3d(x, weight, bias, stride, padding, dilation, groups,
                              depth_stride=1)
        kernel = thick_kernel(weight, init=self.mode, depth=self.depth, axis=axis)
        total = self.depth - 1
        if isinstance(padding, str):
            pad3 = padding if padding == "same" else insert((0, 0), axis, 0)
        else:
            pad3 = insert(padding, axis, 0)
        if pad3 != "same":
            amounts = [0] * 6
            slot = 2 * (4 - axis)
            amounts[slot], amounts[slot + 1] = total // 2, total - total // 2
            x = F.pad(x, amounts)
        return F.conv3d(x, kernel, bias, insert(stride, axis, 1), pad3,
                        insert(dilation, axis, 1), groups)

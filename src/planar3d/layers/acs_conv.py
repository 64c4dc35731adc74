"""ACS convolution (Yang et al., IEEE JBHI 2021): one 2D kernel set, three orientations.

The output channels are split in three parts; part g convolves with the 2D kernels laid planar
along axis g (D, H, W: axial, coronal, sagittal planes) and the parts are concatenated. The
weight keeps its 2D shape, so a 2D checkpoint loads unchanged.

Channel split (as the reference implementation): ``[O // 3] * 3`` with the remainder given to the
first parts (O % 3 == 1: part 0 gets one more; == 2: parts 0 and 1 get one more each). Grouped
and depthwise convolutions, which the reference refuses, are split by *groups* with the same
rule, so that every part is a whole number of groups (a part may be empty when groups < 3).

Every part uses the same 3D stride (the depth stride of the depth policy, then the 2D stride),
so the parts line up; part g equals the planar conversion along axis g (docs/design.md P4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._axis import insert
from ._swap import reclass

__all__ = ["ACSConv3d", "acs_conv3d", "acs_orientable", "acs_split"]


def acs_orientable(kernel_size, padding, dilation) -> bool:
    """Whether the three oriented parts give the same output shape: 'same'-style padding.

    A part's kernel lies along two axes and has size 1 along the third; its output lines up with
    the other parts' only when the 2D padding centres the kernel (2p = d(k-1) on both axes).
    Even kernels and 'valid'-style padding (e.g. a ConvNeXt 4x4/4 patchify stem) do not.
    """
    if padding == "same":
        return True
    if padding == "valid":
        padding = (0, 0)
    return all(2 * p == d * (k - 1) for k, p, d in zip(kernel_size, padding, dilation))


def acs_split(count: int) -> list[int]:
    """Sizes of the three ACS parts for `count` channels (or groups)."""
    sizes = [count // 3] * 3
    for i in range(count % 3):
        sizes[i] += 1
    return sizes


def _part_padding(padding, kernel: tuple, dilation: tuple, axis: int):
    if isinstance(padding, str):
        return padding
    return insert(padding, axis, 0)


def acs_conv3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding,
    dilation, groups: int, *, depth_stride: int = 1, padding_mode: str = "zeros",
) -> torch.Tensor:
    """Functional ACS convolution of a (N, C, D, H, W) volume with 2D kernels (O, I/g, kh, kw).

    `stride`, `padding`, `dilation` are the 2D layer's (in-plane) values; the result is
    (N, O, D', H', W') with every part strided by (depth_stride, *stride).
    """
    out_channels = weight.shape[0]
    per_group = out_channels // groups
    in_per_group = x.shape[1] // groups
    stride3 = (depth_stride, *stride)
    parts = []
    group_start = 0
    for axis, n_groups in zip((2, 3, 4), acs_split(groups) if groups > 1 else [None] * 3):
        if groups > 1:
            o0, o1 = group_start * per_group, (group_start + n_groups) * per_group
            inputs = x[:, group_start * in_per_group:(group_start + n_groups) * in_per_group]
            part_groups = n_groups
            group_start += n_groups
        else:
            sizes = acs_split(out_channels)
            o0 = sum(sizes[: axis - 2])
            o1 = o0 + sizes[axis - 2]
            inputs, part_groups = x, 1
        if o1 == o0:
            continue
        kernel = weight[o0:o1].unsqueeze(axis)
        dil3 = insert(dilation, axis, 1)
        pad3 = _part_padding(padding, tuple(weight.shape[2:]), dilation, axis)
        if padding_mode != "zeros":
            k3 = kernel.shape[2:]
            if isinstance(pad3, str):
                amounts = []
                for k, d in zip(reversed(k3), reversed(dil3)):
                    total = d * (k - 1)
                    amounts += [total // 2, total - total // 2]
            else:
                amounts = [p for p in reversed(pad3) for _ in range(2)]
            inputs = F.pad(inputs, amounts, mode=padding_mode)
            pad3 = 0
        parts.append(F.conv3d(inputs, kernel, None if bias is None else bias[o0:o1], stride3,
                              pad3, dil3, part_groups))
    return torch.cat(parts, dim=1)


class ACSConv3d(nn.Conv2d):
    """ACS convolution layer holding the 2D layer's parameters unchanged (weight (O, I/g, kh, kw)).

    It is an `nn.Conv2d` subclass only to keep the 2D hyper-parameters and parameter shapes;
    its forward takes (N, C, D, H, W) volumes.
    """

    @classmethod
    def from_2d(cls, conv: nn.Conv2d, *, depth_stride: int = 1) -> ACSConv3d:
        return reclass(conv, cls, depth_stride=depth_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(
                f"ACSConv3d expects a 5-D volume (N, C, D, H, W), got shape {tuple(x.shape)}"
            )
        return acs_conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                          self.groups, depth_stride=self.depth_stride,
                          padding_mode=self.padding_mode)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ACS (axial/coronal/sagittal split {self.split()})"

    def split(self) -> list[int]:
        if self.groups > 1:
            return [g * (self.out_channels // self.groups) for g in acs_split(self.groups)]
        return acs_split(self.out_channels)

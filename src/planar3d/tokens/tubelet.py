"""Tubelet patch embeddings: the convolution that cuts slices into tokens, given depth.

A token model's patch embedding is a convolution whose kernel equals its stride (16x16, stride
16). On volumes it gets a kernel of depth k by the mode's mapping (`kernels.center_kernel`: the 2D
kernel in the middle plane, zeros elsewhere; `kernels.inflate_kernel`: the I3D mean), either

- with depth stride 1 and 'same' depth padding: one token grid per slice, as planar; with
  "center" it computes exactly the planar tokens at initialisation; or
- as *tubelets* (`pool=True`): depth stride k and no depth padding, so tubelet j covers slices
  j·k .. j·k + k - 1 and a volume of S slices gives ⌊S / k⌋ token grids (k times fewer tokens).
  With "center" (odd k) tubelet j equals the planar tokens of its middle slice j·k + k // 2 at
  initialisation; with "inflate" a volume whose slices are equal gives the 2D tokens in every
  tubelet (docs/design.md P2).

The result is a `ThickConv3d`, so 2D checkpoints load through its kernel mapping and `thicken`
treats it as any thick convolution.
"""

from __future__ import annotations

from torch import nn

from .._axis import parse_axis
from ..context import Axis
from ..layers.thick_conv import ThickConv3d, ThickInit

__all__ = ["is_patchify", "tubelet_conv"]


def is_patchify(conv: nn.Conv2d) -> bool:
    """Whether `conv` cuts its input into non-overlapping patches (kernel = stride > 1, no
    padding, no dilation): a patch embedding."""
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return (kernel == stride and max(kernel) > 1 and padding == (0, 0)
            and tuple(conv.dilation) == (1, 1))


def tubelet_conv(conv: nn.Conv2d, *, init: ThickInit, depth: int, pool: bool,
                 axis: Axis | int = "D") -> ThickConv3d:
    """The depth-`depth` version of a patch embedding convolution.

    Args:
        conv: the 2D patch embedding (kernel = stride, no padding; `is_patchify`).
        init: "center" (odd `depth`) or "inflate": how the 2D kernel maps onto depth.
        depth: kernel size k along the planar axis.
        pool: tubelets of k slices (depth stride k, no depth padding) instead of one token grid
            per slice (depth stride 1, 'same' depth padding).
        axis: the planar axis.
    Returns:
        A `ThickConv3d`: (N, C, S, H, W) -> (N, O, S', H / p, W / p), S' = S, or ⌊S / k⌋ with
        `pool`.
    Raises:
        ValueError: if `conv` is not a patch embedding, or for an invalid init or depth.
    """
    if not is_patchify(conv):
        raise ValueError(
            f"a tubelet is made from a patch embedding (kernel = stride > 1, no padding or "
            f"dilation), got {conv}"
        )
    return ThickConv3d.from_2d(conv, init=init, depth=depth, axis=parse_axis(axis),
                               depth_stride=depth if pool else 1, pad_depth=not pool)

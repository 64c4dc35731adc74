"""Kernel mappings from 2D to 3D as pure tensor functions (cf. torch.nn.utils.fusion).

A 2D convolution kernel has shape (O, I, kh, kw) (for transposed convolutions (I, O, kh, kw)).
Every mapping inserts a new spatial dim at the planar axis (tensor dim 2, 3 or 4 of a
(N, C, D, H, W) volume; D by default), so the in-plane dims keep their order.
"""

from __future__ import annotations

import torch

from ._axis import parse_axis
from .context import Axis

__all__ = [
    "center_kernel",
    "inflate_kernel",
    "kernel_to_2d",
    "planar_kernel",
]


def _check_2d(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"expected a 2D kernel of shape (O, I, kh, kw), got {shape}")


def _check_depth(depth: int, *, odd: bool) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"kernel depth must be a positive int, got {depth!r}")
    if odd and depth % 2 == 0:
        raise ValueError(
            f"centre initialisation needs an odd kernel depth (it has a middle plane), got "
            f"{depth}; use {depth + 1} or {depth - 1}"
        )


def planar_kernel(weight: torch.Tensor, *, axis: Axis | int = "D") -> torch.Tensor:
    """Planar mapping (the seed paper, Eq. 3): (O, I, kh, kw) -> (O, I, 1, kh, kw) for axis D.

    Args:
        weight: 2D kernel (O, I, kh, kw).
        axis: planar axis, "D", "H" or "W".
    Returns:
        The same values with a size-1 dim at the planar axis, e.g. (O, I, kh, 1, kw) for "H".
    Raises:
        ValueError: if `weight` is not 4-D or the axis is invalid.
    """
    _check_2d(weight)
    return weight.unsqueeze(parse_axis(axis))


def center_kernel(weight: torch.Tensor, *, depth: int, axis: Axis | int = "D") -> torch.Tensor:
    """Centre mapping (Shan et al. 2018): zeros except the middle plane, which holds the kernel.

    Args:
        weight: 2D kernel (O, I, kh, kw).
        depth: odd kernel size k along the planar axis.
        axis: planar axis.
    Returns:
        (O, I, k, kh, kw) for axis D; with 'same' depth padding it computes exactly the planar
        result (docs/design.md P3).
    Raises:
        ValueError: for a non-4-D weight, an even or non-positive depth, or an invalid axis.
    """
    _check_2d(weight)
    _check_depth(depth, odd=True)
    a = parse_axis(axis)
    planes = [torch.zeros_like(weight)] * depth
    planes[depth // 2] = weight
    return torch.stack(planes, dim=a)


def inflate_kernel(weight: torch.Tensor, *, depth: int, axis: Axis | int = "D") -> torch.Tensor:
    """I3D inflation (Carreira & Zisserman 2017): the kernel repeated k times, divided by k.

    Args:
        weight: 2D kernel (O, I, kh, kw).
        depth: kernel size k along the planar axis.
        axis: planar axis.
    Returns:
        (O, I, k, kh, kw) for axis D. On a volume constant along the planar axis it reproduces
        the 2D response wherever the receptive field stays inside the volume (P2).
    Raises:
        ValueError: for a non-4-D weight, a non-positive depth, or an invalid axis.
    """
    _check_2d(weight)
    _check_depth(depth, odd=False)
    a = parse_axis(axis)
    return torch.stack([weight / depth] * depth, dim=a)


def kernel_to_2d(weight: torch.Tensor, *, axis: Axis | int = "D") -> torch.Tensor:
    """Inverse of `planar_kernel`: drop the size-1 planar dim of a (O, I, 1, kh, kw) kernel.

    Raises:
        ValueError: if the kernel is not 5-D with size 1 along the planar axis.
    """
    a = parse_axis(axis)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 5 or weight.shape[a] != 1:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"expected a planar 3D kernel with size 1 at dim {a}, got {shape}")
    return weight.squeeze(a)

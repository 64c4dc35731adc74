"""The last conversion pass: the mode's kernels and the depth policy, and a check that the
result runs.

The walk decides the structure in planar terms (built-in converters are called with mode
"planar" and depth "keep"); this pass calls the converter again, with the conversion's own
settings, for every planar convolution whose kernel the mode changes and every pooling (or
strided) layer the depth policy changes, and gives rewritten forwards the mode's kernels for
their `F.conv2d` calls (`_mode_kernels`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _triple

from ._axis import axis_name
from ._containers import map_leaves
from ._judge.reference import Capture, as_volumes, run_3d
from ._mode_kernels import ModeKernels, spatial
from ._plan import Plan
from ._record import Call, batch_of, describe_inputs
from ._rewrite.forward import set_kernels
from ._state import type_name
from ._tree import rebuild
from .context import ConversionContext
from .errors import UnsupportedModuleError
from .layers.fold import is_folded, is_slice_wise
from .layers.planar_conv import PlanarConv3d
from .layers.planar_pool import PlanarAvgPool3d, PlanarMaxPool3d
from .registry import Converter

# a depth policy's smoke test needs a volume deep enough for every depth-pooling layer
MAX_SMOKE_DEPTH = 64


def apply_mode(root: nn.Module, *, ctx: ConversionContext, pristine: nn.Module,
               registry: dict[type, Converter], plan: Plan) -> nn.Module:
    """Give the planar structure its mode's kernels and its depth policy.

    The structure (what is kept, rewritten, folded) was decided and checked in planar terms;
    here planar convolutions become the mode's layers, rewritten forwards get the mode's
    functional convolutions, and pooling (and, for "all", strided) layers act along depth.

    Args:
        root: the converted network, in planar terms.
        ctx: the conversion's settings.
        pristine: the 2D network (the converters are given its modules).
        registry: the converters by exact type.
        plan: the conversion's plan, which records what changes here.
    Returns:
        The network in its mode and depth policy.
    Raises:
        UnsupportedModuleError: a folded module would have to pool or stride along depth.
    """
    kernels = ModeKernels(ctx.mode, ctx.kernel_depth)
    pools = (PlanarMaxPool3d, PlanarAvgPool3d) if ctx.pool_depth else ()

    def changes(module: nn.Module) -> bool:
        if isinstance(module, PlanarConv3d):
            return (ctx.mode != "planar" and spatial(module.kernel_size)) or (
                ctx.stride_depth and max(module.stride) > 1)
        return isinstance(module, pools)

    def visit(module: nn.Module, path: str) -> nn.Module | None:
        if is_folded(module):
            if not is_slice_wise(module) and ctx.depth != "keep" and any(
                isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or (
                    ctx.stride_depth and isinstance(m, nn.Conv2d) and max(m.stride) > 1)
                for m in module.modules()
            ):
                raise UnsupportedModuleError(
                    path, type_name(module),
                    f"depth policy {ctx.depth!r} asks its pooling/strided layers to act along "
                    f"{axis_name(ctx.axis)}, but its forward only runs slice by slice",
                    "use depth='keep', or register a converter for this module",
                )
            return module
        if changes(module):
            source = pristine.get_submodule(path)
            new = registry[type(source)](source, ctx.replace(path=path, region="body"))
            action = "depth pool" if isinstance(module, pools) else "swapped"
            detail = type(new).__name__
            if ctx.mode != "planar" and isinstance(new, PlanarConv3d) and spatial(new.kernel_size):
                detail += " (acs: kernel and padding cannot be oriented three ways; stays planar)"
            plan.decide(path, type(source).__name__, action, detail)
            return new.train(module.training)
        set_kernels(module, kernels)
        return None

    return rebuild(root, visit)


def _depth_needed(root: nn.Module, axis: int) -> int:
    """How many slices a volume needs for every layer of `root` that strides along the planar
    axis (a depth-pooling layer halves it; a tubelet of k slices divides it by k)."""
    depth = 1
    for module in root.modules():
        if isinstance(module, (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d)):
            stride = _triple(module.stride if module.stride is not None else module.kernel_size)
            kernel = _triple(module.kernel_size)
            if stride[axis - 2] > 1:
                depth *= max(stride[axis - 2], kernel[axis - 2])
    return depth


def check_runs(root: nn.Module, call: Call, *, axis: int, volumes: int) -> None:
    """A converted network in another mode or depth policy must run: eval and train mode on
    volumes of the example call's images, deep enough for the layers that pool or stride along
    the planar axis. (The structure was checked against the reference in planar terms; the
    mode's kernels are the documented mappings, whose properties the tests check.)

    Raises:
        UnsupportedModuleError: naming the module that fails.
    """
    depth = _depth_needed(root, axis)
    if depth > MAX_SMOKE_DEPTH:
        return
    batch = batch_of(call)
    if depth > batch // volumes:  # deep enough for the depth policy: images repeated
        call = map_leaves(lambda t: t[:volumes].repeat_interleave(depth, dim=0)
                          if isinstance(t, torch.Tensor) and t.dim() >= 1 and len(t) == batch
                          else t, call)
        batch = volumes * depth
    args, kwargs = as_volumes(call, batch=batch, volumes=volumes, axis=axis)
    for training in (False, True):
        capture = Capture(root)
        try:
            run_3d(root, args, kwargs, training=training, capture=capture)
        except Exception as error:
            path = capture.stack[-1] if capture.stack else ""
            raise UnsupportedModuleError(
                path, type_name(root.get_submodule(path)),
                f"in this mode the converted network fails on volumes made of "
                f"{describe_inputs(call)} ({type(error).__name__}: {error})",
                "use mode='planar', or register a converter for this module",
            ) from error

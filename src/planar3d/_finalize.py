"""The last conversion pass: the mode's kernels and the depth policy."""

from __future__ import annotations

from torch import nn

from ._axis import axis_name
from ._fx import is_rewritten
from ._planner import Planner, join
from .errors import UnsupportedModuleError
from .layers.fold import is_folded
from .layers.planar_conv import PlanarConv3d
from .layers.planar_pool import PlanarAvgPool3d, PlanarMaxPool3d


def finalize(root: nn.Module, planner: Planner) -> nn.Module:
    """Give the planar structure its mode's kernels and its depth policy.

    The structure (what is kept, rewritten, folded) was decided and probed in planar terms; here
    planar convolutions become the mode's layers, rewritten forwards get the mode's functional
    convolutions, and pooling (and, for "all", strided) layers act along depth.
    """
    ctx = planner.ctx
    pools = (PlanarMaxPool3d, PlanarAvgPool3d) if ctx.pool_depth else ()

    def changes(module: nn.Module) -> bool:
        if isinstance(module, PlanarConv3d):
            return (ctx.mode != "planar" and max(module.kernel_size) > 1) or (
                ctx.stride_depth and max(module.stride) > 1)
        return isinstance(module, pools)

    def walk(module: nn.Module, path: str) -> nn.Module:
        if is_folded(module):
            if not module._planar3d_passthrough and ctx.depth != "keep" and any(
                isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or (
                    ctx.stride_depth and isinstance(m, nn.Conv2d) and max(m.stride) > 1)
                for m in module.modules()
            ):
                raise UnsupportedModuleError(
                    path, module._planar3d_base.__name__,
                    f"depth policy {ctx.depth!r} asks its pooling/strided layers to act along "
                    f"{axis_name(ctx.axis)}, but its forward only runs slice by slice",
                    "use depth='keep', or register a converter for this module",
                )
            return module
        if changes(module):
            source = planner.pristine.get_submodule(path)
            new = planner.registry[type(source)](source, ctx.replace(path=path, region="body"))
            action = "depth pool" if isinstance(module, pools) else "swapped"
            detail = type(new).__name__
            if ctx.mode != "planar" and isinstance(new, PlanarConv3d) and max(new.kernel_size) > 1:
                detail += " (acs: kernel and padding cannot be oriented three ways; stays planar)"
            planner.report.add(path, type(source).__name__, action, detail)
            return new
        if is_rewritten(module) and module._planar3d_rewrite[0] == "body":
            module._planar3d_kernels = (ctx.mode, ctx.kernel_depth)
        for name, child in list(module.named_children()):
            new = walk(child, join(path, name))
            if new is not child:
                setattr(module, name, new)
        return module

    return walk(root, "")



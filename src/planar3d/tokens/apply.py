"""Give a converted token model its depth options: tubelets, depth position, depth attention.

Applied after the mode's kernels (`_mode_pass`), at the sites found from the example run
(`sites.find_depth_sites`), and only where the module runs on volumes (a module inside a folded
one, or a 2D module in the code of a slice-code one, sees per-slice tensors):

- `depth="pool"` with the center or inflate mode: the first convolution, when it cuts patches,
  becomes a tubelet (`tubelet.tubelet_conv`: depth stride k, no depth padding); in the other
  modes it has no depth to pool with, and every slice keeps its own tokens;
- "position": a `DepthPosition` added to the first convolution's output (or to the token
  embedding's);
- "attention": a `DepthAttention` branch beside every attending site.

Every added layer starts at zero (the network computes what it computed without it), and the
plan records it as a "depth layer".
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .._axis import slice_dim
from .._tree import join
from ..context import ConversionContext
from ..errors import UnsupportedModuleError
from ..layers.all_slices import is_all_slices
from ..layers.fold import is_folded
from ..layers.slice_code import is_slice_code, lifted_paths
from ..layers.thick_conv import ThickInit
from .depth_attention import DepthAttention, with_depth_attention
from .depth_position import DepthPosition, with_depth_position
from .sites import DepthSites
from .tubelet import is_patchify, tubelet_conv

__all__ = ["Decide", "add_depth", "on_volumes"]

# records a decision: (path, type name, action, detail)
Decide = Callable[[str, str, str, str], None]


def on_volumes(root: nn.Module, path: str) -> bool:
    """Whether the module at `path` of a converted network runs on volumes: no module above it
    runs its code slice by slice with it inside (folded, all-slices), and each slice-code
    module above it gives volumes to the branch it lies in."""
    module, done = root, ""
    for name in path.split(".") if path else ():
        if is_folded(module) or is_all_slices(module):
            return False
        if is_slice_code(module):
            rest = path[len(done) + 1:] if done else path
            parts = rest.split(".")
            if not any(".".join(parts[:i]) in lifted_paths(module)
                       for i in range(1, len(parts) + 1)):
                return False
        module = getattr(module, name)
        done = join(done, name)
    return True


def _params_like(module: nn.Module) -> dict:
    p = next(module.parameters(), None)
    return {} if p is None else {"device": p.device, "dtype": p.dtype}


def _tubelet(root, sites: DepthSites, ctx: ConversionContext, source, decide: Decide) -> None:
    path = sites.first_conv or ""
    conv = source.get_submodule(path) if sites.first_conv is not None else None
    if conv is None or not is_patchify(conv) or not on_volumes(root, path):
        raise UnsupportedModuleError(
            path, type(conv).__name__ if conv is not None else type(root).__name__,
            f"depth policy 'pool' in mode {ctx.mode!r} makes a token model's patch embedding a "
            f"tubelet, but this network has no patch embedding convolution (kernel = stride, "
            f"no padding) that runs on volumes",
            "use depth='keep' (depth kept, every slice its own tokens), or mode='planar'",
        )
    init: ThickInit = "center" if ctx.mode == "center" else "inflate"
    new = tubelet_conv(conv, init=init, depth=ctx.kernel_depth, pool=True, axis=ctx.axis)
    root.set_submodule(path, new.train(root.get_submodule(path).training))
    decide(path, type(conv).__name__, "swapped",
           f"ThickConv3d ({ctx.mode}, tubelets of {ctx.kernel_depth} slices: depth stride "
           f"{ctx.kernel_depth})")


def _position(root, sites: DepthSites, ctx: ConversionContext, decide: Decide) -> None:
    if sites.first_conv is not None and on_volumes(root, sites.first_conv):
        path = sites.first_conv
        module = root.get_submodule(path)
        layer = DepthPosition(module.out_channels, slice_dim=ctx.axis, channel_dim=1,
                              **_params_like(module))
        where = "the first convolution's output"
    elif sites.token_embedding is not None and on_volumes(root, sites.token_embedding[0]):
        path, width = sites.token_embedding
        module = root.get_submodule(path)
        layer = DepthPosition(width, slice_dim=1, channel_dim=-1, **_params_like(module))
        where = "the token embedding's output"
    else:
        raise UnsupportedModuleError(
            "", type(root).__name__,
            "a depth position embedding goes on the output of the first convolution or token "
            "embedding, and this network has neither running on volumes",
            "convert without depth_layers=('position',)",
        )
    with_depth_position(module, layer)
    decide(join(path, "depth_position"), "DepthPosition", "depth layer",
           f"added to {where}: row s for slice s, {layer.table.shape[0]} rows")


def _attention(root, sites: DepthSites, ctx: ConversionContext, source,
               decide: Decide) -> None:
    placed = [site for site in sites.attention if on_volumes(root, site.path)]
    if not placed:
        raise UnsupportedModuleError(
            "", type(root).__name__,
            "divided depth attention goes beside attention modules that run on volumes and "
            "keep the shape of their tokens; this network has none"
            + (f" (e.g. {sites.skipped[0][0]}: {sites.skipped[0][1]})" if sites.skipped else ""),
            "convert without depth_layers=('attention',)",
        )
    without = [p for p, _ in sites.skipped] + [s.path for s in sites.attention if s not in placed]
    for i, site in enumerate(placed):
        module = root.get_submodule(site.path)
        where, channel = slice_dim(site.rank + 1, ctx.axis), -1 if site.channel_dim == -1 else 1
        if site.qkv is not None:
            layer = DepthAttention.from_qkv(source.get_submodule(site.qkv),
                                            num_heads=site.num_heads, slice_dim=where,
                                            channel_dim=channel)
            start = f"q/k/v copied from {site.qkv}"
        else:
            layer = DepthAttention(site.channels, num_heads=site.num_heads, slice_dim=where,
                                   channel_dim=channel, **_params_like(module))
            start = "q/k/v initialised afresh"
        with_depth_attention(module, layer)
        note = (f"; {len(without)} attention modules without one: {', '.join(without[:3])}"
                if without and i == 0 else "")
        decide(join(site.path, "depth_attention"), "DepthAttention", "depth layer",
               f"beside it: attention over the slices at each position, {start}, output "
               f"projection zero{note}")


def add_depth(root: nn.Module, *, sites: DepthSites, ctx: ConversionContext,
              source: nn.Module, decide: Decide) -> nn.Module:
    """Give the converted network `root` its tubelets (under depth="pool") and the depth layers
    `ctx.depth_layers`.

    Args:
        sites: where they go (`find_depth_sites` on the 2D network's example run).
        ctx: the conversion's settings (mode, kernel depth, depth policy, axis, depth layers).
        source: the network whose weights tubelets and copied q/k/v start from (the 2D
            network at conversion, the converted network itself when it is thickened).
        decide: records what is added: `decide(path, type name, action, detail)`.
    Returns:
        `root`, changed in place.
    Raises:
        UnsupportedModuleError: when an option asked for has no site that runs on volumes.
    """
    if ctx.pool_depth and sites.tokens and ctx.mode in ("center", "inflate"):
        _tubelet(root, sites, ctx, source, decide)
    if "position" in ctx.depth_layers:
        _position(root, sites, ctx, decide)
    if "attention" in ctx.depth_layers:
        _attention(root, sites, ctx, source, decide)
    return root

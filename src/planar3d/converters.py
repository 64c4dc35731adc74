"""Built-in converters for torch.nn layers (registered on import).

Body layers become planar 3D layers; in a classifier's head (`ctx.region == "head"`) a layer runs
slice-wise on volumes and unchanged on already pooled tensors, except adaptive pools, which are
the head pool that merges the planar axis.
"""

from __future__ import annotations

from torch import nn

from ._mode_kernels import ModeKernels
from .context import ConversionContext
from .errors import UnsupportedModuleError
from .layers._swap import reclass
from .layers.planar_conv import PlanarConvTranspose3d
from .layers.planar_norm import PlanarBatchNorm3d
from .layers.planar_pool import (
    HeadAdaptiveAvgPool2d,
    HeadAdaptiveMaxPool2d,
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarMaxPool3d,
)
from .registry import fold, keep, register_builtin


def _body_only(converter):
    """Outside the body (in a classifier head) run the 2D layer slice-wise instead."""

    def wrapped(module: nn.Module, ctx: ConversionContext) -> nn.Module:
        if ctx.region == "head":
            return fold(module, ctx)
        return converter(module, ctx)

    wrapped.__name__ = wrapped.__qualname__ = converter.__name__
    wrapped.__doc__ = converter.__doc__
    return wrapped


def _same_in_plane(module: nn.Module, ctx: ConversionContext, **values) -> dict:
    """The depth value for each hyper-parameter: its in-plane value, which must be isotropic."""
    out = {}
    for name, value in values.items():
        pair = value if isinstance(value, tuple) else (value, value)
        if pair[0] != pair[1]:
            raise UnsupportedModuleError(
                ctx.path, type(module).__name__,
                f"depth policy {ctx.depth!r} takes the depth {name} from the in-plane one, but "
                f"{name}={pair} differs between the two in-plane axes",
                "use depth='keep' or register a converter for this layer",
            )
        out[name] = pair[0]
    return out


@_body_only
def convert_conv2d(module: nn.Conv2d, ctx: ConversionContext) -> nn.Module:
    """Conv2d -> the mode's 3D layer (see `_mode_kernels`): PlanarConv3d, weight
    (O, I, kh, kw) -> (O, I, 1, kh, kw); ThickConv3d of depth `ctx.kernel_depth` (center,
    inflate); ACSConv3d (acs)."""
    depth_stride = 1
    if ctx.stride_depth:
        depth_stride = _same_in_plane(module, ctx, stride=module.stride)["stride"]
    return ModeKernels(ctx.mode, ctx.kernel_depth).layer(module, axis=ctx.axis,
                                                         depth_stride=depth_stride, path=ctx.path)


@_body_only
def convert_conv_transpose2d(module: nn.ConvTranspose2d, ctx: ConversionContext) -> nn.Module:
    """ConvTranspose2d -> PlanarConvTranspose3d (planar in every mode)."""
    return PlanarConvTranspose3d.from_2d(module, axis=ctx.axis)


@_body_only
def convert_batchnorm2d(module: nn.BatchNorm2d, ctx: ConversionContext) -> nn.Module:
    """BatchNorm2d -> BatchNorm3d: statistics over N, D, H, W equal the 2D ones over N*D slices.

    In planar mode a PlanarBatchNorm3d, which runs on the folded slices and so keeps the layout
    the planar layers produce; the thick and ACS convolutions produce contiguous volumes, which
    nn.BatchNorm3d takes as they are.
    """
    if ctx.mode == "planar":
        return PlanarBatchNorm3d.from_2d(module, axis=ctx.axis)
    return reclass(module, nn.BatchNorm3d)


@_body_only
def convert_max_pool2d(module: nn.MaxPool2d, ctx: ConversionContext) -> nn.Module:
    """MaxPool2d -> PlanarMaxPool3d, or MaxPool3d pooling depth too under depth='pool'/'all'."""
    if not ctx.pool_depth:
        return PlanarMaxPool3d.from_2d(module, axis=ctx.axis)
    v = _same_in_plane(
        module, ctx, kernel_size=module.kernel_size, stride=module.stride,
        padding=module.padding, dilation=module.dilation,
    )
    return nn.MaxPool3d(
        v["kernel_size"], v["stride"], v["padding"], v["dilation"],
        return_indices=module.return_indices, ceil_mode=module.ceil_mode,
    ).train(module.training)


@_body_only
def convert_avg_pool2d(module: nn.AvgPool2d, ctx: ConversionContext) -> nn.Module:
    """AvgPool2d -> PlanarAvgPool3d, or AvgPool3d pooling depth too under depth='pool'/'all'."""
    if not ctx.pool_depth:
        return PlanarAvgPool3d.from_2d(module, axis=ctx.axis)
    v = _same_in_plane(
        module, ctx, kernel_size=module.kernel_size, stride=module.stride, padding=module.padding
    )
    return nn.AvgPool3d(
        v["kernel_size"], v["stride"], v["padding"], ceil_mode=module.ceil_mode,
        count_include_pad=module.count_include_pad, divisor_override=module.divisor_override,
    ).train(module.training)


def convert_adaptive_avg_pool2d(module: nn.AdaptiveAvgPool2d, ctx: ConversionContext):
    """Body: per-slice adaptive pool. Head: the head pool, averaging the planar axis away."""
    if ctx.in_head:
        return HeadAdaptiveAvgPool2d.from_2d(module, axis=ctx.axis)
    return PlanarAdaptiveAvgPool3d.from_2d(module, axis=ctx.axis)


def convert_adaptive_max_pool2d(module: nn.AdaptiveMaxPool2d, ctx: ConversionContext):
    """Body: per-slice adaptive max pool. Head: the head pool, max over the planar axis too."""
    if ctx.in_head:
        return HeadAdaptiveMaxPool2d.from_2d(module, axis=ctx.axis)
    return PlanarAdaptiveMaxPool3d.from_2d(module, axis=ctx.axis)


def convert_last_dim(module: nn.Module, ctx: ConversionContext) -> nn.Module:
    """Layers acting on the last dim (Linear, LayerNorm over it): the same on volumes unless the
    planar axis is W, the last dim of (N, C, D, H, W)."""
    shape = getattr(module, "normalized_shape", (None,))
    if ctx.region == "head" or (ctx.axis != 4 and len(shape) == 1):
        return module
    return fold(module, ctx)


def volume_dim(dim: int, axis: int) -> int:
    """The dim of a (N, C, D, H, W) volume that means what `dim` means for (N, C, H, W)."""
    dim = dim % 4
    return dim if dim < axis else dim + 1


def convert_dim(module: nn.Module, ctx: ConversionContext) -> nn.Module:
    """Layers acting along one dim (GLU, Softmax, LogSoftmax, Softmin): in the body, the same
    layer along the volume dim that means the 2D dim (a GLU over channels stays as it is, a
    softmax over H acts over the volume's H); in a head, slice-wise."""
    dim = getattr(module, "dim", None)
    if ctx.region == "head" or not isinstance(dim, int):
        return fold(module, ctx)
    target = volume_dim(dim, ctx.axis)
    if (dim if dim >= 0 else dim + 5) == target:
        return module
    return reclass(module, type(module), dim=target)


_REGISTRATIONS = {
    nn.Conv2d: convert_conv2d,
    nn.ConvTranspose2d: convert_conv_transpose2d,
    nn.BatchNorm2d: convert_batchnorm2d,
    nn.MaxPool2d: convert_max_pool2d,
    nn.AvgPool2d: convert_avg_pool2d,
    nn.AdaptiveAvgPool2d: convert_adaptive_avg_pool2d,
    nn.AdaptiveMaxPool2d: convert_adaptive_max_pool2d,
    nn.Linear: convert_last_dim,
    nn.LayerNorm: convert_last_dim,
    nn.GLU: convert_dim,
    nn.Softmax: convert_dim,
    nn.LogSoftmax: convert_dim,
    nn.Softmin: convert_dim,
}

# Elementwise, or acting on the channel dim only: the same on a volume as on each slice.
# Elementwise random layers (Dropout, AlphaDropout) draw every element independently, which on
# a volume is one draw per slice.
_KEEP = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink,
    nn.Sigmoid, nn.LogSigmoid, nn.Tanh, nn.Tanhshrink, nn.Softplus, nn.Softsign, nn.Softshrink,
    nn.Threshold, nn.Dropout, nn.AlphaDropout, nn.ChannelShuffle, nn.SyncBatchNorm,
)

# 2D-only or per-slice-statistics layers: run slice by slice. So are random layers whose masks
# have structure (per channel, per sample): run on the slices they draw one mask per slice.
# A Flatten reaching a volume (no global pool before it) flattens each slice.
_FOLD = (
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d,
    nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.PixelShuffle,
    nn.PixelUnshuffle, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm, nn.CrossMapLRN2d,
    nn.FractionalMaxPool2d, nn.LPPool2d, nn.MaxUnpool2d, nn.Softmax2d, nn.Flatten, nn.Unflatten,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.FeatureAlphaDropout,
)
# The same for classes of optional libraries, registered by name (resolved once the library
# is imported, which a model holding them has done).
_FOLD_BY_NAME = (
    "timm.layers.DropPath", "timm.layers.DropBlock2d", "torchvision.ops.StochasticDepth",
    "monai.networks.layers.DropPath",
)

for _type, _converter in _REGISTRATIONS.items():
    register_builtin(_type, _converter)
for _type in _KEEP:
    register_builtin(_type, keep)
for _type in _FOLD:
    register_builtin(_type, fold)
for _name in _FOLD_BY_NAME:
    register_builtin(_name, fold)

"""The functional calls the torch.fx rewrites know, by what they do to a tensor's dims.

The vocabulary of the rule table (`table`): a call is elementwise (the same on a volume as on each
slice, given aligned operands), a reduction over the dims it names, or a 2D window op (pool,
interpolate, pad...) that runs on the slices. Also the shape queries, which answer for the
per-slice (2D) tensor.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

__all__ = [
    "ELEMENTWISE_FUNCTIONS",
    "ELEMENTWISE_METHODS",
    "RANDOM_FUNCTIONS",
    "RANDOM_METHODS",
    "REDUCE_FUNCTIONS",
    "REDUCE_METHODS",
    "WINDOW_FUNCTIONS",
    "planar_shape",
]

ELEMENTWISE_FUNCTIONS = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
    operator.pow, operator.neg, operator.pos, operator.abs, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, operator.eq, operator.ne, operator.lt, operator.le,
    operator.gt, operator.ge, operator.and_, operator.or_, operator.invert,
    torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.pow, torch.maximum,
    torch.minimum, torch.where, torch.sigmoid, torch.tanh, torch.relu, torch.exp, torch.log,
    torch.sqrt, torch.rsqrt, torch.abs, torch.clamp, torch.clip, torch.neg, torch.square,
    torch.erf, torch.sign, torch.lerp, torch.addcmul, torch.addcdiv,
    F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.leaky_relu,
    F.elu, F.selu, F.celu, F.mish, F.softplus, F.dropout, F.alpha_dropout, F.hardtanh,
    F.threshold, F.prelu, F.logsigmoid, F.softsign, F.tanhshrink, F.rrelu,
    # channel-wise: statistics over the batch and every position (train mode) are the 2D
    # statistics over the slices
    F.batch_norm,
)
ELEMENTWISE_METHODS = (
    "add", "sub", "mul", "div", "pow", "sigmoid", "tanh", "relu", "exp", "log", "sqrt", "rsqrt",
    "abs", "neg", "clamp", "clamp_min", "clamp_max", "square", "erf", "sign", "contiguous",
    "clone", "float", "double", "half", "bfloat16", "to", "type_as", "detach", "add_", "mul_",
    "sub_", "div_", "relu_", "sigmoid_", "clamp_", "neg_", "exp_", "masked_fill", "lerp",
    "maximum", "minimum", "addcmul", "addcdiv", "requires_grad_", "__add__", "__mul__",
    "__radd__", "__rmul__", "__sub__", "__rsub__", "__truediv__", "__rtruediv__", "where",
    "tanh_", "hardtanh_", "pow_",
)
REDUCE_FUNCTIONS = (torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var,
                    torch.logsumexp, torch.prod)
REDUCE_METHODS = ("mean", "sum", "amax", "amin", "std", "var", "logsumexp", "prod", "max",
                  "min", "norm")
WINDOW_FUNCTIONS = (
    F.avg_pool2d, F.max_pool2d, F.lp_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
    F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest, F.pixel_shuffle,
    F.pixel_unshuffle, F.group_norm, F.instance_norm, F.local_response_norm, F.conv_transpose2d,
    F.max_pool2d_with_indices, F.fractional_max_pool2d,
)

# Random draws of a shape the code builds itself (a drop-path mask of (B, 1, 1, 1)): per volume
# on a volume, where the reference draws per slice.
RANDOM_FUNCTIONS = (torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal,
                    torch.bernoulli, torch.multinomial, torch.poisson)
RANDOM_METHODS = ("bernoulli", "bernoulli_", "uniform_", "normal_", "exponential_", "random_",
                  "cauchy_", "log_normal_", "geometric_", "multinomial")


def planar_shape(fn, x: torch.Tensor, rest: tuple, kwargs: dict, ins: int):
    """`x.size()`, `x.size(d)`, `x.shape`, `x.dim()`, `x.ndim` of a volume, answered for the
    per-slice (2D) tensor: the planar axis sits before 2D dim `ins`. Returns NotImplemented for
    an attribute with no per-slice answer."""
    sizes = list(x.shape)
    del sizes[ins]
    if fn is getattr:
        name = rest[0]
        if name == "shape":
            return torch.Size(sizes)
        if name == "ndim":
            return 4
        if name in ("dtype", "device", "is_cuda", "requires_grad"):
            return getattr(x, name)
        return NotImplemented
    if fn.__name__ == "dim":
        return 4
    dim = kwargs.get("dim", rest[0] if rest else None)
    return torch.Size(sizes) if dim is None else sizes[dim % 4]

"""torch.fx rewriting of the functional code in a classifier head's forward.

A head's forward may pool with functional code (`F.adaptive_avg_pool2d(x, 1)`, `x.mean((2, 3))`)
that a module swap cannot reach. We trace the module's *own* code (every submodule is a leaf),
and route each functional call through a guard that looks at its tensors at run time:

- no (N, C, D, H, W) volume among them: the original 2D call, unchanged;
- a global or adaptive spatial pool of a volume: the head pool, which also pools the planar axis
  and returns the 2D-shaped result;
- a 2D window op (avg/max pool, interpolate, pad): applied slice by slice;
- an elementwise or channel-wise op: unchanged (it means the same on a volume);
- anything else: `UnsupportedModuleError`, naming the op: never a silent wrong answer.

The traced code replaces the instance's `forward` (one trace per train/eval flag); Python-level
conditions in the forward are fixed at conversion time, which the conversion report says.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten

from ._axis import fold, unfold
from ._fx import _WRAPPERS, call_submodule, rewrite
from ._judge.reference import covers_plane
from ._ops import ELEMENTWISE_FUNCTIONS, ELEMENTWISE_METHODS, planar_shape
from .errors import UnsupportedModuleError

__all__ = ["rewrite_head_forward"]


def _volumes(args, kwargs) -> list[torch.Tensor]:
    return [t for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.dim() == 5]


def _reduce(name: str):
    """mean/amax/amin over the spatial dims of a 2D tensor: the head pool.

    A volume reaching the head holds the 2D tensor's dims with the slices inserted at dim 2
    (before H in NCHW, between H and W in channels-last NHWC code). A reduction over two or more
    2D dims that include the one the slices sit before (H in NCHW, W in NHWC) pools the slices
    too, and the result has the 2D result's shape.
    """
    def rule(fn, axis, x, *args, **kwargs):
        dims = kwargs.pop("dim", args[0] if args else None)
        keepdim = kwargs.pop("keepdim", args[1] if len(args) > 1 else False)
        if dims is None or kwargs:
            return None
        dims = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims)}
        if axis != 2 or len(dims) < 2 or 2 not in dims:
            return None
        out = getattr(torch, name)(x, dim=tuple(sorted({d if d < 2 else d + 1 for d in dims}
                                                       | {2})), keepdim=keepdim)
        return out.squeeze(2) if keepdim else out
    return rule


def _adaptive(fn3d):
    def rule(fn, axis, x, output_size, *args, **kwargs):
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        size3d = list(size)
        size3d.insert(axis - 2, 1)
        out = fn3d(x, size3d, *args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.squeeze(axis) for o in out)
        return out.squeeze(axis)
    return rule


def _per_slice(fn, axis, x, *args, **kwargs):
    out = fn(fold(x, axis), *args, **kwargs)
    if isinstance(out, tuple):
        return tuple(unfold(o, x.shape[0], axis) for o in out)
    return unfold(out, x.shape[0], axis)


def _window(reduction: str):
    """avg/max pool: per slice; a window covering the whole plane (GeM's
    `F.avg_pool2d(x, x.shape[-2:])`) is a global pool, so it pools the planar axis too."""
    def rule(fn, axis, x, *args, **kwargs):
        out = _per_slice(fn, axis, x, *args, **kwargs)
        if isinstance(out, tuple) or not covers_plane(fold(x, axis), out):
            return out
        return getattr(out, reduction)(axis)
    return rule


def _passthrough(fn, axis, *args, **kwargs):
    return fn(*args, **kwargs)


def _shape(fn, axis, x, *rest, **kwargs):
    """Shape queries answer for the 2D tensor the volume stands for (None: no such answer)."""
    out = planar_shape(fn, x, rest, kwargs, axis)
    return None if out is NotImplemented else out


def _leading_dims_only(fn, axis, x, index, *rest):
    """x[...] touching only the batch and channel dims means the same on a volume."""
    items = index if isinstance(index, tuple) else (index,)
    if len(items) > 2 or any(i is Ellipsis or i is None or isinstance(i, torch.Tensor)
                             for i in items):
        return None
    return fn(x, index)


def _leading_dim_arg(position: int, default):
    def rule(fn, axis, *args, **kwargs):
        dim = kwargs.get("dim", args[position] if len(args) > position else default)
        return fn(*args, **kwargs) if dim in (0, 1) else None
    return rule


_FUNCTION_RULES: dict[Any, Callable] = {
    F.adaptive_avg_pool2d: _adaptive(F.adaptive_avg_pool3d),
    F.adaptive_max_pool2d: _adaptive(F.adaptive_max_pool3d),
    torch.mean: _reduce("mean"),
    torch.amax: _reduce("amax"),
    torch.amin: _reduce("amin"),
    F.avg_pool2d: _window("mean"),
    F.max_pool2d: _window("amax"),
    F.lp_pool2d: _per_slice,
    F.interpolate: _per_slice,
    F.pad: _per_slice,
    operator.getitem: _leading_dims_only,
    torch.cat: _leading_dim_arg(1, 0),
    torch.concat: _leading_dim_arg(1, 0),
    torch.chunk: _leading_dim_arg(2, 0),
    torch.split: _leading_dim_arg(2, 0),
}
_FUNCTION_RULES.update({f: _passthrough for f in ELEMENTWISE_FUNCTIONS})
_FUNCTION_RULES[getattr] = _shape

_METHOD_RULES: dict[str, Callable] = {
    "mean": _reduce("mean"),
    "amax": _reduce("amax"),
    "amin": _reduce("amin"),
    "chunk": _leading_dim_arg(2, 0),
    "split": _leading_dim_arg(2, 0),
    "size": lambda fn, axis, x, *a, **k: _shape(fn, axis, x, *a, **k),
    "dim": lambda fn, axis, x, *a, **k: _shape(fn, axis, x, *a, **k),
}
_METHOD_RULES.update({m: _passthrough for m in ELEMENTWISE_METHODS})


def _guard(path: str, owner: str, label: str, fn: Callable, rule: Callable | None, axis: int):
    def guarded(*args, **kwargs):
        if not _volumes(args, kwargs):
            return fn(*args, **kwargs)
        out = rule(fn, axis, *args, **kwargs) if rule is not None else None
        if out is None:
            raise UnsupportedModuleError(
                path, owner,
                f"its forward calls `{label}` on a (N, C, D, H, W) volume before the head has "
                f"pooled the planar axis, and that call has no defined planar meaning",
                "pool the features with a global pool first, or register a converter for "
                f"{owner} (planar3d.register_converter)",
            )
        return out

    guarded.__name__ = "planar3d_" + "".join(c if c.isalnum() else "_" for c in label)
    return guarded


def _head_wrapper(module: nn.Module, axis: int, path: str) -> Callable:
    owner = type(module).__name__

    def wrap(label: str, fn: Callable) -> Callable:
        if fn is call_submodule:
            return fn
        rule = _METHOD_RULES.get(label[len("Tensor."):]) if label.startswith("Tensor.") else (
            _FUNCTION_RULES.get(fn))
        return _guard(path, owner, label, fn, rule, axis)

    return wrap


_WRAPPERS["head"] = _head_wrapper


def rewrite_head_forward(module: nn.Module, *, axis: int, path: str) -> list[str]:
    """Rewrite `module`'s forward (in place) so its functional calls go through head guards.

    Returns:
        The functional calls that now go through guards (for the conversion report).
    Raises:
        UnsupportedModuleError: if the forward cannot be traced.
    """
    try:
        return rewrite(module, kind="head", axis=axis, path=path)
    except Exception as error:
        raise UnsupportedModuleError(
            path, type(module).__name__,
            f"its forward needs rewriting (it applies 2D-only functional code to volumes) but "
            f"cannot be traced by torch.fx ({type(error).__name__}: {error})",
            f"register a converter for {type(module).__name__} (planar3d.register_converter)",
        ) from error

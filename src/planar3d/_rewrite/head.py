"""The head's rules: a classifier head's functional pooling is the head pool.

A head's forward may pool with functional code (`F.adaptive_avg_pool2d(x, 1)`, `x.mean((2, 3))`)
that a module swap cannot reach. In a head rewrite, each functional call on a volume means:

- a global or adaptive spatial pool: the head pool, which also pools the planar axis and
  returns the 2D-shaped result (what counts as a global pool is the reference's definition,
  `_judge.pools.global_pool_kind`);
- a 2D window op (avg/max pool, interpolate, pad): applied slice by slice;
- an elementwise or channel-wise op: unchanged (it means the same on a volume);
- anything else: `UnsupportedModuleError`, naming the op: never a silent wrong answer.

Python-level conditions in the forward are fixed when it is traced, which the conversion report
says. Every rule follows `contract`; `table` says which call gets which.
"""

from __future__ import annotations

import torch

from .._axis import fold, unfold
from .._judge.pools import covers_plane
from .._state import type_name
from ..errors import UnsupportedModuleError
from .contract import NoPlanarMeaning, Rule, Site
from .ops import planar_shape

__all__ = ["adaptive", "leading_dim_arg", "leading_dims_only", "per_slice", "reduce", "refuse",
           "shape", "unchanged", "window"]


def refuse(site: Site, label: str, error: NoPlanarMeaning) -> Exception:
    """A head call without planar meaning: the conversion of the head is refused."""
    owner = type_name(site.module)
    return UnsupportedModuleError(
        site.path, owner,
        f"its forward calls `{label}` on a (N, C, D, H, W) volume before the head has "
        f"pooled the planar axis, and that call has no defined planar meaning",
        "pool the features with a global pool first, or register a converter for "
        f"{owner} (planar3d.register_converter)",
    )


def reduce(name: str) -> Rule:
    """mean/amax/amin over the spatial dims of a 2D tensor: the head pool.

    A volume reaching the head holds the 2D tensor's dims with the slices inserted at dim 2
    (before H in NCHW, between H and W in channels-last NHWC code). A reduction over two or more
    2D dims that include the one the slices sit before (H in NCHW, W in NHWC) pools the slices
    too, and the result has the 2D result's shape.
    """
    def rule(site: Site, fn, args, kwargs):
        x, rest, kwargs = args[0], args[1:], dict(kwargs)
        dims = kwargs.pop("dim", rest[0] if rest else None)
        keepdim = kwargs.pop("keepdim", rest[1] if len(rest) > 1 else False)
        if dims is None or kwargs:
            raise NoPlanarMeaning("not a reduction over given dims")
        dims = {d % 4 for d in ((dims,) if isinstance(dims, int) else dims)}
        if site.axis != 2 or len(dims) < 2 or 2 not in dims:
            raise NoPlanarMeaning("not a reduction over the plane")
        out = getattr(torch, name)(x, dim=tuple(sorted({d if d < 2 else d + 1 for d in dims}
                                                       | {2})), keepdim=keepdim)
        return out.squeeze(2) if keepdim else out
    return rule


def adaptive(fn3d) -> Rule:
    """An adaptive pool: `fn3d` with output size 1 along the planar axis (the head pool)."""
    def rule(site: Site, fn, args, kwargs):
        axis, kwargs = site.axis, dict(kwargs)
        x, rest = args[0], list(args[1:])
        output_size = rest.pop(0) if rest else kwargs.pop("output_size")
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        size3d = list(size)
        size3d.insert(axis - 2, 1)
        out = fn3d(x, size3d, *rest, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.squeeze(axis) for o in out)
        return out.squeeze(axis)
    return rule


def per_slice(site: Site, fn, args, kwargs):
    x, axis = args[0], site.axis
    out = fn(fold(x, axis), *args[1:], **kwargs)
    if isinstance(out, tuple):
        return tuple(unfold(o, x.shape[0], axis) for o in out)
    return unfold(out, x.shape[0], axis)


def window(reduction: str) -> Rule:
    """avg/max pool: per slice; a window covering the whole plane (GeM's
    `F.avg_pool2d(x, x.shape[-2:])`) is a global pool, so it pools the planar axis too."""
    def rule(site: Site, fn, args, kwargs):
        out = per_slice(site, fn, args, kwargs)
        if isinstance(out, tuple) or not covers_plane(fold(args[0], site.axis), out):
            return out
        return getattr(out, reduction)(site.axis)
    return rule


def unchanged(site: Site, fn, args, kwargs):
    """Elementwise and channel-wise calls mean the same on a volume."""
    return fn(*args, **kwargs)


def shape(site: Site, fn, args, kwargs):
    """Shape queries answer for the 2D tensor the volume stands for."""
    out = planar_shape(fn, args[0], args[1:], kwargs, site.axis)
    if out is NotImplemented:
        raise NoPlanarMeaning(f"attribute {args[1]!r} of a volume")
    return out


def leading_dims_only(site: Site, fn, args, kwargs):
    """x[...] touching only the batch and channel dims means the same on a volume."""
    x, index = args[0], args[1]
    items = index if isinstance(index, tuple) else (index,)
    if len(items) > 2 or any(i is Ellipsis or i is None or isinstance(i, torch.Tensor)
                             for i in items):
        raise NoPlanarMeaning("indexing beyond the batch and channel dims")
    return fn(x, index)


def leading_dim_arg(position: int, default: int) -> Rule:
    """cat/split/chunk along the batch or channel dim (argument `position`, or keyword `dim`,
    else `default`) mean the same on a volume."""
    def rule(site: Site, fn, args, kwargs):
        dim = kwargs.get("dim", args[position] if len(args) > position else default)
        if dim not in (0, 1):
            raise NoPlanarMeaning("along a 2D dim")
        return fn(*args, **kwargs)
    return rule

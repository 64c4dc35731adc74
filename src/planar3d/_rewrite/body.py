"""The body's rules: per-slice meaning for 2D functional code (every mode).

A module whose forward applies 2D-only functional code (an SE block's `x.mean((2, 3))`, ConvNeXt's
`permute(0, 2, 3, 1)` around a LayerNorm, timm's `F.conv2d` inside StdConv2d/Conv2dSame) cannot
run on volumes as it is. Folding it runs its 2D forward per slice, but then its convolutions stay
planar; a body rewrite instead keeps its children (thick kernels in the center/inflate/acs modes)
and gives each functional call the per-slice meaning:

    functional code never mixes slices: every reduction, permutation, concatenation and
    indexing acts on the 2D dims of each slice; the planar axis rides along.

So an SE block squeezes each slice (its planar output is exactly the folded one, and the centre
mode still equals planar at initialisation, docs/design.md P3). The position of the planar axis is
tracked through permutations (NHWC code); 2D window ops (pools, interpolate, pad) run on the
folded slices; `F.conv2d` uses the mode's kernels (`_mode_kernels`). A call with no defined
per-slice meaning (reshapes, matmuls of flattened volumes...) raises `NoPlanarMeaning`, and the
caller folds the module instead. Every rule follows `contract`; `table` says which call gets
which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from .._axis import fold, unfold
from .._mode_kernels import ModeKernels
from .._state import state
from .contract import NoPlanarMeaning, Rule, Site, is_volume, on_any_input, volumes
from .ops import planar_shape

__all__ = [
    "along_dim", "conv2d", "elementwise", "getitem", "last_dims", "pad", "per_slice", "permute",
    "random_draw", "reduce", "refuse", "shape", "submodule", "transpose",
]

# the tag on a volume whose planar axis sits elsewhere than at the site's axis (see _Layout)
_TAG = "_planar3d_ins"


class _Layout:
    """Where the planar axis sits: inserted before 2D dim `ins` of the per-slice tensor."""

    @staticmethod
    def of(t: torch.Tensor, axis: int) -> int:
        return getattr(t, _TAG, axis)

    @staticmethod
    def tag(t, ins: int, axis: int):
        if isinstance(t, torch.Tensor) and t.dim() == 5:
            if ins == axis:
                t.__dict__.pop(_TAG, None)
            else:
                setattr(t, _TAG, ins)
        return t


def _dim3(i: int, ins: int) -> int:
    i = i % 4
    return i if i < ins else i + 1


def _common_layout(args, kwargs, axis: int) -> int:
    layouts = {_Layout.of(v, axis) for v in volumes(args, kwargs)}
    if len(layouts) != 1:
        raise NoPlanarMeaning("volumes with different layouts meet in one call")
    return layouts.pop()


def _broadcastable(t, ins: int):
    """Align a 2D-shaped operand with a volume: insert the planar dim where it belongs."""
    if isinstance(t, torch.Tensor) and not is_volume(t) and t.dim() > 4 - ins:
        if t.dim() > 4:
            raise NoPlanarMeaning(f"a {t.dim()}-D operand meets a volume")
        return t.unsqueeze(ins - (4 - t.dim()))
    return t


def _dims(dims, ins: int):
    if dims is None:
        raise NoPlanarMeaning("a reduction over all dims would also reduce the planar axis")
    if isinstance(dims, int):
        return _dim3(dims, ins)
    return tuple(_dim3(d, ins) for d in dims)


def refuse(site: Site, label: str, error: NoPlanarMeaning) -> Exception:
    """A body call without per-slice meaning fails as it is (the walk then folds the module)."""
    return error


# -- the rules ----------------------------------------------------------------------------------
def elementwise(site: Site, fn, args, kwargs):
    ins = _common_layout(args, kwargs, site.axis)
    args = tree_map(lambda t: _broadcastable(t, ins), args)
    kwargs = tree_map(lambda t: _broadcastable(t, ins), kwargs)
    return tree_map(lambda t: _Layout.tag(t, ins, site.axis), fn(*args, **kwargs))


def reduce(site: Site, fn, args, kwargs):
    x, rest = args[0], list(args[1:])
    ins = _Layout.of(x, site.axis)
    if "dim" in kwargs:
        kwargs = {**kwargs, "dim": _dims(kwargs["dim"], ins)}
    elif rest:
        rest[0] = _dims(rest[0], ins)
    else:
        raise NoPlanarMeaning("a reduction over all dims would also reduce the planar axis")
    out = fn(x, *rest, **kwargs)
    for t in tree_flatten(out)[0]:
        if isinstance(t, torch.Tensor) and t.dim() != 5:
            raise NoPlanarMeaning("a reduction without keepdim=True drops 2D dims")
    return tree_map(lambda t: _Layout.tag(t, ins, site.axis), out)


def permute(site: Site, fn, args, kwargs):
    x = args[0]
    order = args[1:] if len(args) > 2 else (args[1] if len(args) > 1 else kwargs["dims"])
    order = [d % 4 for d in order]
    if sorted(order) != [0, 1, 2, 3]:
        raise NoPlanarMeaning("not a permutation of 4 dims")
    return _permuted(site, x, order)


def transpose(site: Site, fn, args, kwargs):
    x, a, b = args[0], args[1] % 4, args[2] % 4
    order = [0, 1, 2, 3]
    order[a], order[b] = order[b], order[a]
    return _permuted(site, x, order)


def _permuted(site: Site, x, order):
    ins = _Layout.of(x, site.axis)
    new_ins = order.index(ins) if ins < 4 else 4
    dims = [_dim3(d, ins) for d in order]
    dims.insert(new_ins, ins)
    return _Layout.tag(x.permute(*dims), new_ins, site.axis)


def along_dim(position: int, default: int = 0) -> Rule:
    """cat/split/chunk/softmax...: the dim argument (at `position`, or keyword `dim`, else
    `default`) maps to the volume's dim."""
    def rule(site: Site, fn, args, kwargs):
        ins = _common_layout(args, kwargs, site.axis)
        args = list(args)
        if "dim" in kwargs:
            kwargs = {**kwargs, "dim": _dim3(kwargs["dim"], ins)}
        elif len(args) > position:
            args[position] = _dim3(args[position], ins)
        else:
            kwargs = {**kwargs, "dim": _dim3(default, ins)}
        return tree_map(lambda t: _Layout.tag(t, ins, site.axis), fn(*args, **kwargs))
    return rule


def getitem(site: Site, fn, args, kwargs):
    x, index = args
    if not is_volume(x):
        return fn(x, index)
    ins = _Layout.of(x, site.axis)
    items = list(index) if isinstance(index, tuple) else [index]
    if any(not isinstance(i, slice) for i in items) or len(items) > 4:
        raise NoPlanarMeaning("indexing that drops or adds dims")
    items += [slice(None)] * (4 - len(items))
    items.insert(ins, slice(None))
    return _Layout.tag(x[tuple(items)], ins, site.axis)


def shape(site: Site, fn, args, kwargs):
    """size()/shape/dim()/ndim answer for the per-slice (2D) tensor."""
    x, rest = args[0], args[1:]
    out = planar_shape(fn, x, rest, kwargs, _Layout.of(x, site.axis))
    if out is NotImplemented:
        raise NoPlanarMeaning(f"attribute {rest[0]!r} of a volume")
    return out


def per_slice(site: Site, fn, args, kwargs):
    """2D window ops (pools, interpolate, pad, norms over H, W): on the folded slices."""
    x = args[0]
    if _Layout.of(x, site.axis) != site.axis:
        raise NoPlanarMeaning("a 2D window op on a permuted volume")
    n = x.shape[0]
    out = fn(fold(x, site.axis), *args[1:], **kwargs)
    return tree_map(lambda t: unfold(t, n, site.axis) if isinstance(t, torch.Tensor) else t,
                    out)


def pad(site: Site, fn, args, kwargs):
    x, amounts = args[0], args[1] if len(args) > 1 else kwargs["pad"]
    ins = _Layout.of(x, site.axis)
    if ins < 4 - len(amounts) // 2:  # the padded trailing dims do not include the axis
        return _Layout.tag(fn(*args, **kwargs), ins, site.axis)
    return per_slice(site, fn, args, kwargs)


def last_dims(count: Callable[[tuple, dict], int]) -> Rule:
    """F.linear / F.layer_norm act on the last `count(args, kwargs)` dims: fine while the
    planar axis is not among them."""
    def rule(site: Site, fn, args, kwargs):
        x = args[0]
        ins = _Layout.of(x, site.axis)
        if ins > 4 - count(args, kwargs):
            raise NoPlanarMeaning("the planar axis is among the dims this call acts on")
        return _Layout.tag(fn(*args, **kwargs), ins, site.axis)
    return rule


def conv2d(site: Site, fn, args, kwargs):
    """F.conv2d on a volume: the mode's kernels (planar: per slice)."""
    x, weight = args[0], args[1]
    names = ("bias", "stride", "padding", "dilation", "groups")
    params: dict[str, Any] = dict(zip(names, (None, 1, 0, 1, 1)))
    params.update(zip(names, args[2:]))
    params.update(kwargs)
    kernels = state(site.module).kernels or ModeKernels()
    if _Layout.of(x, site.axis) != site.axis:
        raise NoPlanarMeaning("a convolution of a permuted volume")
    padding = params["padding"]
    padding = padding if isinstance(padding, str) else nn.modules.utils._pair(padding)
    kind = kernels.kind(tuple(weight.shape[2:]), padding,
                        nn.modules.utils._pair(params["dilation"]))
    if kind == "planar":
        return per_slice(site, fn, args, kwargs)
    return kernels.conv3d(x, weight, params["bias"], params["stride"], padding,
                          params["dilation"], params["groups"], axis=site.axis)


@on_any_input
def submodule(site: Site, fn, args, kwargs):
    """Children run on volumes; a permuted volume keeps its layout through them."""
    child, rest = args[0], args[1:]
    ins = _common_layout(rest, kwargs, site.axis) if volumes(rest, kwargs) else site.axis
    out = fn(child, *rest, **kwargs)
    return tree_map(lambda t: _Layout.tag(t, ins, site.axis), out)


def random_draw(label: str) -> Rule:
    """A random draw of a shape the code builds itself (a drop-path mask of (B, 1, 1, 1)):
    per volume on a volume, where the reference draws per slice."""
    @on_any_input
    def rule(site: Site, fn, args, kwargs):
        raise NoPlanarMeaning(f"`{label}` draws random numbers of a shape of its own")
    return rule

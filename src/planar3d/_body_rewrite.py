"""torch.fx rewriting of 2D functional code in the body of a network, for every mode.

A module whose forward applies 2D-only functional code (an SE block's `x.mean((2, 3))`, ConvNeXt's
`permute(0, 2, 3, 1)` around a LayerNorm, timm's `F.conv2d` inside StdConv2d/Conv2dSame) cannot
run on volumes as it is. Folding it runs its 2D forward per slice, but then its convolutions stay
planar; this rewrite instead keeps its children (thick kernels in the center/inflate/acs modes)
and gives each functional call the per-slice meaning:

    functional code never mixes slices: every reduction, permutation, concatenation and
    indexing acts on the 2D dims of each slice; the planar axis rides along.

So an SE block squeezes each slice (its planar output is exactly the folded one, and the centre
mode still equals planar at initialisation, docs/design.md P3). The position of the planar axis is
tracked through permutations (NHWC code); 2D window ops (pools, interpolate, pad) run on the
folded slices; `F.conv2d` uses the mode's kernels. Calls with no defined per-slice meaning
(reshapes, matmuls of flattened volumes...) make the rewrite fail, and the caller folds instead.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from ._axis import fold, unfold
from ._fx import _WRAPPERS, call_submodule, rewrite, rewrite_kind
from ._mode_kernels import ModeKernels
from ._ops import (
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_METHODS,
    RANDOM_FUNCTIONS,
    RANDOM_METHODS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    WINDOW_FUNCTIONS,
    planar_shape,
)
from .layers._state import state_of

__all__ = ["NoPlanarMeaning", "rewrite_body_forward", "set_kernels"]

# the tag on a volume whose planar axis sits elsewhere than at `axis` (see _Layout)
_TAG = "_planar3d_ins"


class NoPlanarMeaning(RuntimeError):
    """A functional call in a rewritten forward has no per-slice meaning."""


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


def _is_volume(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 5


def _volumes(args, kwargs) -> list[torch.Tensor]:
    return [t for t in tree_flatten((args, kwargs))[0] if _is_volume(t)]


def _common_layout(args, kwargs, axis: int) -> int:
    layouts = {_Layout.of(v, axis) for v in _volumes(args, kwargs)}
    if len(layouts) != 1:
        raise NoPlanarMeaning("volumes with different layouts meet in one call")
    return layouts.pop()


class _Rules:
    """Per-call rules; each returns the result or raises NoPlanarMeaning."""

    def __init__(self, module: nn.Module, axis: int) -> None:
        self.module = module
        self.axis = axis

    # -- helpers ---------------------------------------------------------------------------
    def broadcastable(self, t, ins: int):
        """Align a 2D-shaped operand with a volume: insert the planar dim where it belongs."""
        if isinstance(t, torch.Tensor) and not _is_volume(t) and t.dim() > 4 - ins:
            if t.dim() > 4:
                raise NoPlanarMeaning(f"a {t.dim()}-D operand meets a volume")
            return t.unsqueeze(ins - (4 - t.dim()))
        return t

    def dims(self, dims, ins: int):
        if dims is None:
            raise NoPlanarMeaning("a reduction over all dims would also reduce the planar axis")
        if isinstance(dims, int):
            return _dim3(dims, ins)
        return tuple(_dim3(d, ins) for d in dims)

    # -- rule kinds --------------------------------------------------------------------------
    def elementwise(self, fn, args, kwargs):
        ins = _common_layout(args, kwargs, self.axis)
        args = tree_map(lambda t: self.broadcastable(t, ins), args)
        kwargs = tree_map(lambda t: self.broadcastable(t, ins), kwargs)
        return tree_map(lambda t: _Layout.tag(t, ins, self.axis), fn(*args, **kwargs))

    def reduce(self, fn, args, kwargs, position: int = 0):
        x, rest = args[0], list(args[1:])
        ins = _Layout.of(x, self.axis)
        if "dim" in kwargs:
            kwargs = {**kwargs, "dim": self.dims(kwargs["dim"], ins)}
        elif len(rest) > position:
            rest[position] = self.dims(rest[position], ins)
        else:
            raise NoPlanarMeaning("a reduction over all dims would also reduce the planar axis")
        out = fn(x, *rest, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dim() != 5:
                raise NoPlanarMeaning("a reduction without keepdim=True drops 2D dims")
        return tree_map(lambda t: _Layout.tag(t, ins, self.axis), out)

    def permute(self, fn, args, kwargs):
        x = args[0]
        order = args[1:] if len(args) > 2 else (args[1] if len(args) > 1 else kwargs["dims"])
        order = [d % 4 for d in order]
        if sorted(order) != [0, 1, 2, 3]:
            raise NoPlanarMeaning("not a permutation of 4 dims")
        return self._permuted(x, order)

    def transpose(self, fn, args, kwargs):
        x, a, b = args[0], args[1] % 4, args[2] % 4
        order = [0, 1, 2, 3]
        order[a], order[b] = order[b], order[a]
        return self._permuted(x, order)

    def _permuted(self, x, order):
        ins = _Layout.of(x, self.axis)
        new_ins = order.index(ins) if ins < 4 else 4
        dims = [_dim3(d, ins) for d in order]
        dims.insert(new_ins, ins)
        return _Layout.tag(x.permute(*dims), new_ins, self.axis)

    def along_dim(self, fn, args, kwargs, position: int, default: int = 0):
        """cat/split/chunk/softmax...: the dim argument maps to the volume's dim."""
        ins = _common_layout(args, kwargs, self.axis)
        args = list(args)
        if "dim" in kwargs:
            kwargs = {**kwargs, "dim": _dim3(kwargs["dim"], ins)}
        elif len(args) > position:
            args[position] = _dim3(args[position], ins)
        else:
            kwargs = {**kwargs, "dim": _dim3(default, ins)}
        return tree_map(lambda t: _Layout.tag(t, ins, self.axis), fn(*args, **kwargs))

    def getitem(self, fn, args, kwargs):
        x, index = args
        if not _is_volume(x):
            return fn(x, index)
        ins = _Layout.of(x, self.axis)
        items = list(index) if isinstance(index, tuple) else [index]
        if any(not isinstance(i, slice) for i in items) or len(items) > 4:
            raise NoPlanarMeaning("indexing that drops or adds dims")
        items += [slice(None)] * (4 - len(items))
        items.insert(ins, slice(None))
        return _Layout.tag(x[tuple(items)], ins, self.axis)

    def shape(self, fn, args, kwargs):
        """size()/shape/dim()/ndim answer for the per-slice (2D) tensor."""
        x, rest = args[0], args[1:]
        out = planar_shape(fn, x, rest, kwargs, _Layout.of(x, self.axis))
        if out is NotImplemented:
            raise NoPlanarMeaning(f"attribute {rest[0]!r} of a volume")
        return out

    def per_slice(self, fn, args, kwargs):
        """2D window ops (pools, interpolate, pad, norms over H, W): on the folded slices."""
        x = args[0]
        if _Layout.of(x, self.axis) != self.axis:
            raise NoPlanarMeaning("a 2D window op on a permuted volume")
        n = x.shape[0]
        out = fn(fold(x, self.axis), *args[1:], **kwargs)
        return tree_map(lambda t: unfold(t, n, self.axis) if isinstance(t, torch.Tensor) else t,
                        out)

    def pad(self, fn, args, kwargs):
        x, amounts = args[0], args[1] if len(args) > 1 else kwargs["pad"]
        ins = _Layout.of(x, self.axis)
        if ins < 4 - len(amounts) // 2:  # the padded trailing dims do not include the axis
            return _Layout.tag(fn(*args, **kwargs), ins, self.axis)
        return self.per_slice(fn, args, kwargs)

    def last_dims(self, fn, args, kwargs, count: Callable):
        """F.linear / F.layer_norm act on the last dims: fine while the axis is not among them."""
        x = args[0]
        ins = _Layout.of(x, self.axis)
        if ins > 4 - count(args, kwargs):
            raise NoPlanarMeaning("the planar axis is among the dims this call acts on")
        return _Layout.tag(fn(*args, **kwargs), ins, self.axis)

    def conv2d(self, fn, args, kwargs):
        """F.conv2d on a volume: the mode's kernels (planar: per slice)."""
        x, weight = args[0], args[1]
        names = ("bias", "stride", "padding", "dilation", "groups")
        params = dict(zip(names, (None, 1, 0, 1, 1)))
        params.update(zip(names, args[2:]))
        params.update(kwargs)
        kernels = state_of(self.module).kernels or ModeKernels()
        if _Layout.of(x, self.axis) != self.axis:
            raise NoPlanarMeaning("a convolution of a permuted volume")
        padding = params["padding"]
        padding = padding if isinstance(padding, str) else nn.modules.utils._pair(padding)
        kind = kernels.kind(tuple(weight.shape[2:]), padding,
                            nn.modules.utils._pair(params["dilation"]))
        if kind == "planar":
            return self.per_slice(fn, args, kwargs)
        return kernels.conv3d(x, weight, params["bias"], params["stride"], padding,
                              params["dilation"], params["groups"], axis=self.axis)

    def submodule(self, fn, args, kwargs):
        """Children run on volumes; a permuted volume keeps its layout through them."""
        submodule, rest = args[0], args[1:]
        ins = _common_layout(rest, kwargs, self.axis) if _volumes(rest, kwargs) else self.axis
        out = fn(submodule, *rest, **kwargs)
        return tree_map(lambda t: _Layout.tag(t, ins, self.axis), out)


def _build_table(rules: _Rules) -> tuple[dict, dict]:
    functions: dict = {f: rules.elementwise for f in ELEMENTWISE_FUNCTIONS}
    functions.update({f: rules.reduce for f in REDUCE_FUNCTIONS})
    functions.update({f: rules.per_slice for f in WINDOW_FUNCTIONS})
    functions.update({
        torch.permute: rules.permute,
        torch.transpose: rules.transpose,
        torch.cat: lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        torch.concat: lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        torch.split: lambda fn, a, k: rules.along_dim(fn, a, k, 2),
        torch.chunk: lambda fn, a, k: rules.along_dim(fn, a, k, 2),
        torch.softmax: lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        F.softmax: lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        F.log_softmax: lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        F.normalize: lambda fn, a, k: rules.along_dim(fn, a, k, 2, default=1),
        F.pad: rules.pad,
        F.conv2d: rules.conv2d,
        F.batch_norm: rules.elementwise,
        F.linear: lambda fn, a, k: rules.last_dims(fn, a, k, lambda *_: 1),
        F.layer_norm: lambda fn, a, k: rules.last_dims(
            fn, a, k, lambda args, kwargs: len(kwargs.get("normalized_shape", args[1]))),
        operator.getitem: rules.getitem,
        getattr: rules.shape,
        call_submodule: rules.submodule,
    })
    methods: dict = {m: rules.elementwise for m in ELEMENTWISE_METHODS}
    methods.update({m: rules.reduce for m in REDUCE_METHODS})
    methods.update({
        "permute": rules.permute,
        "transpose": rules.transpose,
        "split": lambda fn, a, k: rules.along_dim(fn, a, k, 2),
        "chunk": lambda fn, a, k: rules.along_dim(fn, a, k, 2),
        "softmax": lambda fn, a, k: rules.along_dim(fn, a, k, 1),
        "size": rules.shape,
        "dim": rules.shape,
    })
    return functions, methods


def _body_wrapper(module: nn.Module, axis: int, path: str) -> Callable:
    rules = _Rules(module, axis)
    functions, methods = _build_table(rules)

    def wrap(label: str, fn: Callable) -> Callable:
        if label.startswith("Tensor."):
            rule = methods.get(label[len("Tensor."):])
            draws = label[len("Tensor."):] in RANDOM_METHODS
        else:
            rule = functions.get(fn)
            draws = fn in RANDOM_FUNCTIONS

        def guarded(*args, **kwargs):
            if draws:  # a mask of its own shape: per volume, where the reference draws per slice
                raise NoPlanarMeaning(f"`{label}` draws random numbers of a shape of its own")
            if fn is not call_submodule and not _volumes(args, kwargs):
                return fn(*args, **kwargs)
            if rule is None:
                raise NoPlanarMeaning(f"`{label}` on a volume")
            return rule(fn, args, kwargs)

        guarded.__name__ = "planar3d_" + "".join(c if c.isalnum() else "_" for c in label)
        return guarded

    return wrap


_WRAPPERS["body"] = _body_wrapper


def rewrite_body_forward(module: nn.Module, *, axis: int, path: str) -> list[str]:
    """Give `module` (in place) a traced forward in which 2D functional code acts per slice.

    `set_kernels(module, kernels)` chooses how its `F.conv2d` calls
    convolve (default planar: per slice). A call with no per-slice meaning raises
    `NoPlanarMeaning` when it runs.

    Returns:
        Names of the functional calls that are now guarded.
    Raises:
        Exception: whatever torch.fx raises when the forward cannot be traced.
    """
    return rewrite(module, kind="body", axis=axis, path=path)


def set_kernels(module: nn.Module, kernels: ModeKernels) -> None:
    """Make the `F.conv2d` calls of a body-rewritten module use `kernels` (a mode's)."""
    if rewrite_kind(module) == "body":
        state_of(module).kernels = kernels

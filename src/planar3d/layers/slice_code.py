"""Slice code: a module's own code runs on the stacked slices while its children run on volumes.

`slice_code_module(m)` gives `m` a class derived from its own (`SliceCode<Type>`, as folding
gives `Folded<Type>`) whose forward, and whose public `forward_*` methods and
`get_intermediate_layers`:

1. fold every volume argument into its per-slice tensor (`_axis.fold`: (N, C, D, H, W) ->
   (N·D, C, H, W), token volumes (N, S, L, C) -> (N·S, L, C));
2. run the module's own 2D code on them: its functional code (`B, N, C = x.shape`, the class
   token's `expand` and `torch.cat`, position embeddings, reshapes) is exactly the 2D network's
   on the N·S stacked slices, the reference (docs/design.md P0);
3. give the descendants that code calls (its children, grandchildren it calls itself as in
   `for blk in self.blocks`, and the children of a child whose method it calls directly, whose
   code then runs as its own) their per-slice arguments *lifted* back into volumes when they are
   `lifted` (converted 3D modules: thick kernels, depth layers), and fold their volume results
   back; others run their 2D code on the per-slice tensors;
4. lay the per-slice results out as volumes on return.

Which tensors are per-slice is tracked through the call, never guessed from sizes
(`_slice_run.SliceRun`). With `head=True` the module is a classifier's head whose code pools:
the first op that pools the positions of a per-slice tensor (`_judge.pools`) merges the slices
of each volume (a class token is averaged over the slices, a mean over tokens becomes the mean
over the tokens of all slices), and what follows is the 2D head on one row per volume.

Folding is slice code whose children are all 2D; slice code keeps them 3D. Hooks and the mode
exist only during a call (nothing persists in the model, which deep-copies and pickles as any
module). A descendant called with per-slice tensors outside such a call (activation
checkpointing recomputing it in backward) meets a 3D module and fails loudly.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from .._axis import TOKEN_RANK, axis_name, drop, fold, unfold
from .._containers import flatten, map_leaves
from .._state import PlanarState, copy_derived, original_type, reduce_derived, state, type_name
from ._slice_run import SliceRun, lifted_without_slices, reachable, runs

__all__ = ["is_slice_code", "lifted_paths", "lifted_without_slices", "slice_code_module"]

# the public methods of a 2D class that take tensors, besides forward: timm's feature API
_METHOD_PREFIX = "forward_"
_METHODS = ("get_intermediate_layers",)


def _size_error(module: nn.Module, record: PlanarState, args, kwargs, error: Exception):
    """A ValueError explaining a failure on slices of another size than the network was
    converted on; None if the slices have that size."""
    images = [t for t in flatten((args, kwargs))[0]
              if isinstance(t, torch.Tensor) and t.dim() == 5]
    if record.image_size is None or not images:
        return None
    size = tuple(drop(images[0].shape[2:], record.axis))
    if size == record.image_size:
        return None
    want = "x".join(map(str, record.image_size))
    hint = ""
    if getattr(module, "dynamic_img_size", None) is False:
        hint = ("; timm builds it for other sizes with timm.create_model(..., "
                "dynamic_img_size=True) before conversion")
    return ValueError(
        f"{type_name(module)}: the {axis_name(record.axis)} slices of this volume are "
        f"{'x'.join(map(str, size))}, but this network was converted on {want} slices and its "
        f"2D code fails on another size ({type(error).__name__}: {error}). Its position "
        f"embeddings or size checks fix the image size: resample the slices to {want}{hint}"
    )


def _call(module: nn.Module, method, args: tuple, kwargs: dict):
    """`method` (a function of the 2D class) of a slice-code module, run on volumes.

    Called by its own code (a method calling another), it runs as it is. Called through a
    method (no hooks fire) by the own code of an enclosing slice-code module, with per-slice
    tensors of that call, it is lifted as a call through `__call__` would be; called through
    `__call__` by that code without being lifted, it runs its 2D code on the per-slice tensors.
    """
    active = runs()
    outer = active[-1] if active else None
    if outer is not None and outer.depth == 1 and outer.any_derived((args, kwargs)):
        # called through __call__ by that code without being lifted: its 2D code, as it is
        return method(module, *args, **kwargs)
    if outer is not None and outer.depth == 0:
        if outer.module is module:
            return method(module, *args, **kwargs)
        if outer.any_per_slice((args, kwargs)):
            lifted_args, lifted_kwargs = map_leaves(outer.lift, (args, kwargs))
            outer.depth += 1
            outer.stop()
            try:
                out = _on_volumes(module, method, lifted_args, lifted_kwargs)
            finally:
                outer.depth -= 1
                outer.start()
            return map_leaves(outer.fold_back, out)
    return _on_volumes(module, method, args, kwargs)


def _on_volumes(module: nn.Module, method, args: tuple, kwargs: dict):
    record = state(module)
    volumes = [t for t in flatten((args, kwargs))[0]
               if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK]
    if not volumes:
        return method(module, *args, **kwargs)  # pooled inputs: its 2D code as it is
    n = volumes[0].shape[0]
    if any(v.shape[0] != n for v in volumes):
        raise ValueError(f"{type_name(module)}: volume arguments of different batch sizes "
                         f"{[tuple(v.shape) for v in volumes]}")
    run = SliceRun(module, record, n)
    folded_args, folded_kwargs = map_leaves(
        lambda t: fold(t, record.axis)
        if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK else t, (args, kwargs))
    for t in flatten((folded_args, folded_kwargs))[0]:
        if isinstance(t, torch.Tensor) and t.dim() >= TOKEN_RANK and t.shape[0] % n == 0:
            run.mark(t)
            run.rows.add(t.shape[0])
    run.rows_in = set(run.rows)
    handles = []
    for child in reachable(module, record.lifted, run.lifted):
        handles += [child.register_forward_pre_hook(run.before, with_kwargs=True, prepend=True),
                    child.register_forward_hook(run.after, with_kwargs=True)]
    active = runs()
    active.append(run)
    run.start()
    try:
        out = method(module, *folded_args, **folded_kwargs)
    except Exception as error:
        size_error = _size_error(module, record, args, kwargs, error)
        if size_error is not None:
            raise size_error from error
        raise
    finally:
        run.stop()
        active.pop()
        for handle in handles:
            handle.remove()

    def unfold_result(t):
        if not run.per_slice(t):
            return t
        if t.dim() < TOKEN_RANK:
            raise RuntimeError(
                f"{type_name(module)} returns a per-slice tensor of shape {tuple(t.shape)}: "
                f"pooled per slice, with no head pool merging the slices, it has no volume layout"
            )
        return unfold(t, n, record.axis)

    return map_leaves(unfold_result, out)


class _SliceCodeMixin:
    """Methods of slice-code modules; the 2D class's public tensor methods are wrapped per
    class in `_slice_code_class`."""

    def forward(self, *args, **kwargs):
        return _call(self, original_type(self).forward, args, kwargs)

    def _get_name(self) -> str:
        return f"SliceCode[{type_name(self)}]"

    def __deepcopy__(self, memo):
        return copy_derived(self, memo, _reslice)

    def __reduce_ex__(self, protocol):
        return reduce_derived(self, protocol, _reslice)


def _wrapped(name: str):
    def method(self, *args, **kwargs):
        return _call(self, getattr(original_type(self), name), args, kwargs)
    method.__name__ = name
    return method


@cache
def _slice_code_class(base: type) -> type:
    names = [n for n in dir(base) if (n.startswith(_METHOD_PREFIX) or n in _METHODS)
             and callable(getattr(base, n, None)) and not hasattr(nn.Module, n)]
    namespace = {n: _wrapped(n) for n in names}
    namespace["__module__"] = __name__
    return type("SliceCode" + base.__name__, (_SliceCodeMixin, base), namespace)


def _reslice(module: nn.Module) -> nn.Module:
    record = state(module)
    if record.base is None:  # loaded from a pickle: the class it is made of is its 2D class
        record.base = type(module)
    module.__class__ = _slice_code_class(record.base)
    return module


def is_slice_code(module: nn.Module) -> bool:
    """True if `module` was made a slice-code module by `slice_code_module`."""
    return isinstance(module, _SliceCodeMixin)


def lifted_paths(module: nn.Module) -> frozenset[str]:
    """The paths, relative to a slice-code module, of the descendants it gives volumes."""
    return state(module).lifted


def slice_code_module(module: nn.Module, *, axis: int = 2, head: bool = False,
                      lifted: frozenset[str] | set[str] | tuple[str, ...] = (),
                      image_size: tuple[int, int] | None = None) -> nn.Module:
    """Make `module` (in place) run its own code on the stacked slices of its volume inputs.

    Args:
        module: a 2D module (its descendants may be converted 3D modules).
        axis: the planar axis as tensor dim (2, 3 or 4).
        head: its own code holds a classifier's head pool, which then merges the slices.
        lifted: paths (relative to `module`) of descendants that run on volumes.
        image_size: the in-plane size of the slices it was converted on, when its inputs are
            the network's images (a clear error on slices of another size).
    Returns:
        The same object, of class SliceCode<Type>; names and state unchanged.
    Raises:
        AttributeError: if a path in `lifted` is not a descendant of `module`.
    """
    for path in lifted:
        module.get_submodule(path)  # raises AttributeError for a wrong path
    record = state(module)
    record.base = original_type(module) if is_slice_code(module) else type(module)
    record.axis, record.head_pool = axis, head
    record.lifted, record.image_size = frozenset(lifted), image_size
    return _reslice(module)

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

Which tensors are per-slice is tracked, never guessed from sizes: the folded inputs are, and so is
every result of the module's own code (a TorchFunctionMode) or of a child that has a per-slice
argument and the same leading dim. With `head=True` the module is a classifier's head whose code
pools: the first op that pools the positions of a per-slice tensor (`_slice_pools`) merges the
slices of each volume (a class token is averaged over the slices, a mean over tokens becomes the
mean over the tokens of all slices), and what follows is the 2D head on one row per volume.

Folding is slice code whose children are all 2D; slice code keeps them 3D. Hooks and the mode
exist only during a call (nothing persists in the model, which deep-copies and pickles as any
module). A descendant called with per-slice tensors outside such a call (activation
checkpointing recomputing it in backward) meets a 3D module and fails loudly.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from functools import cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from .._axis import TOKEN_RANK, axis_name, drop, fold, unfold
from .._judge.pools import merge_slices, slice_pool_kind
from .._record import tensors
from .._state import PlanarState, copy_derived, original_type, reduce_derived, state, type_name

__all__ = ["is_slice_code", "lifted_paths", "lifted_without_slices", "slice_code_module"]

# the public methods of a 2D class that take tensors, besides forward: timm's feature API
_METHOD_PREFIX = "forward_"
_METHODS = ("get_intermediate_layers",)


class _Run(TorchFunctionMode):
    """One call of a slice-code module: tracks per-slice tensors, lifts and merges.

    A tensor is *derived* when it is computed from the folded inputs (by the module's own code
    or by a descendant it calls), and *per-slice* when it is derived and its leading dim is a
    number of per-slice rows seen in this call (N·S, and N·S' after a child that pools depth).
    A window partition (N·S·nW rows) is derived but not per-slice; viewed back to N·S rows it is
    per-slice again. A head pool's merged result (N rows) is not derived: nothing merges twice.
    """

    def __init__(self, module: nn.Module, record: PlanarState, volumes: int) -> None:
        super().__init__()
        self.module, self.name, self.record, self.n = module, type_name(module), record, volumes
        self.derived: dict[int, weakref.ref] = {}
        self.rows: set[int] = set()
        self.rows_in: set[int] = set()
        self.depth_changed = False
        self.depth = 0  # > 0 while a descendant called by the module's own code runs
        self.calls: list[str | None] = []
        self.watching = False
        self.lifted: set[int] = set()  # ids of the descendants given volumes (see _reachable)

    # -- per-slice tensors ------------------------------------------------------------------
    def mark(self, tree) -> None:
        for t in tree_flatten(tree)[0]:
            if isinstance(t, torch.Tensor):
                self.derived[id(t)] = weakref.ref(t)

    def is_derived(self, t) -> bool:
        ref = self.derived.get(id(t)) if isinstance(t, torch.Tensor) else None
        return ref is not None and ref() is t

    def per_slice(self, t) -> bool:
        return self.is_derived(t) and t.dim() >= 1 and t.shape[0] in self.rows

    def any_derived(self, tree) -> bool:
        return any(self.is_derived(t) for t in tree_flatten(tree)[0])

    def any_per_slice(self, tree) -> bool:
        return any(self.per_slice(t) for t in tree_flatten(tree)[0])

    # -- the module's own code --------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            return func(*args, **kwargs)
        if not self.any_derived((args, kwargs)):
            return func(*args, **kwargs)
        x = args[0] if args else None
        if self.depth_changed and self.per_slice(x):
            self._check_rows(func, x, args)
        out = func(*args, **kwargs)
        if self.record.head_pool and self.per_slice(x):
            kind = slice_pool_kind(func, args, kwargs, out)
            if kind is not None:
                dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
                return merge_slices(out, out_rows(out) // self.n, kind, x=x,
                                    dim=dim if isinstance(dim, int) else None)
        self.mark(out)
        return out

    def _check_rows(self, func, x: torch.Tensor, args) -> None:
        """After a child pooled depth, code that reshapes per-slice rows into the number of
        rows of the inputs (its own `B` read from them) would let a -1 absorb the difference."""
        if getattr(func, "__name__", "") not in ("reshape", "view") or len(args) < 2:
            return
        shape = args[1] if isinstance(args[1], (tuple, list, torch.Size)) else args[1:]
        first = shape[0] if len(shape) else None
        if isinstance(first, int) and first != x.shape[0] and first in self.rows_in:
            raise RuntimeError(
                f"{self.name}'s own code reshapes {x.shape[0]} per-slice rows into {first}, the "
                f"number of slices of its input: a module it calls pooled depth (tubelets), and "
                f"this code counts slices from its input. Use depth='keep', or call the methods "
                f"that do not reshape by the input's size"
            )

    # -- descendants it calls -----------------------------------------------------------------
    def lift(self, t):
        if not self.per_slice(t):
            return t
        if t.dim() < TOKEN_RANK:
            raise RuntimeError(
                f"{self.name}: a per-slice tensor of shape {tuple(t.shape)} (pooled per slice) "
                f"cannot be passed to a module that runs on volumes"
            )
        return unfold(t, self.n, self.record.axis)

    def fold_back(self, t):
        if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK and t.shape[0] == self.n:
            folded = fold(t, self.record.axis)
            self.depth_changed |= folded.shape[0] not in self.rows
            self.rows.add(folded.shape[0])
            self.mark(folded)
            return folded
        return t

    # While a descendant runs, the mode is off the stack: its code is not watched, and costs
    # nothing more than in the 2D network.
    def start(self) -> None:
        self.__enter__()
        self.watching = True

    def stop(self) -> None:
        if self.watching:
            self.__exit__(None, None, None)
            self.watching = False

    def before(self, module, args, kwargs):
        self.depth += 1
        if self.depth > 1:
            self.calls.append(None)
            return None
        if id(module) in self.lifted:
            if not self.any_per_slice((args, kwargs)) and tensors((args, kwargs)):
                for listener in _listeners():
                    listener.append(module)
            self.calls.append("lifted")
            lifted = tree_map(self.lift, (args, kwargs))
            self.stop()
            return lifted
        self.calls.append("derived" if self.any_derived((args, kwargs)) else "other")
        self.stop()
        return None

    def after(self, module, args, kwargs, output):
        self.depth -= 1
        call = self.calls.pop()
        if call is None:
            return None
        if call == "lifted":
            output = tree_map(self.fold_back, output)
        elif call == "derived":
            self.mark(output)
        self.start()
        return output


def _size_error(module: nn.Module, record: PlanarState, args, kwargs, error: Exception):
    """A ValueError explaining a failure on slices of another size than the network was
    converted on; None if the slices have that size."""
    images = [t for t in tree_flatten((args, kwargs))[0]
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


def _reachable(module: nn.Module, lifted: frozenset[str], lifted_ids: set[int]
               ) -> list[nn.Module]:
    """The descendants a module's own code can call: its children; the children of the
    containers it iterates (`for blk in self.blocks`); and the children of a child that is not
    given volumes, whose method it may call directly (that method's code then runs as its own).
    Inside a module given volumes, calls are that module's business. The ids of the lifted
    ones are added to `lifted_ids`."""
    found: dict[int, nn.Module] = {}

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if id(child) in found:
                continue
            found[id(child)] = child
            if path in lifted:
                lifted_ids.add(id(child))
            container = type(child).forward in (nn.Sequential.forward, nn.Module.forward)
            if container or path not in lifted:
                visit(child, path)

    visit(module, "")
    return list(found.values())


# the slice-code calls running in this thread (innermost last), and the lists that
# `lifted_without_slices` is collecting into
_ACTIVE = threading.local()


def _runs() -> list[_Run]:
    if not hasattr(_ACTIVE, "runs"):
        _ACTIVE.runs = []
    return _ACTIVE.runs


def _listeners() -> list[list[nn.Module]]:
    if not hasattr(_ACTIVE, "listeners"):
        _ACTIVE.listeners = []
    return _ACTIVE.listeners


@contextlib.contextmanager
def lifted_without_slices():
    """Collect, while it is open, the descendants a slice-code module meant to give volumes but
    called with tensors none of which is per-slice (a head's layers after its pool, as CoaT's
    Conv1d over the merged class tokens): conversion makes them 2D layers instead."""
    found: list[nn.Module] = []
    _listeners().append(found)
    try:
        yield found
    finally:
        _listeners().remove(found)


def _call(module: nn.Module, method, args: tuple, kwargs: dict):
    """`method` (a function of the 2D class) of a slice-code module, run on volumes.

    Called by its own code (a method calling another), it runs as it is. Called through a
    method (no hooks fire) by the own code of an enclosing slice-code module, with per-slice
    tensors of that call, it is lifted as a call through `__call__` would be; called through
    `__call__` by that code without being lifted, it runs its 2D code on the per-slice tensors.
    """
    runs = _runs()
    outer = runs[-1] if runs else None
    if outer is not None and outer.depth == 1 and outer.any_derived((args, kwargs)):
        # called through __call__ by that code without being lifted: its 2D code, as it is
        return method(module, *args, **kwargs)
    if outer is not None and outer.depth == 0:
        if outer.module is module:
            return method(module, *args, **kwargs)
        if outer.any_per_slice((args, kwargs)):
            lifted_args, lifted_kwargs = tree_map(outer.lift, (args, kwargs))
            outer.depth += 1
            outer.stop()
            try:
                out = _on_volumes(module, method, lifted_args, lifted_kwargs)
            finally:
                outer.depth -= 1
                outer.start()
            return tree_map(outer.fold_back, out)
    return _on_volumes(module, method, args, kwargs)


def _on_volumes(module: nn.Module, method, args: tuple, kwargs: dict):
    record = state(module)
    volumes = [t for t in tree_flatten((args, kwargs))[0]
               if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK]
    if not volumes:
        return method(module, *args, **kwargs)  # pooled inputs: its 2D code as it is
    n = volumes[0].shape[0]
    if any(v.shape[0] != n for v in volumes):
        raise ValueError(f"{type_name(module)}: volume arguments of different batch sizes "
                         f"{[tuple(v.shape) for v in volumes]}")
    run = _Run(module, record, n)
    folded_args, folded_kwargs = tree_map(
        lambda t: fold(t, record.axis)
        if isinstance(t, torch.Tensor) and t.dim() > TOKEN_RANK else t, (args, kwargs))
    for t in tree_flatten((folded_args, folded_kwargs))[0]:
        if isinstance(t, torch.Tensor) and t.dim() >= TOKEN_RANK and t.shape[0] % n == 0:
            run.mark(t)
            run.rows.add(t.shape[0])
    run.rows_in = set(run.rows)
    handles = []
    for child in _reachable(module, record.lifted, run.lifted):
        handles += [child.register_forward_pre_hook(run.before, with_kwargs=True, prepend=True),
                    child.register_forward_hook(run.after, with_kwargs=True)]
    runs = _runs()
    runs.append(run)
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
        runs.pop()
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

    return tree_map(unfold_result, out)


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


def out_rows(out) -> int:
    """The number of rows of a pool's result (its values, for `max` with indices)."""
    return (out if isinstance(out, torch.Tensor) else out[0]).shape[0]


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

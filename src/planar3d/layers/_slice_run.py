"""One call of a slice-code module (`slice_code`): which tensors are per-slice, and the lifting
of the modules its code calls.

`SliceRun` is a TorchFunctionMode on the stack while the module's own code runs (and off it while
a module that code calls runs, so that it costs nothing there). A tensor is *derived* when it is
computed from the folded inputs, and *per-slice* when it is derived and its leading dim is a
number of per-slice rows seen in the call. Hooks on the modules the code can call (`reachable`)
lift their per-slice arguments into volumes (those given volumes) and fold their results back.
In a head, the first op that pools the positions of a per-slice tensor merges the slices
(`_judge.pools`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._axis import TOKEN_RANK, fold, unfold
from .._containers import flatten, map_leaves
from .._judge.pools import merge_slices, slice_pool_kind
from .._record import tensors
from .._state import PlanarState, type_name

__all__ = ["SliceRun", "lifted_without_slices", "listeners", "reachable", "runs"]


class SliceRun(TorchFunctionMode):
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
        for t in flatten(tree)[0]:
            if isinstance(t, torch.Tensor):
                self.derived[id(t)] = weakref.ref(t)

    def is_derived(self, t) -> bool:
        ref = self.derived.get(id(t)) if isinstance(t, torch.Tensor) else None
        return ref is not None and ref() is t

    def per_slice(self, t) -> bool:
        return self.is_derived(t) and t.dim() >= 1 and t.shape[0] in self.rows

    def any_derived(self, tree) -> bool:
        return any(self.is_derived(t) for t in flatten(tree)[0])

    def any_per_slice(self, tree) -> bool:
        return any(self.per_slice(t) for t in flatten(tree)[0])

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
                return merge_slices(out, _out_rows(out) // self.n, kind, x=x,
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
                for listener in listeners():
                    listener.append(module)
            self.calls.append("lifted")
            lifted = map_leaves(self.lift, (args, kwargs))
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
            output = map_leaves(self.fold_back, output)
        elif call == "derived":
            self.mark(output)
        self.start()
        return output


def reachable(module: nn.Module, lifted: frozenset[str], lifted_ids: set[int]
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


def runs() -> list[SliceRun]:
    if not hasattr(_ACTIVE, "runs"):
        _ACTIVE.runs = []
    return _ACTIVE.runs


def listeners() -> list[list[nn.Module]]:
    if not hasattr(_ACTIVE, "listeners"):
        _ACTIVE.listeners = []
    return _ACTIVE.listeners


@contextlib.contextmanager
def lifted_without_slices():
    """Collect, while it is open, the descendants a slice-code module meant to give volumes but
    called with tensors none of which is per-slice (a head's layers after its pool, as CoaT's
    Conv1d over the merged class tokens): conversion makes them 2D layers instead."""
    found: list[nn.Module] = []
    listeners().append(found)
    try:
        yield found
    finally:
        listeners().remove(found)


def _out_rows(out) -> int:
    """The number of rows of a pool's result (its values, for `max` with indices)."""
    return (out if isinstance(out, torch.Tensor) else out[0]).shape[0]

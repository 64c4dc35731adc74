"""Record what every module of a 2D network receives and returns on one example batch.

The records drive conversion: which modules are part of the per-slice body and which belong to
a classifier's head, and the reference outputs that each converted module is probed against.
What a recorded tensor is (a per-image feature map, a pooled tensor) is decided here too.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._axis import TOKEN_RANK
from ._containers import map_leaves, tensors
from ._modes import eval_mode, train_mode
from .errors import UnsupportedModuleError

__all__ = ["Call", "CallRecord", "CallRecords", "batch_of", "is_map", "is_standard",
           "record_calls", "record_train_only", "tensors"]

# the inputs of a call, (args, kwargs)
Call = tuple[tuple, dict]


@dataclass
class CallRecord:
    """The first call of one module during the example run (tensors cloned, detached).

    One tensor passed from module to module (a block's output is the next block's input, a
    parent's input its first child's) is cloned once and shared by the records that saw it
    unchanged, so the records take about one copy of the run's activations, not three. Never
    change them in place: run modules on `inputs()`, a private copy.

    `shapes`: the shape of each tensor the module's own code (not its children's) computed in
    that call, in order (see `_judge.probe.OwnCode`). `pooled`: the output holds a globally
    pooled map (B, C, 1, 1) that the network goes on to flatten (`mark_pooled`). `order`: how
    many calls had started before this one; `done`: how many had started when it returned.
    `attends`: that code computed attention weights (`F.scaled_dot_product_attention`, or a
    softmax over the last dim of a map of query-key scores (..., Lq, Lk)).
    """

    path: str
    args: tuple
    kwargs: dict
    output: Any
    order: int
    training: bool
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    pooled: bool = False
    done: int = 0
    attends: bool = False

    def inputs(self) -> tuple[tuple, dict]:
        """A private copy of the recorded (args, kwargs), for running a module on: a module that
        works in place (ReLU(inplace=True), `x += ...`) then cannot change the records."""
        return _copy(self.args), _copy(self.kwargs)

    def is_spatial(self, batch: int) -> bool:
        """Whether the output holds a per-image tensor with positions: a feature map
        (B, ..., h, w) with h*w > 1, a label map or mask without channels (B, H, W), or a token
        sequence (B, L, C)."""
        return any(is_map(t, batch) for t in tensors(self.output))

    def is_flat(self, batch: int) -> bool:
        """Whether the output holds a tensor that is no per-image map or token sequence at all
        (pooled features (B, K), logits, a loss); a 1x1 map (B, C, 1, 1) is still a per-image
        map, unless the network flattens it (`pooled`)."""
        return self.pooled or any(not (t.dim() >= TOKEN_RANK and t.shape[0] == batch)
                                  for t in tensors(self.output))


def is_map(t: torch.Tensor, batch: int) -> bool:
    """A per-image tensor with positions of the example batch: a feature map (B, ..., h, w) of
    at least 4 dims with h*w > 1, or a tensor of 3 dims (a token sequence (B, L, C), its prefix
    tokens or a lone class token included; a label map or mask (B, H, W))."""
    if t.dim() < TOKEN_RANK or t.shape[0] != batch:
        return False
    return t.dim() == TOKEN_RANK or t.shape[-2] * t.shape[-1] > 1


def is_standard(tree, batch: int) -> bool:
    """Whether every tensor in `tree` is a per-image 4-D map or token sequence of the example
    batch: what a probe lifts into volumes."""
    ts = tensors(tree)
    return bool(ts) and all(t.dim() in (TOKEN_RANK, 4) and t.shape[0] == batch for t in ts)


def images_of(call: Call) -> torch.Tensor:
    """The first batch of images of a 2D call (its first tensor of 4 or more dims)."""
    return next(t for t in tensors(call) if t.dim() >= 4)


def batch_of(call: Call) -> int:
    """How many images a 2D call holds: the batch size of its first map or token sequence (a
    tensor of 3 or more dims)."""
    return next(t.shape[0] for t in tensors(call) if t.dim() >= TOKEN_RANK)


def _copy(tree):
    return map_leaves(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, tree)


class _Snapshots:
    """Detached clones of the tensors a run passes around, one per tensor and version: a
    tensor seen again unchanged (same object, no in-place change since) reuses its clone."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[weakref.ref, int, torch.Tensor]] = {}

    def __call__(self, tree):
        return map_leaves(self._one, tree)

    def _one(self, t):
        if not isinstance(t, torch.Tensor):
            return t
        known = self.seen.get(id(t))
        if known is not None and known[0]() is t and known[1] == t._version:
            return known[2]
        clone = t.detach().clone()
        with contextlib.suppress(TypeError):  # a tensor type without weak references: unshared
            self.seen[id(t)] = (weakref.ref(t), t._version, clone)
        return clone


class _OwnShapes(TorchFunctionMode):
    """Attributes the shape of every tensor a torch call computes to the innermost module
    running in its first call (the module's own code, as `_judge.probe.OwnCode` sees it), and
    notes the modules whose own code computes attention weights."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[list | None] = []  # per running module: its shapes, or None
        self.in_hook = False
        self.attending: set[int] = set()  # ids of the shape lists of modules that attend

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.stack and self.stack[-1] is not None and not self.in_hook:
            self.stack[-1].extend(tuple(t.shape) for t in tensors(out))
            if _attends(func, args):
                self.attending.add(id(self.stack[-1]))
        return out


def _attends(func, args) -> bool:
    """Whether a call computes attention weights: scaled dot-product attention, or a softmax
    of a tensor whose last two dims (queries, keys) both exceed 1."""
    name = getattr(func, "__name__", "")
    if name == "scaled_dot_product_attention":
        return True
    x = args[0] if args else None
    return (name == "softmax" and isinstance(x, torch.Tensor) and x.dim() >= 3
            and x.shape[-1] > 1 and x.shape[-2] > 1)


def _run(model: nn.Module, call: Call, records: dict[int, CallRecord],
         paths: dict[int, str], training: bool) -> None:
    pending: dict[int, tuple] = {}
    counter = [len(records)]
    sizes = _OwnShapes()
    snapshot = _Snapshots()

    def pre(module, args, kwargs):
        key = id(module)
        sizes.in_hook = True
        if key not in records and key not in pending:
            pending[key] = (snapshot(args), snapshot(kwargs), counter[0], [])
            counter[0] += 1
            sizes.stack.append(pending[key][3])
        else:
            sizes.stack.append(None)
        sizes.in_hook = False

    def post(module, args, kwargs, output):
        key = id(module)
        sizes.in_hook = True
        if sizes.stack:
            sizes.stack.pop()
        if key in pending and key not in records:
            a, k, order, own = pending.pop(key)
            records[key] = CallRecord(paths[key], a, k, snapshot(output), order, training, own,
                                      done=counter[0], attends=id(own) in sizes.attending)
        sizes.in_hook = False

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True, always_call=False))
    try:
        with torch.no_grad(), sizes:
            model(*call[0], **call[1])
    finally:
        for h in handles:
            h.remove()


def record_calls(model: nn.Module, *args, **kwargs) -> dict[int, CallRecord]:
    """Run `model(*args, **kwargs)` in eval mode and record each module's first call, keyed by
    id(module). Train/eval flags are restored.

    Raises:
        UnsupportedModuleError: if the 2D model does not run on the example (it needs other
            inputs).
        torch.OutOfMemoryError, MemoryError: as raised (`convert` says what to do).
    """
    records: dict[int, CallRecord] = {}
    with eval_mode(model):
        try:
            _run(model, (args, kwargs), records, _paths(model), training=False)
        except (torch.OutOfMemoryError, MemoryError):
            raise
        except Exception as error:
            raise UnsupportedModuleError(
                "", type(model).__name__,
                f"the 2D network does not run on {describe_inputs((args, kwargs))} "
                f"({type(error).__name__}: {error})",
                "pass the inputs it takes: example_input=<a (B, C, H, W) batch of images>, or a "
                "tuple of its positional inputs (example_input=(a, b)), and example_kwargs="
                "{name: value} for its keyword inputs",
            ) from error
    return records


def describe_inputs(call: Call) -> str:
    """The example's inputs, for messages: "the example batch of shape (B, C, H, W)" or "the
    example inputs of shapes [...]"."""
    shapes = [tuple(t.shape) for t in tensors(call)]
    if len(shapes) == 1:
        return f"the example batch of shape {shapes[0]}"
    return f"the example inputs of shapes {shapes}"


def record_train_only(model: nn.Module, call: Call, skip: set[str]) -> dict[str, CallRecord]:
    """Records of the modules only a train-mode run reaches (auxiliary heads), keyed by path:
    one derandomized train-mode run whose effect on buffers (BatchNorm statistics) is undone;
    modules at the `skip` paths (recorded in eval mode) are left out. Empty if the 2D network
    does not run in train mode on the example."""
    records: dict[int, CallRecord] = {}
    paths = _paths(model)
    with contextlib.suppress(Exception), train_mode(model):
        _run(model, call, records, paths, training=True)
    return {record.path: record for record in records.values() if record.path not in skip}


def _paths(model: nn.Module) -> dict[int, str]:
    paths: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), name)
    return paths


def mark_pooled(records: dict[int, CallRecord], batch: int) -> None:
    """Mark the records whose output holds a globally pooled map that the network flattens: a
    per-image 1x1 map (B, C, 1, 1) passed as it is to a module whose output is flat (a
    classifier's Flatten and Linear). Such a map is a head's pooled features, not a per-slice
    map: the pool that made it and the modules that return it (a backbone returning its
    features and their pool) belong to the head (docs/design.md P0). Records share the tensor
    objects that passed unchanged from module to module (`_Snapshots`), which is how the flow
    is seen."""
    pooled = {id(t) for r in records.values() if r.is_flat(batch)
              for t in tensors((r.args, r.kwargs))
              if t.dim() >= 4 and t.shape[0] == batch and t.shape[-2:] == (1, 1)}
    if not pooled:
        return
    for r in records.values():
        if any(id(t) in pooled for t in tensors(r.output)):
            r.pooled = True


class CallRecords:
    """The records of the example run, as the conversion walk reads them.

    Each module's first call in the eval-mode run (`record_calls`); for a module with weights
    that eval mode does not reach (an auxiliary head), its first call in one train-mode run of
    the 2D network, made when first needed (`record_train_only`). A record the walk took is
    also found by the module's path. `release()` lets all of them go.

    Args:
        model: the network being converted (recorded now).
        call: the example's inputs (args, kwargs).
        source: the 2D network (never changed), which train-mode runs use.
    """

    def __init__(self, model: nn.Module, call: Call, *, source: nn.Module) -> None:
        self.call = call
        self.batch = batch_of(call)
        self.source = source
        self._by_module = record_calls(model, *call[0], **call[1])
        mark_pooled(self._by_module, self.batch)
        self._train_only: dict[str, CallRecord] | None = None
        self._by_path: dict[str, CallRecord] = {}
        self._first_paths: dict[str, str] | None = None  # path -> a shared module's first path

    def first_call(self, module: nn.Module) -> CallRecord | None:
        """The eval-mode record of `module`, if the example run called it."""
        return self._by_module.get(id(module))

    def of(self, module: nn.Module, path: str) -> CallRecord | None:
        """The module's first call in eval mode or, for a module with weights that eval mode
        does not reach, in train mode; kept by `path`."""
        record = self._by_module.get(id(module))
        if record is None and any(True for _ in module.parameters()):
            if self._train_only is None:
                recorded = {r.path for r in self._by_module.values()}
                self._train_only = record_train_only(self.source, self.call, recorded)
            record = self._train_only.get(path)
        if record is not None:
            self._by_path[path] = record
        return record

    def at(self, path: str) -> CallRecord | None:
        """The record `of` gave for the module at `path` (None after `release`); for a module
        shared by several parents, found by any of its paths."""
        record = self._by_path.get(path)
        if record is not None or not self._by_path:
            return record
        if self._first_paths is None:
            self._first_paths = {}
            seen: dict[int, str] = {}
            for name, module in self.source.named_modules(remove_duplicate=False):
                self._first_paths[name] = seen.setdefault(id(module), name)
        return self._by_path.get(self._first_paths.get(path, path))

    def reached(self, module: nn.Module, path: str) -> bool:
        """Whether the example run called the module or one inside it."""
        if any(id(m) in self._by_module for m in module.modules()):
            return True
        prefix = f"{path}." if path else ""
        return any(p == path or p.startswith(prefix) for p in self._train_only or {})

    def in_eval(self, record: CallRecord, path: str) -> CallRecord:
        """Probes run in eval mode: a record taken in train mode (a module reached only there,
        such as an auxiliary head) gets its reference output recomputed by the 2D module in
        eval mode on the same inputs."""
        if not record.training:
            return record
        source = self.source.get_submodule(path)
        with eval_mode(source), torch.no_grad():
            args, kwargs = record.inputs()
            output = source(*args, **kwargs)
        return replace(record, output=output)

    def before(self, paths: Iterable[str]) -> dict[str, CallRecord]:
        """The records of the outermost modules whose first call returned before any module at
        `paths` was first called and that hold none of them (the root never): what the eval-mode
        run of the example computes before it reaches those modules, which a rerun need not
        compute again (`_judge.reference.Reference.replay`)."""
        by_path = {r.path: r for r in self._by_module.values()}
        starts = [by_path[p].order for p in paths if p in by_path]
        if not starts:
            return {}
        first = min(starts)

        def holds(path: str) -> bool:
            prefix = f"{path}." if path else ""
            return any(p == path or p.startswith(prefix) for p in paths)

        ended = {p: r for p, r in by_path.items()
                 if p and r.done <= first and not holds(p) and not r.training}

        def inside_another(path: str) -> bool:
            parts = path.split(".")
            return any(".".join(parts[:i]) in ended for i in range(1, len(parts)))

        return {p: r for p, r in ended.items() if not inside_another(p)}

    def release(self) -> None:
        """Let every record go (they hold about one copy of the run's activations)."""
        self._by_module, self._by_path, self._train_only = {}, {}, {}

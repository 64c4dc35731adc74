"""Probe a converted module against its recorded 2D behaviour (the reference, at runtime).

- `probe_slices` (P0/P1): the recorded batch of B images becomes `volumes` volumes of
  B / `volumes` distinct slices; the converted module's output, slice by slice, must equal the
  recorded 2D output (the 2D module on the stacked slices).
- `probe_constant` (P2): each recorded image becomes a volume of identical slices; the output
  must equal the 2D output at every slice, or exactly when the module pooled the planar axis.

With `source` (the 2D module, for a module that runs its own 2D code on volumes), the module's
own code is watched while it runs (`OwnCode`):
- the sizes of the tensors it computes must be the 2D ones (per-slice code computes, on a
  volume of B slices, tensors of the sizes it computes on B images; in the head, on volumes of
  D identical slices, the 2D size or D times it). Values can hide a wrong computation whose
  contribution vanishes on the example (a saturated activation after `x.mean((2, 3))`, which
  on a volume averages D and H); sizes cannot;
- it must not take data-dependent decisions (`if x.mean() > 0`, `.item()`, `.tolist()`): a
  probe sees one outcome, other inputs take other branches;
- it must not draw structured random masks (`F.dropout2d`, per-sample drop paths): those must
  be drawn per slice.

Train-mode probes run under `Derandomized`: random ops give the same deterministic values in
the 2D and the 3D run, so that what is compared is the computation, never a random outcome.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from .._axis import TOKEN_RANK, fold, slice_dim, unfold
from .._modes import eval_mode, train_mode
from .._record import CallRecord, tensors
from .tolerance import difference, output_leaves

# depth of the depth-constant probe volumes when no module code is watched
CONSTANT_DEPTH = 2
# Turning a tensor into a Python value: the code takes a data-dependent decision.
_DECISIONS = frozenset({
    torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__,
    torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.__complex__,
})
# Random masks with structure (per channel, per sample): drawn per volume on a volume.
_STRUCTURED_RANDOM = frozenset({
    F.dropout1d, F.dropout2d, F.dropout3d, F.feature_alpha_dropout, torch.feature_dropout,
    torch.feature_alpha_dropout,
})


@dataclass
class ProbeResult:
    ok: bool
    reason: str = ""
    merged: bool = False
    # the module's own code turned a tensor into a Python value (a data-dependent decision)
    decides: list[str] = field(default_factory=list)


class OwnCode(TorchFunctionMode):
    """Watches the code of one module, not of its children: the sizes of the tensors it
    computes, the data-dependent decisions it takes, the structured random masks it draws."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inside_children = 0
        self.shapes: list[tuple[int, ...]] = []
        self.decides: list[str] = []
        self.structured_random: list[str] = []
        self._own = {id(t) for t in (*module.parameters(recurse=False),
                                     *module.buffers(recurse=False))}
        self._handles = []
        # every descendant: own code may call a grandchild directly (`self.blocks[i](x)`)
        for name, child in module.named_modules():
            if name:
                self._handles += [child.register_forward_pre_hook(self._enter),
                                  child.register_forward_hook(self._leave)]

    def _enter(self, *_):
        self.inside_children += 1

    def _leave(self, *_):
        self.inside_children -= 1

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.inside_children:
            if func in _DECISIONS and args and id(args[0]) not in self._own:
                self.decides.append(f"Tensor.{func.__name__}")
            elif func in _STRUCTURED_RANDOM and _training_flag(args, kwargs):
                self.structured_random.append(func.__name__)
        out = func(*args, **kwargs)
        if not self.inside_children:
            self.shapes += [tuple(t.shape) for t in tensors(out)]
        return out


def _training_flag(args, kwargs) -> bool:
    p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
    training = kwargs.get("training", kwargs.get("train", args[2] if len(args) > 2 else True))
    return bool(training) and p > 0


def _lifted(record: CallRecord, up) -> tuple[tuple, dict]:
    """The record's inputs, each tensor lifted to the probe by `up`, never the record's own
    tensors (a module working in place would change them)."""
    args, kwargs = record.inputs()
    return tree_map(up, args), tree_map(up, kwargs)


def _outputs(out, watcher: OwnCode | None, record: CallRecord
             ) -> tuple[ProbeResult | None, list, list]:
    """A probe's outputs and the recorded 2D ones, flattened alike; or the failed result when
    the module's own code did what a probe cannot accept, or returned another structure."""
    problem, decides = _own_code_problem(watcher)
    if problem:
        return ProbeResult(False, problem, decides=decides), [], []
    got, spec = output_leaves(out)
    want, want_spec = output_leaves(record.output)
    if spec != want_spec:
        return ProbeResult(False, "returns a different structure than the 2D module"), [], []
    return None, got, want


def _run(module: nn.Module, args, kwargs, training: bool = False, watch: bool = False):
    """`module(*args, **kwargs)` without gradients (in train mode with `training`), and the
    OwnCode watcher of its own code with `watch` (else None)."""
    watcher = OwnCode(module) if watch else None
    try:
        with torch.no_grad(), contextlib.ExitStack() as stack:
            stack.enter_context(train_mode(module) if training else eval_mode(module))
            if watcher is not None:
                stack.enter_context(watcher)
            return module(*args, **kwargs), watcher
    finally:
        if watcher is not None:
            watcher.close()


def _own_code_problem(watcher: OwnCode | None) -> tuple[str, list[str]]:
    if watcher is None:
        return "", []
    if watcher.structured_random:
        names = ", ".join(sorted(set(watcher.structured_random)))
        return (f"its own code draws structured random masks ({names}), which on a volume "
                "would be drawn per volume, not per slice"), []
    if watcher.decides:
        names = ", ".join(sorted(set(watcher.decides)))
        return (f"its own code takes data-dependent decisions ({names}), which a probe sees "
                "one outcome of"), sorted(set(watcher.decides))
    return "", []


def probe_slices(
    module: nn.Module, record: CallRecord, *, axis: int, volumes: int, loose: bool = False,
    training: bool = False, source: nn.Module | None = None,
) -> ProbeResult:
    """P0 on the recorded call: B images -> `volumes` volumes of distinct slices along `axis`.

    With `training`, the module runs in train mode (derandomized, buffers restored); `record`
    must then hold the 2D module's derandomized train-mode output. With `source`, the 2D module
    whose code `module` runs as it is, its own code is watched (see the module docstring).
    """
    def up(t):
        return unfold(t, volumes, axis) if isinstance(t, torch.Tensor) else t

    try:
        out, watcher = _run(module, *_lifted(record, up), training, source is not None)
    except Exception as error:
        return ProbeResult(False, f"{type(error).__name__}: {error}")
    failed, got, want = _outputs(out, watcher, record)
    if failed is not None:
        return failed
    for g, w in zip(got, want):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor) or g.dim() != w.dim() + 1:
                return ProbeResult(False, "does not return a volume where the 2D module returns "
                                   "a feature map or token sequence")
            problem = difference(fold(g, axis), w, loose=loose)
            if problem:
                return ProbeResult(False, f"slices differ from the 2D output: {problem}")
    if source is not None:
        problem = _sizes_differ(watcher.shapes, source, record, training,
                                lambda g, w: g == w)
        if problem:
            return ProbeResult(False, problem)
    return ProbeResult(True)


def watch_own_code(module: nn.Module, record: CallRecord, *, axis: int, volumes: int,
                   batch: int) -> str:
    """For modules whose inputs or outputs are not all feature maps (checked end to end, not
    by a probe): run them on the recorded call made volumes and say what their own code does
    that only a per-slice run can do ("" for nothing, or when they do not run on volumes)."""
    def up(t):
        if isinstance(t, torch.Tensor) and t.dim() >= TOKEN_RANK and t.shape[0] == batch:
            return unfold(t, volumes, axis)
        return t

    try:
        _, watcher = _run(module, *_lifted(record, up), watch=True)
    except Exception:
        return ""
    return _own_code_problem(watcher)[0]


def probe_constant(
    module: nn.Module, record: CallRecord, *, axis: int, loose: bool = False,
    source: nn.Module | None = None,
) -> ProbeResult:
    """P2 on the recorded call: each image -> a volume of identical slices.

    With `source`, the module's own code is watched: each tensor it computes has the 2D size
    (after a pool of the planar axis) or D times it (per slice). D is a prime that divides no
    size of the 2D tensors, so that a wrong reduction (over D and H: the 2D size times W) can
    never pass for per-slice code."""
    depth = CONSTANT_DEPTH if source is None else _safe_depth(_own_shapes(source, record))

    def up(t):
        if not isinstance(t, torch.Tensor):
            return t
        where = slice_dim(t.dim() + 1, axis)
        return t.unsqueeze(where).expand(*t.shape[:where], depth, *t.shape[where:])

    try:
        out, watcher = _run(module, *_lifted(record, up), watch=source is not None)
    except Exception as error:
        return ProbeResult(False, f"{type(error).__name__}: {error}")
    failed, got, want = _outputs(out, watcher, record)
    if failed is not None:
        return failed
    merged = False
    for g, w in zip(got, want):
        if not isinstance(w, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor):
            return ProbeResult(False, "returns a non-tensor where the 2D module returns a tensor")
        if g.dim() == w.dim() + 1 and g.dim() > TOKEN_RANK:
            where = slice_dim(g.dim(), axis)
            for s in range(g.shape[where]):
                problem = difference(g.select(where, s), w, loose=loose)
                if problem:
                    return ProbeResult(False, f"slice {s} differs from the 2D output: {problem}")
        else:
            merged = True
            problem = difference(g, w, loose=loose)
            if problem:
                return ProbeResult(False, f"output differs from the 2D output: {problem}")
    if source is not None:
        problem = _sizes_differ(watcher.shapes, source, record, False,
                                lambda g, w: g in (w, depth * w))
        if problem:
            return ProbeResult(False, problem)
    return ProbeResult(True, merged=merged)


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31)


def _safe_depth(shapes: list[tuple[int, ...]]) -> int:
    """The smallest prime that is no dim of the given shapes: per-slice code then computes D
    times a 2D size, and no reduction over 2D dims can multiply a size by D instead."""
    dims = {d for shape in shapes for d in shape}
    return next((p for p in _PRIMES if p not in dims), _PRIMES[-1])


def _own_shapes(source: nn.Module, record: CallRecord) -> list[tuple[int, ...]]:
    """The shapes the 2D module's own code computes on the recorded call."""
    if not record.training:
        return record.shapes
    try:
        return _run(source, *record.inputs(), watch=True)[1].shapes
    except Exception:
        return []


def _sizes_differ(got: list[tuple[int, ...]], source: nn.Module, record: CallRecord,
                  training: bool, agrees) -> str:
    """Why `got`, the shapes of what the module's own code computed on the probe volume, do not
    agree (`agrees(numel on the volume, numel in 2D)`) with those the 2D `source` module's own
    code computes on the recorded images ("" when they do)."""
    if not training:
        want = _own_shapes(source, record)
    else:
        try:
            _, watcher = _run(source, *record.inputs(), training, True)
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        want = watcher.shapes
    if len(got) != len(want):
        return (f"its own code computes {len(got)} tensors on a volume and {len(want)} on the "
                "2D images")
    for i, (g, w) in enumerate(zip(got, want)):
        if not agrees(math.prod(g), math.prod(w)):
            return (f"intermediate result {i} of its own code has shape {g} on the volume "
                    f"against {w} on the 2D images (a reduction, view or broadcast over other "
                    "dims than per slice)")
    return ""

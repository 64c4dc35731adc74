"""Probe a converted module against its recorded 2D behaviour (the P1/P2 oracles at runtime).

- `probe_slices` (P1): the recorded batch of B images becomes one volume of B distinct slices;
  the converted module's output, slice by slice, must equal the recorded 2D output.
- `probe_constant` (P2): each recorded image becomes a volume of identical slices; the output
  must equal the 2D output at every slice, or exactly when the module pooled the planar axis.
  With `source` (the 2D module, for a module that runs its own 2D code on volumes), the sizes
  of the tensors the module's own code computes must also be the 2D ones. Values can hide a
  wrong computation whose contribution vanishes on the example (a saturated activation after
  `x.mean((2, 3))`, which on a volume averages D and H); sizes cannot: every per-slice
  intermediate of B images has the size of its B-slice volume.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from ._axis import fold, unfold
from ._record import CallRecord, tensors

CONSTANT_DEPTH = 2
# Deciding whether a module's own forward is exact uses a tight tolerance (planar layers run the
# very 2D kernels, so real results agree to a few ulps and wrong code is caught even when its
# effect is small); checking a fold, exact by construction, allows reordered float sums.
LOOSE_FACTOR = 100


@dataclass
class ProbeResult:
    ok: bool
    reason: str = ""
    merged: bool = False


def _tolerance(dtype: torch.dtype) -> float:
    if dtype in (torch.float16, torch.bfloat16):
        return 2e-2
    return 1e-10 if dtype == torch.float64 else 2e-6


def _close(got: torch.Tensor, want: torch.Tensor, loose: bool) -> str:
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    if not want.is_floating_point() or not want.numel():
        return "" if torch.equal(got, want) else "values differ"
    tolerance = _tolerance(want.dtype) * (LOOSE_FACTOR if loose else 1)
    got, want = got.double(), want.double()
    scale = max(want.abs().max().item(), 1e-6)
    err = (got - want).abs().max().item()
    if not err <= tolerance * scale:
        return f"max abs difference {err:.3g} against a 2D output scale of {scale:.3g}"
    return ""


def is_standard(tree, batch: int) -> bool:
    """Whether every tensor in `tree` is a per-image 4-D map of the example batch."""
    ts = tensors(tree)
    return bool(ts) and all(t.dim() == 4 and t.shape[0] == batch for t in ts)


@contextlib.contextmanager
def train_mode(module: nn.Module):
    """Run `module` in train mode with a fixed random seed; flags and buffers come back after."""
    flags = [m.training for m in module.modules()]
    buffers = [b.detach().clone() for b in module.buffers()]
    module.train()
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            yield
    finally:
        with torch.no_grad():
            for b, saved in zip(module.buffers(), buffers):
                b.copy_(saved)
        for m, f in zip(module.modules(), flags):
            m.training = f


def _run(module: nn.Module, args, kwargs, training: bool = False):
    with torch.no_grad():
        if not training:
            return module(*args, **kwargs)
        with train_mode(module):
            return module(*args, **kwargs)


def probe_slices(
    module: nn.Module, record: CallRecord, *, axis: int, batch: int, loose: bool = False,
    training: bool = False, source: nn.Module | None = None,
) -> ProbeResult:
    """P1 on the recorded call: B images -> one volume with B distinct slices along `axis`.

    With `training`, the module runs in train mode (seeded, buffers restored); `record` must then
    hold the 2D module's train-mode output. With `source`, the 2D module whose code `module`
    runs as it is, its own code must also compute tensors of the 2D sizes (see above).
    """
    def up(t):
        return unfold(t, 1, axis) if isinstance(t, torch.Tensor) else t

    try:
        out, sizes = _run_own_sizes(module, tree_map(up, record.args),
                                    tree_map(up, record.kwargs), training, source is not None)
    except Exception as error:
        return ProbeResult(False, f"{type(error).__name__}: {error}")
    got, spec = tree_flatten(out)
    want, want_spec = tree_flatten(record.output)
    if spec != want_spec:
        return ProbeResult(False, "returns a different structure than the 2D module")
    for g, w in zip(got, want):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor) or g.dim() != 5:
                return ProbeResult(False, "does not return a volume where the 2D module returns "
                                   "a feature map")
            problem = _close(fold(g, axis), w, loose)
            if problem:
                return ProbeResult(False, f"slices differ from the 2D output: {problem}")
    if source is not None:
        problem = _sizes_differ(sizes, source, record, training)
        if problem:
            return ProbeResult(False, problem)
    return ProbeResult(True)


def probe_constant(
    module: nn.Module, record: CallRecord, *, axis: int, loose: bool = False
) -> ProbeResult:
    """P2 on the recorded call: each image -> a volume of CONSTANT_DEPTH identical slices."""
    def up(t):
        if not isinstance(t, torch.Tensor):
            return t
        return t.unsqueeze(axis).expand(*t.shape[:axis], CONSTANT_DEPTH, *t.shape[axis:])

    try:
        out = _run(module, tree_map(up, record.args), tree_map(up, record.kwargs))
    except Exception as error:
        return ProbeResult(False, f"{type(error).__name__}: {error}")
    got, spec = tree_flatten(out)
    want, want_spec = tree_flatten(record.output)
    if spec != want_spec:
        return ProbeResult(False, "returns a different structure than the 2D module")
    merged = False
    for g, w in zip(got, want):
        if not isinstance(w, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor):
            return ProbeResult(False, "returns a non-tensor where the 2D module returns a tensor")
        if g.dim() == w.dim() + 1 and g.dim() == 5:
            for s in range(g.shape[axis]):
                problem = _close(g.select(axis, s), w, loose)
                if problem:
                    return ProbeResult(False, f"slice {s} differs from the 2D output: {problem}")
        else:
            merged = True
            problem = _close(g, w, loose)
            if problem:
                return ProbeResult(False, f"output differs from the 2D output: {problem}")
    return ProbeResult(True, merged=merged)


class _OwnSizes(TorchFunctionMode):
    """Sizes (numel) of the tensors computed by a module's own code, not by its children."""

    def __init__(self) -> None:
        super().__init__()
        self.inside_children = 0
        self.sizes: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.inside_children:
            self.sizes += [t.numel() for t in tensors(out)]
        return out


def _run_own_sizes(module: nn.Module, args, kwargs, training: bool, count: bool):
    """`module`'s output and, with `count`, the sizes of the tensors its own code computes."""
    if not count:
        return _run(module, args, kwargs, training), []
    mode = _OwnSizes()

    def enter(*_):
        mode.inside_children += 1

    def leave(*_):
        mode.inside_children -= 1

    handles = []
    for child in module.children():
        handles += [child.register_forward_pre_hook(enter), child.register_forward_hook(leave)]
    try:
        with mode:
            return _run(module, args, kwargs, training), mode.sizes
    finally:
        for h in handles:
            h.remove()


def _sizes_differ(got: list[int], source: nn.Module, record: CallRecord, training: bool) -> str:
    """Why `got`, the sizes on the probe volume, are not those the 2D `source` module's own code
    computes on the recorded images ("" when they agree)."""
    def same(t):  # new containers: some forwards append to a list they are given
        return t

    try:
        _, want = _run_own_sizes(source, tree_map(same, record.args),
                                 tree_map(same, record.kwargs), training, True)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    if len(got) != len(want):
        return (f"its own code computes {len(got)} tensors on a volume and {len(want)} on the "
                "2D images")
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return (f"intermediate result {i} of its own code has {g} elements on the volume "
                    f"instead of the {w} of the 2D images (a reduction, view or broadcast over "
                    "other dims than per slice)")
    return ""

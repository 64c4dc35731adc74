"""The check that ends every conversion: the whole converted network against the reference.

Module probes decide how each module is converted; this check sees what they cannot: code of
roots and containers with outputs of every kind (feature maps and embeddings, auxiliary heads,
dicts), and how converted modules work together. The converted network runs on probe volumes
(the example's images as distinct slices of two volumes), in eval and in train mode (random ops
derandomized), and every output must equal the reference (`reference`): shape and values up to
float rounding. When they differ, both networks run again with every module's first call
recorded, and the first module whose output differs while its inputs agree is named.

`localize` does the same for one module on its recorded call, so that a probe that fails can
name the descendant responsible.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from .._axis import TOKEN_RANK
from .._containers import PLAIN, map_leaves
from .._example import other_size, second_sizes
from .._record import batch_of
from .reference import Capture, Reference, as_volumes, expected_output, run_3d
from .tolerance import difference, output_leaves

__all__ = ["Divergence", "check_network", "localize"]


@dataclass
class Divergence:
    """Where the converted network first departs from the reference.

    `inputs_differ`: the module's inputs already differ, computed by the own code of `origin`,
    the innermost module around it whose inputs agree. `vector_per_slice`: the module's 2D
    output there is a vector per slice (B, K) that no head pool merged, which has no volume
    layout (pooling the maps globally before it would give it one)."""

    path: str
    reason: str
    training: bool
    inputs_differ: bool = False
    vector_per_slice: bool = False
    origin: str = ""


def vectors_per_slice(output, batch: int) -> list[torch.Tensor]:
    """The vectors per slice (B, K) or (B,) among a 2D output of `batch` slices."""
    return [t for t in output_leaves(output)[0]
            if isinstance(t, torch.Tensor) and 1 <= t.dim() < 3 and len(t) == batch]


def outputs_problem(got, want, *, volumes: int, batch: int, axis: int) -> str:
    """Why the converted outputs `got` are not the reference outputs `want` ("" if they are)."""
    got_leaves, got_spec = output_leaves(got)
    want_leaves, want_spec = output_leaves(want)
    if got_spec != want_spec:
        return "returns a different structure than the 2D network"
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        where = f"output {i}" if len(want_leaves) > 1 else "the output"
        if isinstance(w, PLAIN):
            if not isinstance(g, PLAIN) or g != w:
                return f"{where} is {g!r} instead of {w!r}"
            continue
        if not isinstance(w, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor):
            return f"{where} is a {type(g).__name__}, not a tensor"
        if (1 <= w.dim() < TOKEN_RANK and w.shape[0] == batch
                and g.shape[:1] != w.shape[:1]):
            return (f"{where} is computed per slice as a non-spatial tensor {tuple(w.shape)} "
                    f"(no global pool before it), which has no volume layout; got "
                    f"{tuple(g.shape)}")
        problem = difference(g, expected_output(w, g, volumes=volumes, axis=axis), loose=True)
        if problem:
            return f"{where}: {problem}"
    return ""


def check_network(reference: Reference, model3d: nn.Module, call: tuple, *, axis: int,
                  recorded=None, eval_checked: bool = False) -> Divergence | None:
    """Run the converted network against the reference in eval and train mode.

    Eval mode runs on the example; train mode at a second slice size (`_example.second_sizes`:
    odd, a multiple of no stride, with 3 slices per volume where the example has 2), the first
    the 2D network runs at in train mode, else on the example: both modes and two sizes and
    depths for the price of one run of each mode. Code that reads sizes a probe could not see
    (a pad to a skip's size, a crop to even sizes) differs there.

    Args:
        reference: the reference (its 2D network is not modified: train-mode runs restore
            buffers and flags).
        model3d: the converted network (likewise).
        call: the 2D inputs (args, kwargs) of the example; `reference.volumes` volumes of its
            images as slices.
        recorded: the 2D network's eval-mode outputs on `call`, when known: with no head-pool
            sites they are the eval-mode reference.
        eval_checked: the eval-mode run on `call` was checked already (the root's own check of
            a classifier, `_walk.head`): only train mode runs.
    Returns:
        None when every output equals the reference, else where the first difference arises.
    """
    if eval_checked:
        want = None
    elif not reference.sites and recorded is not None:
        want = recorded
    else:
        try:
            want = reference(*call, batch=batch_of(call), training=False, replayed=True)
        except Exception as error:
            # the 2D network cannot run with the slices merged at its head pool: pooled rows
            # meet per-slice rows (a pooled token joined to the slices' tokens)
            site = next(iter(reference.sites))
            return Divergence(site, "with the slices pooled together at its head pool the 2D "
                              f"network does not run ({type(error).__name__}: {error}): a "
                              "pooled result is used beside per-slice ones", False)
    divergence = None if eval_checked else localize(reference, model3d, call, axis=axis,
                                                     training=False, want=want)
    if divergence is None or _rounding(reference, model3d, call, axis=axis, training=False):
        trained = _train_call(reference, call)
        if trained is None:  # the 2D network itself does not run in train mode on the example
            return None
        call, want = trained
        divergence = localize(reference, model3d, call, axis=axis, training=True, want=want)
        if divergence is not None and _rounding(reference, model3d, call, axis=axis,
                                                training=True):
            return None
    return divergence


def _rounding(reference: Reference, model3d: nn.Module, call: tuple, *, axis: int,
              training: bool) -> bool:
    """Whether outputs that differ in float32 agree in float64: float rounding, amplified by
    the network (a train-mode BatchNorm1d after the head pool normalises pooled vectors that
    differ by little against their size), not a wrong computation, which float64 keeps.
    Copies of both networks run in float64; networks that already compute in float64, or whose
    outputs differ in more than values, are not rerun."""
    params = [p for p in model3d.parameters() if p.is_floating_point()]
    if not params or any(p.dtype != torch.float32 for p in params):
        return False
    double = map_leaves(lambda t: t.double() if isinstance(t, torch.Tensor)
                        and t.is_floating_point() else t, call)
    model2d = copy.deepcopy(reference.model2d).double()
    model3d = copy.deepcopy(model3d).double()
    batch = batch_of(call)
    shape = {"batch": batch, "volumes": reference.volumes}
    try:
        want = replace(reference, model2d=model2d)(*double, batch=batch, training=training)
        got = run_3d(model3d, *as_volumes(double, axis=axis, **shape), training=training)
    except Exception:
        return False
    return not outputs_problem(got, want, axis=axis, **shape)


def _origin(path: str, capture2: Capture, capture3: Capture, **shape) -> str:
    """The innermost module strictly around `path` whose inputs agree with the reference's:
    its own code computed the (differing) inputs of the module at `path`."""
    while path:
        path = path.rpartition(".")[0]
        if path not in capture3.inputs or not outputs_problem(
                capture3.inputs[path], capture2.inputs.get(path), **shape):
            return path
    return path


def _train_call(reference: Reference, call: tuple) -> tuple[tuple, object] | None:
    """The call the train-mode check runs (the example at a second size, else the example)
    and the reference's train-mode output on it; None when the 2D network runs on neither."""
    for other in (*(other_size(call, size) for size in second_sizes(call)), call):
        try:
            return other, reference(*other, batch=batch_of(other), training=True)
        except Exception:
            continue
    return None


def localize(reference: Reference, model3d: nn.Module, call: tuple, *, axis: int,
             training: bool, want=None) -> Divergence | None:
    """Compare `model3d` with the reference on the 2D inputs `call` = (args, kwargs) made
    volumes; None when the outputs agree, else the first module that differs (paths are
    relative to the reference's 2D network and `model3d`).

    Args:
        want: the reference outputs when already computed.
    """
    args, kwargs = call
    batch = batch_of(call)
    shape = {"batch": batch, "volumes": reference.volumes}
    if want is None:
        want = reference(args, kwargs, batch=batch, training=training)
    try:
        got = run_3d(model3d, *as_volumes(call, axis=axis, **shape), training=training)
        problem = outputs_problem(got, want, axis=axis, **shape)
    except Exception as error:
        problem = f"fails on volumes: {type(error).__name__}: {error}"
    if not problem:
        return None
    capture2, capture3 = Capture(reference.model2d), Capture(model3d)
    reference(args, kwargs, batch=batch, training=training, capture=capture2)
    crash = ""
    try:
        run_3d(model3d, *as_volumes(call, axis=axis, **shape), training=training,
               capture=capture3)
    except Exception as error:
        crash = f"fails on volumes: {type(error).__name__}: {error}"
    for path in capture3.order:
        if path not in capture2.outputs:
            continue
        reason = outputs_problem(capture3.outputs[path], capture2.outputs[path], axis=axis,
                                 **shape)
        if reason:
            inputs = outputs_problem(capture3.inputs.get(path), capture2.inputs.get(path),
                                     axis=axis, **shape)
            return Divergence(path, reason, training, inputs_differ=bool(inputs),
                              vector_per_slice=bool(vectors_per_slice(capture2.outputs[path],
                                                                      batch)),
                              origin=_origin(path, capture2, capture3, axis=axis, **shape))
    if crash and capture3.stack:
        path = capture3.stack[-1]
        flat = vectors_per_slice(capture2.outputs.get(path), batch)
        inputs = outputs_problem(capture3.inputs.get(path), capture2.inputs.get(path),
                                 axis=axis, **shape)
        if flat and not inputs:
            crash = (f"its 2D output {tuple(flat[0].shape)} is computed per slice and is not a "
                     "feature map (no global pool before it), so it has no volume layout")
        return Divergence(path, crash, training, inputs_differ=bool(inputs),
                          vector_per_slice=bool(flat),
                          origin=_origin(path, capture2, capture3, axis=axis, **shape))
    return Divergence("", crash or problem, training,
                      vector_per_slice=bool(vectors_per_slice(want, batch)))

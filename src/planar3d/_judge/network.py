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

from dataclasses import dataclass

import torch
from torch import nn

from .._axis import TOKEN_RANK
from .._record import batch_of
from .reference import Capture, Reference, as_volumes, expected_output, run_3d
from .tolerance import difference, output_leaves

__all__ = ["Divergence", "check_network", "localize"]


@dataclass
class Divergence:
    """Where the converted network first departs from the reference."""

    path: str
    reason: str
    training: bool
    inputs_differ: bool = False


def outputs_problem(got, want, *, volumes: int, batch: int, axis: int) -> str:
    """Why the converted outputs `got` are not the reference outputs `want` ("" if they are)."""
    got_leaves, got_spec = output_leaves(got)
    want_leaves, want_spec = output_leaves(want)
    if got_spec != want_spec:
        return "returns a different structure than the 2D network"
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        where = f"output {i}" if len(want_leaves) > 1 else "the output"
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
                  recorded=None) -> Divergence | None:
    """Run the converted network against the reference in eval and train mode.

    Args:
        reference: the reference (its 2D network is not modified: train-mode runs restore
            buffers and flags).
        model3d: the converted network (likewise).
        call: the 2D inputs (args, kwargs) of the example; `reference.volumes` volumes of its
            images as slices.
        recorded: the 2D network's eval-mode outputs on `call`, when known: with no head-pool
            sites they are the eval-mode reference.
    Returns:
        None when every output equals the reference, else where the first difference arises.
    """
    batch = batch_of(call)
    for training in (False, True):
        if not training and not reference.sites and recorded is not None:
            want = recorded
        else:
            try:
                want = reference(*call, batch=batch, training=training)
            except Exception:
                if training:  # the 2D network itself does not run in train mode on the example
                    continue
                raise
        divergence = localize(reference, model3d, call, axis=axis, training=training,
                              want=want)
        if divergence is not None:
            return divergence
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
            return Divergence(path, reason, training, inputs_differ=bool(inputs))
    if crash and capture3.stack:
        path = capture3.stack[-1]
        flat = [t for t in output_leaves(capture2.outputs.get(path))[0]
                if isinstance(t, torch.Tensor) and 1 <= t.dim() < 4 and len(t) == batch]
        inputs = outputs_problem(capture3.inputs.get(path), capture2.inputs.get(path),
                                 axis=axis, **shape)
        if flat and not inputs:
            crash = (f"its 2D output {tuple(flat[0].shape)} is computed per slice and is not a "
                     "feature map (no global pool before it), so it has no volume layout")
        return Divergence(path, crash, training, inputs_differ=bool(inputs))
    return Divergence("", crash or problem, training)

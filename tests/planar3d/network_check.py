"""The network sweep's machinery: convert one case in planar mode and hold it to docs/design.md P0.

Outcome of a case:
- `exact`: converts, and every check below agrees with the reference;
- `refused`: `convert` raises UnsupportedModuleError;
- `error`: `convert` raises anything else (no clear refusal);
- `wrong`: converts, and an output, gradient or buffer differs from the reference;
- `crash`: converts, then a forward, backward, copy or pickle fails.

Checks on a converted model (converted in float32 as users do), on N=2 volumes of D=3 slices:
1. copies: `copy.deepcopy` and a pickle round trip compute the reference of the same copy of
   the 2D network (float32); then, in float64 (`.double()`, so that only float rounding
   separates equal computations):
2. eval, distinct slices: every output (shape and values) against `stacked_reference`;
3. eval, depth-constant volume: the same, and (unless the network couples the batch) the 2D
   network's outputs on the N images (P2);
4. one train step, random layers off: the loss (fixed random weights on every output), every
   parameter gradient (planar kernels through `planar3d.kernel_to_2d`) and every buffer
   afterwards against the 2D network on the stacked slices;
5. each random layer alone on (rate 0.5), train mode, depth-constant volume: where the 2D
   network on the stacked slices draws one mask per slice (its slices differ), so must the
   converted one;
6. a second slice size (`second_size`: odd and a multiple of no stride where the 2D network
   accepts it, else the next size it accepts): checks 2 and 4 again there. A network must be
   exact at every slice size its 2D network accepts, not only at the example's.
Results go to build/networks/<id>.json for scripts/network_table.py.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from p3d_oracle import (
    NoPlanarMeaning,
    map_outputs,
    output_leaves,
    slice_mismatches,
    stacked_reference,
)
from zoo import hw, random_rate, random_sites, second_size, set_random_rates

import planar3d
from planar3d import UnsupportedModuleError

if TYPE_CHECKING:
    from networks import Case

RESULTS = Path(os.environ.get("PLANAR3D_NETWORKS_DIR", "build/networks"))
Head = str | tuple[str, ...] | None  # the module(s) holding P0's head pool (networks.Case.head)
N, D = 2, 3
# float64: equal computations in another order differ by ~1e-15 of the output scale
RTOL = 1e-9
# float32 (the copies check): rounding amplified by a deep network, far below a wrong answer
RTOL_FLOAT32 = 1e-4


class Mismatch(AssertionError):
    """The converted network computes something else than the reference."""


def volumes(channels: int, size: int | tuple[int, int]) -> dict[str, torch.Tensor]:
    """Distinct slices, and a depth-constant volume of the first slices (slices of `size`:
    one int for square slices, or (H, W))."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, channels, D, *hw(size), generator=g, dtype=torch.float64)
    constant = x[:, :, :1].expand(-1, -1, D, -1, -1).contiguous()
    return {"distinct": x, "constant": constant}


def _leaves(tree) -> dict[str, object]:
    return output_leaves(tree)


def compare(got, want, what: str, rtol: float = RTOL) -> float:
    """Largest relative error of `got` against `want` (trees); raises Mismatch with the first
    difference in structure, shape or value."""
    got_leaves, want_leaves = _leaves(got), _leaves(want)
    if list(got_leaves) != list(want_leaves):
        raise Mismatch(f"{what}: returns {list(got_leaves)[:6]} instead of "
                       f"{list(want_leaves)[:6]}")
    worst = 0.0
    for name, w in want_leaves.items():
        g = got_leaves[name]
        if not isinstance(w, torch.Tensor):
            if g != w:
                raise Mismatch(f"{what}: {name} is {g!r} instead of {w!r}")
            continue
        if not isinstance(g, torch.Tensor) or g.shape != w.shape:
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise Mismatch(f"{what}: {name} has shape {shape} instead of {tuple(w.shape)}")
        worst = max(worst, _error(g, w, name, what, rtol))
    return worst


def _error(got: torch.Tensor, want: torch.Tensor, name: str, what: str, rtol: float,
           floor: float = 1e-6) -> float:
    if not want.is_floating_point():
        if not torch.equal(got, want):
            raise Mismatch(f"{what}: {name} differs")
        return 0.0
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(want).all():
        raise Mismatch(f"{what}: {name}: the reference is not finite (a case to fix)")
    scale = max(want.abs().max().item(), floor, 1e-6) if want.numel() else 1.0
    err = (got - want).abs().max().item() / scale if want.numel() else 0.0
    if not err <= rtol:  # NaN fails too
        raise Mismatch(f"{what}: {name} differs by {err:.3g} of its scale {scale:.3g}")
    return err


def _loss(outputs, weights: list[torch.Tensor]) -> torch.Tensor:
    leaves = [t for t in _leaves(outputs).values()
              if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum((w * t).sum() for w, t in zip(weights, leaves))


def _loss_weights(reference) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randn(t.shape, generator=g, dtype=torch.float64)
            for t in _leaves(reference).values()
            if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _as_2d(name: str, got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    if got.dim() == want.dim() + 1 and got.shape[2] == 1:
        return planar3d.kernel_to_2d(got)
    return got


def check_eval(model2d, model3d, xs: dict[str, torch.Tensor], head: Head, *,
               batch_coupled: bool = False) -> float:
    """Eval outputs on each volume against P0; on the depth-constant one also against the 2D
    network on its images (P2), unless the network couples the batch."""
    worst = 0.0
    for kind, x in xs.items():
        with torch.no_grad():
            got = model3d(x)  # first: a network that crashes here is a crash, whatever else
        want = stacked_reference(model2d, x, head)
        worst = max(worst, compare(got, want, f"eval, {kind} slices"))
        if kind == "constant" and not batch_coupled:
            with torch.no_grad():
                images = model2d(x[:, :, 0])
            layout = map_outputs(lambda t: t.unsqueeze(-3).expand(*t.shape[:-2], D, *t.shape[-2:])
                                 if isinstance(t, torch.Tensor) and t.dim() >= 3 else t, images)
            worst = max(worst, compare(got, layout, "eval, depth-constant volume against the "
                                                    "2D network on its images (P2)"))
    return worst


def _copy_methods() -> dict[str, object]:
    return {"deep copy": copy.deepcopy,
            "pickle round trip": lambda m: pickle.loads(pickle.dumps(m))}


def check_copies(model2d, model3d, x, head: Head) -> tuple[float, list[str]]:
    """Every way of copying the 2D model also copies the converted one: the copy computes the
    reference of the same copy of the 2D model (torch refuses to pickle parametrised modules:
    then neither is pickled; random layers off, as a copy may come back in train mode). Run in
    the models' own precision (float32: the values are checked in float64 elsewhere)."""
    notes, worst = [], 0.0
    for name, fn in _copy_methods().items():
        try:
            copy2d = fn(model2d)
        except Exception as error:
            notes.append(f"{name} not checked: the 2D model fails it too "
                         f"({type(error).__name__}: {str(error)[:120]})")
            continue
        copy3d = fn(model3d)
        set_random_rates(copy2d, 0.0)
        set_random_rates(copy3d, 0.0)
        with torch.no_grad():
            got = copy3d(x)
        want = stacked_reference(copy2d, x, head)
        worst = max(worst, compare(got, want, name, rtol=RTOL_FLOAT32))
        del copy2d, copy3d
    return worst, notes


GRADIENT_FLOOR = 1e-4


def check_train_step(model2d, model3d, x, head: Head) -> float:
    """One train step on the distinct volume (random layers off); mutates model3d."""
    model2d = copy.deepcopy(model2d).train()
    model3d.train()
    set_random_rates(model2d, 0.0)
    set_random_rates(model3d, 0.0)
    got = model3d(x)
    want = stacked_reference(model2d, x, head, grad=True)
    worst = compare(map_outputs(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, got),
                    map_outputs(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, want),
                    "train mode")
    weights = _loss_weights(want)
    if not weights:  # no floating-point output (a label map): nothing to differentiate
        return worst
    loss2, loss3 = _loss(want, weights), _loss(got, weights)
    worst = max(worst, _error(loss3.detach(), loss2.detach(), "loss", "train step", RTOL))
    loss2.backward()
    loss3.backward()
    params3 = dict(model3d.named_parameters())
    # a gradient that is zero in exact arithmetic (a bias followed by a train-mode BatchNorm) is
    # rounding noise, whose size is set by the network's gradients, not by its own
    floor = GRADIENT_FLOOR * max((p.grad.abs().max().item() for p in model2d.parameters()
                                  if p.grad is not None and p.grad.numel()), default=0.0)
    for name, p in model2d.named_parameters():
        if name not in params3:
            raise Mismatch(f"train step: parameter {name} is missing from the converted model")
        g2, g3 = p.grad, params3[name].grad
        if (g2 is None) != (g3 is None):
            raise Mismatch(f"train step: gradient of {name} is "
                           f"{'missing' if g3 is None else 'present, the 2D one is not'}")
        if g2 is not None:
            g3 = _as_2d(name, g3, g2)
            if g3.shape != g2.shape:
                raise Mismatch(f"train step: gradient of {name} has shape {tuple(g3.shape)}")
            worst = max(worst, _error(g3, g2, f"gradient of {name}", "train step", RTOL,
                                      floor=floor))
    buffers3 = dict(model3d.named_buffers())
    for name, b in model2d.named_buffers():
        if name not in buffers3:
            raise Mismatch(f"train step: buffer {name} is missing from the converted model")
        b3 = _as_2d(name, buffers3[name], b)
        if b3.shape != b.shape:
            raise Mismatch(f"train step: buffer {name} has shape {tuple(b3.shape)}")
        worst = max(worst, _error(b3, b, f"buffer {name}", "after a train step", RTOL))
    return worst


def _varies_along_depth(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() >= 5 and t.is_floating_point() and bool(
        (t - t.narrow(-3, 0, 1)).abs().max() > 0)


RANDOM_DEPTH = 24


def check_random_layers(model2d, model3d, x, head: Head) -> None:
    """One draw per slice, decided by what the layer is: each random layer of the network (rate
    above 0) alone switched on (rate 0.5), train mode, depth-constant volume; where the 2D
    network on the stacked slices then gives slices that differ, the converted network must
    too."""
    model2d = copy.deepcopy(model2d).train()
    model3d.train()
    # deep enough that independent draws of rate 0.5 differ somewhere (else 2 x 2**-D per volume)
    x = x[:, :, :1].expand(-1, -1, RANDOM_DEPTH, -1, -1).contiguous()
    sites = random_sites(model2d)
    active = [(path, attr) for path, attr in sites
              if random_rate(model2d.get_submodule(path), attr) > 0]
    if not active:
        return
    set_random_rates(model2d, 0.0, sites)
    with torch.no_grad():
        maps = [t for t in _leaves(stacked_reference(model2d, x, head)).values()
                if isinstance(t, torch.Tensor) and t.dim() >= 5]
    for site in active if maps else []:  # a draw shows only in outputs with slices
        for model in (model2d, model3d):
            set_random_rates(model, 0.0, sites)
            set_random_rates(model, 0.5, [site])
        with torch.no_grad():
            want = _leaves(stacked_reference(model2d, x, head))
            got = _leaves(model3d(x))
        for name, w in want.items():
            if _varies_along_depth(w) and not _varies_along_depth(got.get(name)):
                raise Mismatch(
                    f"train mode, random layer {site[0] or '<root>'} ({site[1]}={0.5}): {name} "
                    "has equal slices on a depth-constant volume (one random draw per volume; "
                    "the reference draws one per slice)")


def _first_modules(model2d, model3d, x) -> list[str]:
    try:
        return slice_mismatches(model2d, model3d, x, rtol=RTOL)[:3]
    except Exception as error:
        return [f"(module comparison failed: {type(error).__name__}: {error})"[:200]]


def _run_checks(case: Case, model2d, model3d, record: dict) -> None:
    xs = volumes(case.channels, case.size)
    head = case.head

    def copies():
        return check_copies(model2d, model3d, xs["distinct"].float(), head)

    def in_float64():
        nonlocal model2d, model3d
        model2d, model3d = model2d.double(), model3d.double()

    def at_second_size():
        size = second_size(model2d, case.channels, case.size)
        record["second_size"] = "x".join(map(str, size)) if size else None
        if size is None:
            record["notes"].append("the 2D network runs at no second size: checked at one size")
            return 0.0
        other = volumes(case.channels, size)
        worst = check_eval(model2d, model3d.eval(), other, head,
                           batch_coupled=case.batch_coupled)
        # on a copy: a train step changes the converted network's buffers
        return max(worst, check_train_step(model2d, copy.deepcopy(model3d), other["distinct"],
                                           head))

    steps = (("copies", copies),
             ("float64", in_float64),
             ("eval", lambda: check_eval(model2d, model3d, xs, head,
                                         batch_coupled=case.batch_coupled)),
             ("second size", at_second_size),
             ("train step", lambda: check_train_step(model2d, model3d, xs["distinct"], head)),
             ("random layers", lambda: check_random_layers(model2d, model3d, xs["constant"],
                                                           head)))
    worst, order = 0.0, [name for name, _ in steps]
    for step, run in steps:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run()
            if isinstance(result, tuple):
                result, notes = result
                record["notes"] += notes
            worst = max(worst, result or 0.0)
        except (Mismatch, NoPlanarMeaning) as error:
            record["problems"].append(("wrong", step, str(error)[:400]))
            if step == "eval":
                record["modules"] = _first_modules(model2d, model3d.eval(), xs["distinct"])
        except Exception as error:
            record["problems"].append(("crash", step, f"{step}: {type(error).__name__}: "
                                                      f"{str(error)[:400]}"))
    # the first symptom to report: eval outputs, then the second size, train mode, random
    # layers, copies
    first = ("eval", "second size", "train step", "random layers", "copies")
    record["problems"] = [(kind, text) for kind, step, text in sorted(
        record["problems"], key=lambda p: first.index(p[1]) if p[1] in first else len(order))]
    record["max_error"] = worst


def check_case(case: Case) -> dict:
    """Convert `case` in planar mode, run every check; returns (and writes) its record."""
    start = time.time()
    model2d, example, channels, size = case.make()
    record: dict = {"id": case.id, "source": case.source, "model": type(model2d).__name__,
                    "input": f"{channels}x{size}x{size}", "expected": (
                        "refused" if case.refusal else "exact"), "refusal": case.refusal,
                    "problems": [], "modules": [], "notes": []}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model3d = planar3d.convert(model2d, example_input=example if case.with_example
                                       else None)
    except UnsupportedModuleError as error:
        record.update(outcome="refused", detail=str(error))
    except Exception as error:
        record.update(outcome="error", detail=f"{type(error).__name__}: {str(error)[:400]}")
    else:
        _run_checks(case, model2d, model3d, record)
        kinds = [kind for kind, _ in record["problems"]]
        outcome = "wrong" if "wrong" in kinds else "crash" if kinds else "exact"
        record.update(outcome=outcome, detail="; ".join(p for _, p in record["problems"]))
    record["seconds"] = round(time.time() - start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{case.id}.json").write_text(json.dumps(record, indent=1))
    return record


def explain(record: dict) -> str:
    """A record's outcome, detail and first differing modules, for a failed assertion."""
    lines = [f"{record['id']}: {record['outcome']} (expected {record['expected']})",
             f"  {record['detail'][:1200]}"]
    if record["modules"]:
        lines.append(f"  first modules that differ: {record['modules']}")
    return "\n".join(lines)


def assert_as_expected(case: Case, record: dict) -> None:
    """Exact, or refused with a fix where the case says why no exact 3D network exists."""
    if case.refusal:
        assert record["outcome"] == "refused", (
            f"expected UnsupportedModuleError ({case.refusal}); update the case if it now "
            f"converts exactly\n{explain(record)}")
        assert "Fix:" in record["detail"], f"the refusal names no fix\n{explain(record)}"
    else:
        assert record["outcome"] == "exact", explain(record)

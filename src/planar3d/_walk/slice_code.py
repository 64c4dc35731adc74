"""Slice code as a decision: a module's own code runs on the stacked slices, the modules it calls
on volumes (`layers.slice_code`); and a head module that pools a set of positions runs on the
positions of all slices (`layers.all_slices`).

Slice code is tried where a module's own code cannot run on volumes as it is nor be rewritten:
before folding in the body when the module holds layers that other modes or depth layers change
(folding would keep them 2D), and in a head after the slice-wise fold, when the module's code
holds the head pool (the pool merges the slices). Its descendants, converted bottom-up, run on
volumes when their recorded inputs were per-image maps or token sequences (their probes checked
them so); a descendant called with other tensors (tnt's pixel tokens, (B·L, 16, 24)) runs its 2D
code on the per-slice tensors instead, as its 2D copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._containers import map_leaves
from .._judge.probe import ProbeResult, probe_constant
from .._judge.reference import ALL_SLICES
from .._judge.tolerance import difference
from .._record import CallRecord, is_standard, tensors
from .._tree import join
from ..layers._swap import deepcopy_module, reclass
from ..layers.all_slices import all_slices_module
from ..layers.slice_code import lifted_without_slices, slice_code_module
from .session import Session, short

__all__ = ["slice_code", "try_all_slices"]

# how many times a probe may find layers after the head pool among those given volumes
MAX_POOLED = 3


def _inputs(record: CallRecord) -> list[torch.Tensor]:
    return tensors((record.args, record.kwargs))


def _plan_descendants(s: Session, module: nn.Module, path: str) -> tuple[set[str], list[str]]:
    """(paths of the descendants to give volumes, paths of those to run as 2D copies), relative
    to `module`. The code may call any descendant (a block of a container it iterates): every
    one recorded with per-image maps or token sequences is given volumes, and one recorded with
    other tensors of positions runs as its 2D copy, with what is inside it."""
    lifted, two_d = set(), []

    def visit(parent: nn.Module, rel: str) -> None:
        for name, child in parent.named_children():
            child_rel = join(rel, name)
            record = s.records.at(join(path, child_rel))
            if record is not None and is_standard((record.args, record.kwargs), s.batch):
                lifted.add(child_rel)
            elif record is not None and any(t.dim() >= 3 for t in _inputs(record)):
                two_d.append(child_rel)
                continue
            visit(child, child_rel)

    visit(module, "")
    return lifted, two_d


def _image_size(s: Session, record: CallRecord) -> tuple[int, int] | None:
    """The in-plane size of the example's images, when `record`'s call received them."""
    images = [t for t in tensors(s.records.call) if t.dim() == 4]
    if images and any(t.shape == images[0].shape for t in _inputs(record)):
        height, width = images[0].shape[-2:]
        return height, width
    return None


def slice_code(s: Session, module: nn.Module, path: str, record: CallRecord, *, head: bool,
               reason: str, probe) -> nn.Module | None:
    """`module` (its children converted) as slice code, if `probe(candidate)` accepts it; else
    None and `module` is left as it was.

    Args:
        head: its code holds the head pool, which merges the slices.
        reason: why its code cannot run on volumes (for the report).
        probe: the probe the candidate must pass (P0 in the body, P2 in a head).
    """
    lifted, two_d = _plan_descendants(s, module, path)
    for _ in range(MAX_POOLED):
        # a module of its own class sharing the converted children (not the children's slots,
        # nor a record: a failed probe leaves `module` as it was)
        candidate = reclass(module, type(module))
        candidate.__dict__.pop("_planar3d", None)
        for rel in two_d:
            candidate.set_submodule(rel, deepcopy_module(s.source(join(path, rel))))
        slice_code_module(candidate, axis=s.axis, head=head, lifted=lifted,
                          image_size=_image_size(s, record))
        with lifted_without_slices() as pooled:
            result: ProbeResult = probe(candidate)
        paths = {id(m): p for p, m in candidate.named_modules()}
        after_pool = {paths[id(m)] for m in pooled if id(m) in paths} & lifted
        if not after_pool:
            break
        # layers after the head pool (they see merged tensors): their 2D code as it is
        lifted -= after_pool
        two_d += sorted(after_pool)
    if not result.ok:
        return None
    for rel in two_d:
        full = join(path, rel)
        s.plan.forget_below(full)
        s.plan.decide(full, type(s.source(full)).__name__, "folded",
                      f"its 2D code runs on what the code of {path or '<root>'} gives it (slices "
                      f"of other tensors than maps or token sequences, or pooled rows)")
    if head:
        s.plan.sites[path] = "slice code"
    kind = "holds the head pool, which merges the slices; " if head else ""
    s.plan.decide(path, type(module).__name__, "slice code", kind + short(reason, 120))
    return candidate


def _permutation_invariant(module: nn.Module, record: CallRecord, dim: int) -> bool:
    """Whether the 2D module's output stays the same when the positions along per-image dim
    `dim` of its inputs are permuted (the same permutation for every input): up to float64
    rounding, on a float64 copy, so that an output that depends on the order only a little
    (a convolution's features on a large offset, pooled) is not taken for one that does not.
    Its parameters that are all zero (a classifier initialised to zero) are drawn at random
    there: a module that computes a constant is order-free whatever its code, and its code is
    what must be order-free for the weights it will be trained to or loaded with."""
    args, kwargs = map_leaves(
        lambda t: t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t,
        record.inputs())
    sizes = {t.shape[dim] for t in _inputs(record) if t.dim() > dim}
    if len(sizes) != 1 or next(iter(sizes)) < 2:
        return False
    order = torch.randperm(next(iter(sizes)), generator=torch.Generator().manual_seed(0))

    def permuted(t):
        return t.index_select(dim, order) if isinstance(t, torch.Tensor) else t

    shuffled = map_leaves(permuted, (args, kwargs))
    module = _with_generic_weights(module)
    with torch.no_grad():
        try:
            want, got = module(*args, **kwargs), module(*shuffled[0], **shuffled[1])
        except Exception:
            return False
    pairs = list(zip(tensors(want), tensors(got)))
    return bool(pairs) and all(w.shape == g.shape and not difference(g, w, loose=True)
                               for w, g in pairs)


def _with_generic_weights(module: nn.Module) -> nn.Module:
    """A float64 copy of `module` whose all-zero parameters are drawn at random (seeded)."""
    module = copy.deepcopy(module).double()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.numel() and not parameter.any():
                parameter.normal_(0.0, 0.02, generator=generator)
    return module


def try_all_slices(s: Session, module: nn.Module, path: str, record: CallRecord
                   ) -> nn.Module | None:
    """The head module at `path` run on the positions of all slices, if its output does not
    depend on the order of its positions (attention pooling, means, maxima over tokens) along
    a position dim of its inputs and that reproduces the 2D module on equal slices; else None.
    """
    source = s.source(path)
    ranks = {t.dim() for t in _inputs(record)}
    if not ranks or min(ranks) < 3 or not is_standard((record.args, record.kwargs), s.batch):
        return None
    for dim in range(1, min(ranks) - 1):
        if not _permutation_invariant(source, record, dim):
            continue
        candidate = all_slices_module(deepcopy_module(source), axis=s.axis, position_dim=dim)
        candidate.train(module.training)
        result = probe_constant(candidate, record, axis=s.axis, loose=True)
        if result.ok and result.merged:
            s.plan.forget_below(path)
            s.plan.sites[path] = f"{ALL_SLICES}{dim}"
            s.plan.decide(path, type(source).__name__, "all slices",
                          f"its output does not depend on the order of its positions (dim "
                          f"{dim}): it runs on those of all slices")
            return candidate
    return None

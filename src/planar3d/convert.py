"""`planar3d.convert`: turn a 2D network into a 3D one that starts from its weights.

How a network is converted (docs/design.md §1), and where each decision is made:

1. The 2D network runs once on an example call (`_example`); every module's first call is
   recorded (`_record`). A module belongs to the classifier *head* when it and all its
   ancestors return non-spatial tensors (logits, pooled features); everything else is the
   per-slice *body*.
2. Modules are visited bottom-up (`_walk`). A module whose exact type has a converter is
   replaced by the converter's result. Any other module keeps its own forward with converted
   children, if a probe shows that this reproduces the 2D network: slice by slice in the body
   (P1), on depth-constant volumes in the head (P2), where the first global/adaptive pool pools
   the planar axis away. Otherwise a body module holding spatial kernels gets its forward
   traced by torch.fx so that its functional code acts per slice (`_rewrite`), or runs its own
   code on the slices with its children on volumes (*slice code*, `layers.slice_code`), or is
   *folded* (its 2D forward runs on the slices); a head module's functional pooling is
   rewritten by torch.fx, a head that pools a set of positions runs on those of all slices,
   or it runs slice-wise, or as slice code whose pool merges the slices (token models: a class
   token averaged over the slices, a mean over every slice's tokens); if nothing reproduces
   the 2D network,
   `UnsupportedModuleError` says which module and why. All of this is decided in planar terms,
   whatever the mode, and written into the plan (`_plan`), of which the conversion report is a
   view.
3. The whole converted network is checked against the reference (`_judge`, which also holds
   the probes); a body module found diverging is folded and the check runs again.
4. Planar convolutions take the mode's kernels (center, inflate, acs; `_mode_kernels`), and
   under the depth policies "pool"/"all" pooling (and strided) layers also act along depth
   (`_mode_pass`); a token model's patch embedding becomes a tubelet under "pool", and the
   depth layers asked for are added at the sites found from the example run (`tokens`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._axis import axis_name, parse_axis, require_volume
from ._calls import VerifiedCall
from ._containers import opaque_leaves
from ._example import PROBE_VOLUMES, example_call, refuse_unconvertible
from ._judge.network import check_network
from ._judge.reference import Reference, as_volumes
from ._mode_pass import apply_mode, check_runs
from ._modes import restore_flags
from ._plan import Plan
from ._record import Call, CallRecords, batch_of, describe_inputs, images_of
from ._state import state
from ._walk.repair import refusal, repair
from ._walk.session import Session, whole
from ._walk.walk import Walk
from .context import (
    DEPTH_LAYERS,
    DEPTH_POLICIES,
    MODES,
    Axis,
    ConversionContext,
    DepthLayer,
    DepthPolicy,
    Mode,
)
from .errors import UnsupportedModuleError
from .layers._swap import deepcopy_module
from .registry import Converter, default_converters
from .report import attach_report, is_converted
from .tokens.apply import add_depth
from .tokens.sites import find_depth_sites

__all__ = ["convert"]

# how many modules the end-to-end check may fold before it gives up
MAX_REPAIRS = 8


def _check_volume_input(module: nn.Module, args: tuple) -> None:
    if args and isinstance(args[0], torch.Tensor):
        require_volume(args[0], f"converted {type(module).__name__}")


def convert(
    model: nn.Module,
    *,
    mode: Mode = "planar",
    axis: Axis | int = "D",
    depth: DepthPolicy = "keep",
    kernel_depth: int = 3,
    depth_layers: Sequence[DepthLayer] = (),
    inplace: bool = False,
    example_input: torch.Tensor | tuple | None = None,
    example_kwargs: Mapping[str, Any] | None = None,
    converters: Mapping[type, Converter] | None = None,
) -> nn.Module:
    """Convert a 2D network into a 3D network for (N, C, D, H, W) volumes.

    Args:
        model: a 2D network (timm, torchvision or your own), in any train/eval state.
        mode: kernel mapping. "planar": kernels (1, kh, kw), the network reproduces the 2D
            network slice by slice (docs/design.md P1). "center": depth-k kernels holding the 2D
            kernel in their middle plane (exactly planar at initialisation, P3). "inflate": I3D
            inflation, the 2D kernel repeated k times / k (2D response on depth-constant input,
            P2). "acs": output channels split in three parts, each planar along D, H or W (P4).
            In every mode 1x1 kernels stay planar and functional code acts per slice.
        axis: the planar axis, "D" (default), "H" or "W", or its tensor dim 2, 3 or 4.
        depth: "keep" (depth preserved everywhere), "pool" (pooling layers also pool along the
            planar axis, as the seed paper's encoder; in the center and inflate modes a token
            model's patch embedding makes tubelets of `kernel_depth` slices), or "all"
            (strided convolutions too).
        kernel_depth: kernel size along the planar axis for the "center"/"inflate" modes.
        depth_layers: layers that learn depth, added to a token model at zero so that the
            network still computes what it computes without them: "position" (a depth
            position embedding on the patch embedding's output), "attention" (divided
            space-depth attention: beside every attention module, an attention over the slices
            at each position).
        inplace: convert `model`'s modules in place instead of a deep copy.
        example_input: a (B >= 2, C, H, W) batch the 2D model accepts, used to probe the
            conversion, or a tuple of the 2D model's positional inputs (a two-input network:
            `(a, b)`), each batch of images with the same B. Default: 2 random images of
            timm's `pretrained_cfg["input_size"]`, else 224x224. Its deepest feature maps
            should be larger than 1x1.
        example_kwargs: the 2D model's keyword inputs for that call (`{"mask": m}`,
            `{"return_features": True}`). The converted network takes this call (with
            volumes for the batches of images); another call (other arguments, other values
            of a flag, other tensor ranks) raises UnsupportedModuleError naming the argument.
        converters: extra converters for this call, `{module_type: fn(module, ctx)}`, looked up
            by exact type before the registered ones.
    Returns:
        The converted network (a new object unless `inplace`). Parameter and buffer names equal
        the 2D model's; `planar3d.conversion_report(result)` says what was done to each module.
        It computes the 2D network on the stacked slices (planar) at every slice size the 2D
        network accepts, for the call it was converted for.
    Raises:
        TypeError: if `model` is not an nn.Module or a converter is not callable.
        ValueError: for an invalid option, an already converted model, or an unusable example.
        UnsupportedModuleError: if a module cannot be converted exactly; it names the module,
            its type, the reason and the fix.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert() takes an nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(kernel_depth, int) or isinstance(kernel_depth, bool) or kernel_depth < 1:
        raise ValueError(f"kernel_depth must be a positive int, got {kernel_depth!r}")
    if mode == "center" and kernel_depth % 2 == 0:
        raise ValueError(
            f"mode='center' needs an odd kernel_depth (a middle plane), got {kernel_depth}; use "
            f"{kernel_depth + 1}"
        )
    if depth not in DEPTH_POLICIES:
        raise ValueError(
            f"depth must be one of {DEPTH_POLICIES} ('keep': depth preserved everywhere; 'pool': "
            f"pooling layers pool depth too; 'all': strided convolutions too), got {depth!r}"
        )
    layers = tuple(depth_layers)
    if isinstance(depth_layers, str) or any(layer not in DEPTH_LAYERS for layer in layers):
        raise ValueError(
            f"depth_layers must be a sequence of {DEPTH_LAYERS} ('position': a depth position "
            f"embedding; 'attention': divided space-depth attention), got {depth_layers!r}"
        )
    if is_converted(model):
        raise ValueError(
            "this model was already converted by planar3d; convert the original 2D model"
        )
    axis_dim = parse_axis(axis)
    registry = default_converters()
    for kind, fn in (converters or {}).items():
        if not (isinstance(kind, type) and issubclass(kind, nn.Module)) or not callable(fn):
            raise TypeError(
                f"converters must map nn.Module subclasses to fn(module, ctx), got {kind!r}: {fn!r}"
            )
        registry[kind] = fn

    refuse_unconvertible(model)
    with _one_thread():
        call = example_call(model, example_input, example_kwargs)
        return _convert(model, call=call, inplace=inplace, registry=registry,
                        ctx=ConversionContext(mode=mode, axis=axis_dim, depth=depth,
                                              kernel_depth=kernel_depth,
                                              depth_layers=tuple(dict.fromkeys(layers))))


@contextlib.contextmanager
def _one_thread():
    """Conversion runs the network on a few small images: one thread does it fastest, and two
    threads busy-waiting on a loaded machine do it many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _convert(model: nn.Module, *, call: Call, inplace: bool, registry, ctx
             ) -> nn.Module:
    # the network's buffers as they are now: conversion runs it, and a module that updates a
    # buffer in its forward must not leave the caller's model (or the result) changed
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        root = _convert_model(model, call=call, inplace=inplace,
                              registry=registry, ctx=ctx)
    finally:
        _put_back(model, buffers)
    _put_back(root, buffers)
    return root


def _put_back(model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            saved = buffers.get(name)
            if saved is not None and saved.shape == buffer.shape and not buffer.is_inference():
                buffer.copy_(saved)


def _convert_model(model: nn.Module, *, call: Call, inplace: bool, registry, ctx
                   ) -> nn.Module:
    try:
        return _convert_on(model, call, inplace=inplace, registry=registry, ctx=ctx)
    except (torch.OutOfMemoryError, MemoryError) as error:
        images = images_of(call)
        raise UnsupportedModuleError(
            "", type(model).__name__,
            f"conversion ran out of memory running the network on volumes made of "
            f"{describe_inputs(call)} ({type(error).__name__}: {whole(str(error))})",
            f"pass a smaller example_input: fewer or smaller images (two are enough, e.g. "
            f"torch.randn(2, {images.shape[1]}, {max(32, images.shape[-2] // 2)}, "
            f"{max(32, images.shape[-1] // 2)})); conversion runs the 2D and the converted "
            f"network on them, in eval and in train mode",
        ) from None


def _convert_on(model: nn.Module, call: Call, *, inplace: bool, registry, ctx
                ) -> nn.Module:
    pristine = deepcopy_module(model) if inplace else model
    work = model if inplace else deepcopy_module(model)
    # read from the caller's model: some copies (torch.fx graphs) come back in train mode
    flags = {name: module.training for name, module in model.named_modules()}
    originals = list(work.modules())  # keeps every original alive: ids stay unique while in use
    plan = Plan()
    records = CallRecords(work, call, source=pristine)
    session = Session(ctx=ctx, registry=registry, pristine=pristine, records=records,
                      plan=plan, volumes=PROBE_VOLUMES)
    work.eval()
    # the network's own hooks run in every run (some networks need them to compute at all:
    # transformers collects hidden states with forward hooks), so the root's record is the
    # network's eval output
    root_record = records.first_call(work)
    recorded = None if root_record is None else root_record.output
    _refuse_opaque_outputs(work, recorded)
    root = Walk(session).visit(work, "", "head")
    sites = find_depth_sites(pristine, records)
    # what the example's eval run computes before its head pools: the end-to-end check's
    # reference need not compute it again
    replay = records.before(plan.sites)
    records.release()
    restore_flags([(m, flags[name]) for name, m in root.named_modules() if name in flags])
    root = _verified(root, call, session, recorded, replay)
    if ctx.mode != "planar" or ctx.depth != "keep" or ctx.depth_layers:
        root = apply_mode(root, ctx=ctx, pristine=pristine, registry=registry, plan=plan)
        root = add_depth(root, sites=sites, ctx=ctx, source=pristine, decide=plan.decide)
        check_runs(root, call, axis=ctx.axis, volumes=PROBE_VOLUMES)
    root.register_forward_pre_hook(_check_volume_input, prepend=True)
    root.register_forward_pre_hook(
        VerifiedCall(root, *as_volumes(call, batch=batch_of(call), volumes=PROBE_VOLUMES,
                                       axis=ctx.axis)), with_kwargs=True)
    attach_report(root, plan.report(mode=ctx.mode, axis=axis_name(ctx.axis), depth=ctx.depth,
                                    example_shape=tuple(images_of(call).shape)))
    state(root).depth_sites = sites  # for thicken
    del originals
    return root


def _refuse_opaque_outputs(model: nn.Module, outputs) -> None:
    """Every output of the network is compared with the reference: an output that holds what no
    comparison can look into (an object with tensors in its attributes) is refused."""
    opaque = opaque_leaves(outputs)
    if opaque:
        raise UnsupportedModuleError(
            "", type(model).__name__,
            f"it returns {', '.join(opaque)} object(s), which no check can look into: what "
            "they hold could not be checked against the 2D network",
            "return tensors in tuples, lists, dicts, dataclasses or namedtuples (a wrapper "
            "module around this network can convert its outputs), and convert that",
        )


def _verified(root: nn.Module, call: Call, session: Session, recorded, replay) -> nn.Module:
    """The end-to-end check against the reference (`_judge.network`); a body module found
    diverging is folded and the check runs again, anything else raises. `replay`: the records
    the reference's eval run of the example may reuse (`Reference.replay`), until a repair
    changes the head-pool sites."""
    reference = Reference(session.pristine, PROBE_VOLUMES, session.plan.sites, replay)
    # the root's own check ran the eval-mode check already, if nothing changed since
    eval_checked = session.plan.root_checked == session.plan.sites
    for _ in range(MAX_REPAIRS + 1):
        divergence = check_network(reference, root, call, axis=session.axis,
                                   recorded=recorded, eval_checked=eval_checked)
        eval_checked = False
        if divergence is None:
            return root
        repaired = repair(session, root, divergence)
        if repaired is None:
            break
        root = repaired
        reference = Reference(session.pristine, PROBE_VOLUMES, session.plan.sites)
    raise refusal(root, divergence)

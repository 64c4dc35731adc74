"""`planar3d.convert`: turn a 2D network into a 3D one that starts from its weights.

How a network is converted (DESIGN.md §1):

1. The 2D network runs once on an example batch; every module's first call is recorded. A module
   belongs to the classifier *head* when it and all its ancestors return non-spatial tensors
   (logits, pooled features); everything else is the per-slice *body*.
2. Modules are visited bottom-up. A module whose exact type has a converter is replaced by the
   converter's result. Any other module keeps its own forward with converted children, if a
   probe shows that this reproduces the 2D network: slice by slice in the body (P1), on
   depth-constant volumes in the head (P2), where the first global/adaptive pool pools the
   planar axis away. Otherwise a body module is *folded* (its 2D forward runs on the slices),
   a head module's functional code is rewritten by torch.fx or run slice-wise, and if nothing
   reproduces the 2D network, `UnsupportedModuleError` says which module and why.
3. Under depth policies "pool"/"all", pooling (and strided) layers then also act along depth.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from ._axis import axis_name, parse_axis, require_volume
from ._body_rewrite import rewrite_body_forward
from ._fx import is_rewritten, unrewrite
from ._head_rewrite import rewrite_head_forward
from ._probe import is_standard, probe_constant, probe_slices
from ._record import CallRecord, record_calls
from .context import DEPTH_POLICIES, MODES, ConversionContext
from .errors import UnsupportedModuleError
from .layers.fold import fold_module, is_folded
from .layers.planar_conv import PlanarConv3d, PlanarConvTranspose3d
from .layers.planar_pool import (
    HeadAdaptiveAvgPool2d,
    HeadAdaptiveMaxPool2d,
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarMaxPool3d,
)
from .registry import Converter, default_converters
from .report import ConversionReport

__all__ = ["convert"]

_HEAD_POOLS = (HeadAdaptiveAvgPool2d, HeadAdaptiveMaxPool2d)
# converted layers that accept volumes only
_VOLUME_ONLY = (PlanarConv3d, PlanarConvTranspose3d, PlanarMaxPool3d, PlanarAvgPool3d,
                PlanarAdaptiveAvgPool3d, PlanarAdaptiveMaxPool3d, nn.BatchNorm3d)


def _builtin_types() -> frozenset:
    from . import converters

    return frozenset(converters._REGISTRATIONS) | frozenset(converters._KEEP) | frozenset(
        converters._FOLD
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(reason: str, limit: int = 160) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _is_container(module: nn.Module) -> bool:
    forward = type(module).forward
    return forward is nn.Sequential.forward or forward is nn.Module.forward


class _Planner:
    def __init__(self, *, ctx, registry, records, batch, pristine, report):
        self.ctx: ConversionContext = ctx
        self.registry: dict[type, Converter] = registry
        self.builtin = _builtin_types()
        self.records: dict[int, CallRecord] = records
        self.batch: int = batch
        self.pristine: nn.Module = pristine
        self.report: ConversionReport = report
        self.done: dict[int, nn.Module] = {}

    # -- traversal -------------------------------------------------------------------------
    def visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        key = id(module)
        if key not in self.done:
            self.done[key] = self._visit(module, path, parent_region)
        return self.done[key]

    def _visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        record = self.records.get(id(module))
        converter = self.registry.get(type(module))
        head = parent_region == "head" and not (record and record.is_spatial(self.batch))
        region = "head" if head else "body"
        if converter is not None:
            return self._convert_leaf(module, path, region, parent_region == "head", converter,
                                      record)
        if record is None and not any(id(m) in self.records for m in module.modules()):
            if any(True for _ in module.parameters()):
                self.report.add(path, type(module).__name__, "not reached")
            return module
        for name, child in list(module.named_children()):
            new = self.visit(child, _join(path, name), region)
            if new is not child:
                setattr(module, name, new)
        if _is_container(module):
            return module
        if record is None:  # only its children were called (its .forward() called directly)
            self.report.add(path, type(module).__name__, "verified",
                            "not probed alone: called via .forward(); probed with its parent")
            return module
        return self._settle(module, path, region, record)

    # -- modules with a converter ------------------------------------------------------------
    def _convert_leaf(self, module, path, region, in_head, converter, record) -> nn.Module:
        builtin = type(module) in self.builtin and converter is self._default(type(module))
        ctx = self.ctx.replace(region=region, in_head=in_head, path=path)
        if builtin:  # the structure is decided in planar terms; _finalize applies mode and depth
            ctx = ctx.replace(mode="planar", depth="keep")
        new = converter(module, ctx)
        if not isinstance(new, nn.Module):
            raise TypeError(
                f"the converter for {type(module).__qualname__} returned "
                f"{type(new).__name__}, not an nn.Module"
            )
        if not builtin and record is not None:
            self._check_user_converter(new, path, module, region, self._eval_record(record, path))
        self.report.add(path, type(module).__name__, *self._describe(module, new))
        return new

    def _default(self, kind: type):
        from .registry import _DEFAULTS

        return _DEFAULTS.get(kind)

    @staticmethod
    def _describe(old: nn.Module, new: nn.Module) -> tuple[str, str]:
        if is_folded(new):
            return ("slice-wise" if new._planar3d_passthrough else "folded"), ""
        if new is old:
            return "kept", ""
        if isinstance(new, _HEAD_POOLS):
            return "head pool", type(new).__name__
        return "swapped", type(new).__name__

    def _check_user_converter(self, new, path, old, region, record) -> None:
        new.eval()
        standard = is_standard((record.args, record.kwargs), self.batch)
        if not standard:
            return
        planar = self.ctx.depth == "keep" and self.ctx.mode == "planar"
        if region == "body" and planar and is_standard(record.output, self.batch):
            result = probe_slices(new, record, axis=self.ctx.axis, batch=self.batch, loose=True)
        else:
            result = probe_constant(new, record, axis=self.ctx.axis, loose=True)
        if not result.ok:
            raise UnsupportedModuleError(
                path, type(old).__name__,
                f"the converter registered for it returns a {type(new).__name__} that does not "
                f"reproduce the 2D layer ({_short(result.reason)})",
                "fix the converter: on a volume the 3D layer must equal the 2D layer slice by "
                "slice (planar) or on depth-constant input (other modes)",
            )

    def _eval_record(self, record: CallRecord, path: str) -> CallRecord:
        """Probes run in eval mode: a record taken in train mode (a module reached only there,
        such as an auxiliary head) gets its reference output recomputed by the 2D module in
        eval mode on the same inputs."""
        if not record.training:
            return record
        source = self.pristine.get_submodule(path)
        flags = [m.training for m in source.modules()]
        try:
            source.eval()
            with torch.no_grad():
                output = source(*record.args, **record.kwargs)
        finally:
            for m, f in zip(source.modules(), flags):
                m.training = f
        return dataclasses.replace(record, output=output)

    # -- modules with their own forward -----------------------------------------------------
    def _settle(self, module, path, region, record) -> nn.Module:
        name = type(module).__name__
        train_only = " (reached in train mode only)" if record.training else ""
        record = self._eval_record(record, path)
        standard_in = is_standard((record.args, record.kwargs), self.batch)
        if region == "body":
            if not (standard_in and is_standard(record.output, self.batch)):
                self.report.add(path, name, "verified",
                                "not probed alone: non-image inputs/outputs; probed with its "
                                f"parent{train_only}")
                return module
            result = probe_slices(module, record, axis=self.ctx.axis, batch=self.batch)
            if result.ok:
                self.report.add(path, name, "verified", train_only.strip(" ()"))
                return module
            if self._has_spatial_kernels(path):
                rewritten = self._rewrite_body(module, path, record)
                if rewritten:
                    return module
            return self._fold(module, path, record, result.reason, passthrough=False)

        if not standard_in:
            self.report.add(path, name, "kept", "after the head pool (pooled inputs)")
            return module
        # depth-constant probes cannot see how slices mix, so their tolerance only absorbs
        # reordered float sums (the head pool's mean over D, H, W vs the 2D mean over H, W)
        result = self._probe_head(module, path, record)
        if result.ok and result.merged:
            self.report.add(path, name, "verified", "contains the head pool" + train_only)
            return module
        if result.ok:
            return self._fold(module, path, record, "no head pool inside", passthrough=True)
        reasons = [f"as it is: {_short(result.reason)}"]
        try:
            touched = rewrite_head_forward(module, axis=self.ctx.axis, path=path)
        except UnsupportedModuleError as error:
            reasons.append(f"rewritten: {_short(error.reason)}")
        else:
            rewritten = self._probe_head(module, path, record)
            if rewritten.ok and rewritten.merged:
                ops = ", ".join(sorted(set(touched)))
                self.report.add(path, name, "head rewritten",
                                f"guarded calls: {_short(ops, 120)}")
                return module
            unrewrite(module)
            reasons.append(f"rewritten: {_short(rewritten.reason)}")
        try:
            return self._fold(module, path, record, "; ".join(reasons), passthrough=True)
        except UnsupportedModuleError as error:
            reasons.append(f"slice by slice: {_short(error.reason)}")
            raise UnsupportedModuleError(
                path, name,
                "no exact 3D version was found for this head module (" + "; ".join(reasons) + ")",
                f"register a converter for {name} (planar3d.register_converter), or convert "
                f"the feature extractor without its head (e.g. timm features_only=True or "
                f"num_classes=0, global_pool='')",
            ) from None

    def _probe_head(self, module: nn.Module, path: str, record: CallRecord):
        """P2 probe of a head module. Layers that receive already pooled 2D tensors (they come
        after the head pool, as an auxiliary head's convolutions after its adaptive pool) are
        found on the way and made slice-wise 2D layers, and the probe runs again."""
        offenders: list[str] = []

        def spot(name):
            def hook(layer, args):
                if args and isinstance(args[0], torch.Tensor) and args[0].dim() != 5:
                    offenders.append(name)
            return hook

        while True:
            offenders.clear()
            handles = [m.register_forward_pre_hook(spot(n)) for n, m in module.named_modules()
                       if n and isinstance(m, _VOLUME_ONLY) and not is_folded(m)]
            try:
                result = probe_constant(module, record, axis=self.ctx.axis, loose=True)
            finally:
                for handle in handles:
                    handle.remove()
            if not offenders:
                return result
            for name in dict.fromkeys(offenders):
                full = _join(path, name)
                parent_name, _, leaf = name.rpartition(".")
                source = self.pristine.get_submodule(full)
                layer = fold_module(copy.deepcopy(source), axis=self.ctx.axis, passthrough=True)
                setattr(module.get_submodule(parent_name), leaf, layer.eval())
                self.report.add(full, type(source).__name__, "slice-wise",
                                "after the head pool: stays a 2D layer")

    def _has_spatial_kernels(self, path: str) -> bool:
        """Whether folding would hide convolutions that other modes (or thickening) change."""
        return any(isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1
                   for m in self.pristine.get_submodule(path).modules())

    def _rewrite_body(self, module, path, record) -> bool:
        """Per-slice meaning for its functional code while its children stay 3D (P1-checked)."""
        name = type(module).__name__
        try:
            touched = rewrite_body_forward(module, axis=self.ctx.axis, path=path)
        except Exception:
            unrewrite(module)
            return False
        result = probe_slices(module, record, axis=self.ctx.axis, batch=self.batch)
        if not result.ok:
            unrewrite(module)
            return False
        ops = ", ".join(sorted(set(touched)))
        self.report.add(path, name, "rewritten", f"per-slice functional code: {_short(ops, 120)}")
        return True

    def _fold(self, module, path, record, reason, *, passthrough: bool) -> nn.Module:
        name = type(module).__name__
        folded = fold_module(
            copy.deepcopy(self.pristine.get_submodule(path)), axis=self.ctx.axis,
            passthrough=passthrough,
        )
        folded.eval()
        if passthrough:
            check = probe_constant(folded, record, axis=self.ctx.axis, loose=True)
            ok = check.ok and not check.merged
        else:
            check = probe_slices(folded, record, axis=self.ctx.axis, batch=self.batch, loose=True)
            ok = check.ok
        if not ok:
            raise UnsupportedModuleError(
                path, name,
                "even run slice by slice it does not reproduce its 2D output "
                f"({_short(check.reason) or 'it pools the planar axis'})",
                "make the module deterministic in eval mode, or register a converter for it",
            )
        self.report.drop_below(path)
        self.report.add(path, name, "slice-wise" if passthrough else "folded", _short(reason))
        return folded


def _example_batch(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
            shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else (
                type(example_input).__name__)
            raise ValueError(
                f"example_input must be a batch of 2D images (B, C, H, W) that the 2D model "
                f"accepts, got {shape}"
            )
        if example_input.shape[0] < 2:
            raise ValueError(
                f"example_input needs at least 2 images (they become distinct slices of the probe "
                f"volume), got a batch of {example_input.shape[0]}; e.g. torch.cat([x, x.flip(-1)])"
            )
        return example_input.detach().to(device=device, dtype=dtype)
    channels = next((m.in_channels for m in model.modules() if hasattr(m, "in_channels")), 3)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    shape = tuple(cfg.get("input_size", (channels, 224, 224)))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, *shape, generator=generator).to(device=device, dtype=dtype)


def _check_volume_input(module: nn.Module, args: tuple) -> None:
    if args and isinstance(args[0], torch.Tensor):
        require_volume(args[0], f"converted {type(module).__name__}")


def _finalize(root: nn.Module, planner: _Planner) -> nn.Module:
    """Give the planar structure its mode's kernels and its depth policy.

    The structure (what is kept, rewritten, folded) was decided and probed in planar terms; here
    planar convolutions become the mode's layers, rewritten forwards get the mode's functional
    convolutions, and pooling (and, for "all", strided) layers act along depth.
    """
    ctx = planner.ctx
    pools = (PlanarMaxPool3d, PlanarAvgPool3d) if ctx.pool_depth else ()

    def changes(module: nn.Module) -> bool:
        if isinstance(module, PlanarConv3d):
            return (ctx.mode != "planar" and max(module.kernel_size) > 1) or (
                ctx.stride_depth and max(module.stride) > 1)
        return isinstance(module, pools)

    def walk(module: nn.Module, path: str) -> nn.Module:
        if is_folded(module):
            if not module._planar3d_passthrough and ctx.depth != "keep" and any(
                isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or (
                    ctx.stride_depth and isinstance(m, nn.Conv2d) and max(m.stride) > 1)
                for m in module.modules()
            ):
                raise UnsupportedModuleError(
                    path, module._planar3d_base.__name__,
                    f"depth policy {ctx.depth!r} asks its pooling/strided layers to act along "
                    f"{axis_name(ctx.axis)}, but its forward only runs slice by slice",
                    "use depth='keep', or register a converter for this module",
                )
            return module
        if changes(module):
            source = planner.pristine.get_submodule(path)
            new = planner.registry[type(source)](source, ctx.replace(path=path, region="body"))
            action = "depth pool" if isinstance(module, pools) else "swapped"
            detail = type(new).__name__
            if ctx.mode != "planar" and isinstance(new, PlanarConv3d) and max(new.kernel_size) > 1:
                detail += " (acs: kernel and padding cannot be oriented three ways; stays planar)"
            planner.report.add(path, type(source).__name__, action, detail)
            return new
        if is_rewritten(module) and module._planar3d_rewrite[0] == "body":
            module._planar3d_kernels = (ctx.mode, ctx.kernel_depth)
        for name, child in list(module.named_children()):
            new = walk(child, _join(path, name))
            if new is not child:
                setattr(module, name, new)
        return module

    return walk(root, "")


def convert(
    model: nn.Module,
    *,
    mode: str = "planar",
    axis: str | int = "D",
    depth: str = "keep",
    kernel_depth: int = 3,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
    converters: Mapping[type, Converter] | None = None,
) -> nn.Module:
    """Convert a 2D network into a 3D network for (N, C, D, H, W) volumes.

    Args:
        model: a 2D network (timm, torchvision or your own), in any train/eval state.
        mode: kernel mapping. "planar": kernels (1, kh, kw), the network reproduces the 2D
            network slice by slice (DESIGN.md P1). "center": depth-k kernels holding the 2D
            kernel in their middle plane (exactly planar at initialisation, P3). "inflate": I3D
            inflation, the 2D kernel repeated k times / k (2D response on depth-constant input,
            P2). "acs": output channels split in three parts, each planar along D, H or W (P4).
            In every mode 1x1 kernels stay planar and functional code acts per slice.
        axis: the planar axis, "D" (default), "H" or "W".
        depth: "keep" (depth preserved everywhere), "pool" (pooling layers also pool along the
            planar axis, as the seed paper's encoder), or "all" (strided convolutions too).
        kernel_depth: kernel size along the planar axis for the "center"/"inflate" modes.
        inplace: convert `model`'s modules in place instead of a deep copy.
        example_input: a (B >= 2, C, H, W) batch the 2D model accepts, used to probe the
            conversion. Default: 2 random images of timm's `pretrained_cfg["input_size"]`, else
            224x224. Its deepest feature maps should be larger than 1x1.
        converters: extra converters for this call, `{module_type: fn(module, ctx)}`, looked up
            by exact type before the registered ones.
    Returns:
        The converted network (a new object unless `inplace`). Parameter and buffer names equal
        the 2D model's; `planar3d.conversion_report(result)` says what was done to each module.
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
    if hasattr(model, "_planar3d_report"):
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

    example = _example_batch(model, example_input)
    pristine = copy.deepcopy(model) if inplace else model
    work = model if inplace else copy.deepcopy(model)
    flags = {name: m.training for name, m in work.named_modules()}
    records = record_calls(work, example)
    report = ConversionReport(mode, axis_name(axis_dim), depth, tuple(example.shape))
    ctx = ConversionContext(mode=mode, axis=axis_dim, depth=depth, kernel_depth=kernel_depth)
    planner = _Planner(ctx=ctx, registry=registry, records=records, batch=example.shape[0],
                       pristine=pristine, report=report)
    originals = list(work.modules())  # keeps every original alive: ids stay unique while in use
    work.eval()
    root = planner.visit(work, "", "head")
    if mode != "planar" or depth != "keep":
        root = _finalize(root, planner)
    for name, module in root.named_modules():
        if name in flags:
            module.training = flags[name]
    root.register_forward_pre_hook(_check_volume_input, prepend=True)
    root._planar3d_report = report
    del originals
    return root

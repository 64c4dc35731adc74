"""The conversion walk: decide, module by module, how a 2D network becomes 3D.

See `planar3d.convert` for the procedure; this module holds its state and its decisions.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect

import torch
from torch import nn

from ._body_rewrite import rewrite_body_forward
from ._fx import unrewrite
from ._head_rewrite import rewrite_head_forward
from ._probe import is_standard, probe_constant, probe_slices, train_mode
from ._record import CallRecord
from .context import ConversionContext
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
from .registry import Converter
from .report import ConversionReport

_HEAD_POOLS = (HeadAdaptiveAvgPool2d, HeadAdaptiveMaxPool2d)
# converted layers that accept volumes only
_VOLUME_ONLY = (PlanarConv3d, PlanarConvTranspose3d, PlanarMaxPool3d, PlanarAvgPool3d,
                PlanarAdaptiveAvgPool3d, PlanarAdaptiveMaxPool3d, nn.BatchNorm3d)


def _builtin_types() -> frozenset:
    from . import converters

    return frozenset(converters._REGISTRATIONS) | frozenset(converters._KEEP) | frozenset(
        converters._FOLD
    )


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(reason: str, limit: int = 160) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


@functools.cache
def _reads_training(cls: type) -> bool:
    """Whether a class's own code reads `training` (its forward may differ in train mode)."""
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        try:
            if "training" in inspect.getsource(klass):
                return True
        except (OSError, TypeError):
            return True
    return False


def _is_container(module: nn.Module) -> bool:
    forward = type(module).forward
    return forward is nn.Sequential.forward or forward is nn.Module.forward


class Planner:
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
            new = self.visit(child, join(path, name), region)
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
            result = self._probe_body(module, path, record, as_is=True)
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
                full = join(path, name)
                parent_name, _, leaf = name.rpartition(".")
                source = self.pristine.get_submodule(full)
                layer = fold_module(copy.deepcopy(source), axis=self.ctx.axis, passthrough=True)
                setattr(module.get_submodule(parent_name), leaf, layer.eval())
                self.report.add(full, type(source).__name__, "slice-wise",
                                "after the head pool: stays a 2D layer")

    def _probe_body(self, module: nn.Module, path: str, record: CallRecord,
                    as_is: bool = False):
        """P1 in eval mode, and in train mode too when the module's code reads `training`.

        `as_is`: the module runs its own 2D code on volumes, so every tensor that code computes
        must also have its 2D size (a rewritten forward computes in other layouts)."""
        source = self.pristine.get_submodule(path)
        result = probe_slices(module, record, axis=self.ctx.axis, batch=self.batch,
                              source=source if as_is else None)
        if not result.ok or not _reads_training(type(module)):
            return result
        with train_mode(source), torch.no_grad():
            output = source(*record.args, **record.kwargs)
        trained = dataclasses.replace(record, output=output)
        result = probe_slices(module, trained, axis=self.ctx.axis, batch=self.batch,
                              training=True)
        if not result.ok:
            result.reason = f"in train mode: {result.reason}"
        return result

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
        result = self._probe_body(module, path, record)
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



"""The conversion walk: decide, module by module, how a 2D network becomes 3D.

See `planar3d.convert` for the procedure; this module holds its state and its decisions.

Regions, from what each module returned on the example:
- body: per-slice feature extraction (it returns feature maps);
- head: it returns only pooled tensors and its parent is a head (or mixed): its first global
  pool pools the planar axis away;
- mixed: it returns feature maps and pooled tensors (a segmentation model with an auxiliary
  classifier, a feature extractor returning maps and an embedding); its children that return
  pooled tensors are heads.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._judge.network import Divergence, localize
from ._judge.probe import is_standard, probe_constant, probe_slices, watch_own_code
from ._judge.reference import Reference
from ._mode_kernels import spatial
from ._modes import eval_mode, train_mode
from ._record import CallRecord, record_train_only
from ._rewrite.forward import (
    is_rewritten,
    rewrite_body_forward,
    rewrite_head_forward,
    unrewrite,
)
from ._walk import replace_children
from .context import ConversionContext
from .errors import UnsupportedModuleError
from .layers._state import type_name
from .layers._swap import deepcopy_module
from .layers.fold import fold_module, is_folded, is_slice_wise
from .layers.planar_conv import PlanarConv3d, PlanarConvTranspose3d
from .layers.planar_pool import (
    HeadAdaptiveAvgPool2d,
    HeadAdaptiveMaxPool2d,
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarMaxPool3d,
)
from .registry import Converter, is_builtin, keep
from .report import ConversionReport

_HEAD_POOLS = {HeadAdaptiveAvgPool2d: "mean", HeadAdaptiveMaxPool2d: "amax"}
# how many descendants a failed probe may fold before the module itself is rewritten or folded
MAX_MENDS = 4
# converted layers that accept volumes only
_VOLUME_ONLY = (PlanarConv3d, PlanarConvTranspose3d, PlanarMaxPool3d, PlanarAvgPool3d,
                PlanarAdaptiveAvgPool3d, PlanarAdaptiveMaxPool3d, nn.BatchNorm3d)


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


def _computes_its_weights(module: nn.Module) -> bool:
    """Whether the module's weights are computed at each call, by a parametrization or by the
    forward pre-hook of `torch.nn.utils.spectral_norm` / `weight_norm`."""
    if parametrize.is_parametrized(module):
        return True
    hook_types = tuple(t for t in (
        getattr(torch.nn.utils.spectral_norm, "SpectralNorm", None),
        getattr(torch.nn.utils.weight_norm, "WeightNorm", None),
    ) if t is not None)
    return any(isinstance(hook, hook_types) for hook in module._forward_pre_hooks.values())


class Planner:
    def __init__(self, *, ctx, registry, records, batch, volumes, pristine, report, example):
        self.ctx: ConversionContext = ctx
        self.registry: dict[type, Converter] = registry
        self.records: dict[int, CallRecord] = records
        self.example = example
        # modules only a train-mode run reaches, by path: recorded when first needed
        self.train_records: dict[str, CallRecord] | None = None
        self.batch: int = batch
        self.volumes: int = volumes
        self.pristine: nn.Module = pristine
        self.report: ConversionReport = report
        self.done: dict[int, nn.Module] = {}
        self.regions: dict[str, str] = {}
        # modules kept with their own forward that no probe ran alone
        self.unchecked: set[str] = set()
        self.record_at: dict[str, CallRecord] = {}
        # head-pool sites of the reference (see _judge.reference): path -> kind
        self.sites: dict[str, str] = {}

    # -- traversal -------------------------------------------------------------------------
    def visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        key = id(module)
        if key not in self.done:
            self.done[key] = self._visit(module, path, parent_region)
        return self.done[key]

    def _record(self, module: nn.Module, path: str) -> CallRecord | None:
        """The module's first call in eval mode or, for a module (with weights) that eval mode
        does not reach, in train mode."""
        record = self.records.get(id(module))
        if record is not None or not any(True for _ in module.parameters()):
            return record
        if self.train_records is None:
            recorded = {r.path for r in self.records.values()}
            self.train_records = record_train_only(self.pristine, self.example, recorded)
        return self.train_records.get(path)

    def _reached(self, module: nn.Module, path: str) -> bool:
        """Whether the example run called the module or one inside it."""
        if any(id(m) in self.records for m in module.modules()):
            return True
        prefix = f"{path}." if path else ""
        return any(p == path or p.startswith(prefix) for p in self.train_records or {})

    def _region(self, record: CallRecord | None, parent_region: str) -> str:
        if record is None:
            return "head" if parent_region == "head" else "body"
        spatial, flat = record.is_spatial(self.batch), record.is_flat(self.batch)
        if parent_region in ("head", "mixed") and not spatial:
            return "head"
        return "mixed" if spatial and flat else "body"

    def _visit(self, module: nn.Module, path: str, parent_region: str) -> nn.Module:
        record = self._record(module, path)
        region = self._region(record, parent_region)
        self.regions[path] = region
        if record is not None:
            self.record_at[path] = record
        converter = self.registry.get(type(module))
        if converter is not None and converter is not keep and _computes_its_weights(module):
            return self._fold(module, path, record, "its weights are computed at each call "
                              "(parametrization or norm hook): the 2D layer runs per slice",
                              passthrough=region == "head")
        if converter is not None:
            in_head = parent_region == "head" or (parent_region == "mixed" and region == "head")
            return self._convert_leaf(module, path, "head" if region == "head" else "body",
                                      in_head, converter, record)
        if record is None and not self._reached(module, path):
            if any(True for _ in module.parameters()):
                self.report.add(path, type(module).__name__, "not reached")
            return module
        replace_children(module, path, lambda child, p: self.visit(child, p, region))
        if _is_container(module):
            if region == "mixed":
                self.report.add(path, type(module).__name__, "verified",
                                "returns feature maps and pooled tensors: checked end to end")
            return module
        if record is None:  # only its children were called (its .forward() called directly)
            self.report.add(path, type(module).__name__, "verified",
                            "not called itself (its .forward() is called directly): checked "
                            "end to end")
            return module
        return self._settle(module, path, region, record)

    # -- modules with a converter ------------------------------------------------------------
    def _convert_leaf(self, module, path, region, in_head, converter, record) -> nn.Module:
        builtin = is_builtin(type(module), converter)
        ctx = self.ctx.replace(region=region, in_head=in_head, path=path)
        if builtin:  # the structure is decided in planar terms; _finalize applies mode and depth
            ctx = ctx.replace(mode="planar", depth="keep")
        name = type(module).__name__  # before the converter, which may change it in place
        new = converter(module, ctx)
        if not isinstance(new, nn.Module):
            raise TypeError(
                f"the converter for {type(module).__qualname__} returned "
                f"{type(new).__name__}, not an nn.Module"
            )
        if not builtin and record is not None:
            self._check_user_converter(new, path, module, region, self._eval_record(record, path))
        if type(new) in _HEAD_POOLS:
            self.sites[path] = _HEAD_POOLS[type(new)]
        self.report.add(path, name, *self._describe(module, new))
        return new

    @staticmethod
    def _describe(old: nn.Module, new: nn.Module) -> tuple[str, str]:
        if is_folded(new):
            return ("slice-wise" if is_slice_wise(new) else "folded"), ""
        if new is old:
            return "kept", ""
        if type(new) in _HEAD_POOLS:
            return "head pool", type(new).__name__
        return "swapped", type(new).__name__

    def _check_user_converter(self, new, path, old, region, record) -> None:
        new.eval()
        if not is_standard((record.args, record.kwargs), self.batch):
            return
        planar = self.ctx.depth == "keep" and self.ctx.mode == "planar"
        if region == "body" and planar and is_standard(record.output, self.batch):
            result = probe_slices(new, record, axis=self.ctx.axis, volumes=self.volumes,
                                  loose=True)
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
        with eval_mode(source), torch.no_grad():
            args, kwargs = record.inputs()
            output = source(*args, **kwargs)
        return dataclasses.replace(record, output=output)

    # -- modules with their own forward -----------------------------------------------------
    def _settle(self, module, path, region, record) -> nn.Module:
        name = type(module).__name__
        train_only = " (reached in train mode only)" if record.training else ""
        record = self._eval_record(record, path)
        standard_in = is_standard((record.args, record.kwargs), self.batch)
        if region != "head":
            if region == "mixed" or not (standard_in and is_standard(record.output, self.batch)):
                problem = watch_own_code(module, record, axis=self.ctx.axis,
                                         volumes=self.volumes, batch=self.batch)
                if problem and region == "body":
                    return self._fold(module, path, record, problem, passthrough=False)
                if problem:
                    raise UnsupportedModuleError(
                        path, name, problem,
                        f"register a converter for {name} (planar3d.register_converter)")
                kind = ("returns feature maps and pooled tensors" if region == "mixed"
                        else "takes or returns other tensors than feature maps")
                self.unchecked.add(path)
                self.report.add(path, name, "verified", f"{kind}: checked end to end"
                                + train_only)
                return module
            result = self._probe_body(module, path, record, as_is=True)
            prefix = f"{path}." if path else ""
            if not result.ok and not result.decides and any(
                    p.startswith(prefix) for p in self.unchecked):
                result = self._mend(module, path, record, result)
            if result.ok:
                self.report.add(path, name, "verified", train_only.strip(" ()"))
                return module
            if not result.decides and self._has_spatial_kernels(path):
                rewritten = self._rewrite_body(module, path, record)
                if rewritten:
                    return module
            return self._fold(module, path, record, result.reason, passthrough=False)

        if not standard_in:
            self.report.add(path, name, "kept", "after the head pool (pooled inputs)")
            return module
        result = self._probe_head(module, path, record, as_is=True)
        if result.ok and result.merged:
            if not self._below(path):
                self.sites[path] = "as-is"
            self.report.add(path, name, "verified", "contains the head pool" + train_only)
            return module
        if result.ok:
            return self._fold(module, path, record, "no head pool inside", passthrough=True)
        reasons = [f"as it is: {_short(result.reason)}"]
        if not result.decides:
            try:
                touched = rewrite_head_forward(module, axis=self.ctx.axis, path=path)
            except UnsupportedModuleError as error:
                reasons.append(f"rewritten: {_short(error.reason)}")
            else:
                rewritten = self._probe_head(module, path, record)
                if rewritten.ok and rewritten.merged:
                    ops = ", ".join(sorted(set(touched)))
                    self.sites[path] = "code"
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

    def _below(self, path: str) -> list[str]:
        prefix = f"{path}." if path else ""
        return [p for p in self.sites if p.startswith(prefix) and p != path]

    def _probe_head(self, module: nn.Module, path: str, record: CallRecord,
                    as_is: bool = False):
        """P2 probe of a head module. Layers that receive already pooled 2D tensors (they come
        after the head pool, as an auxiliary head's convolutions after its adaptive pool) are
        found on the way and made slice-wise 2D layers, and the probe runs again.

        `as_is`: the module runs its own 2D code on volumes, which is watched (see _judge.probe)."""
        offenders: list[str] = []
        source = self.pristine.get_submodule(path) if as_is else None

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
                result = probe_constant(module, record, axis=self.ctx.axis, loose=True,
                                        source=source)
            finally:
                for handle in handles:
                    handle.remove()
            if not offenders:
                return result
            for name in dict.fromkeys(offenders):
                full = f"{path}.{name}" if path else name
                original = self.pristine.get_submodule(full)
                layer = fold_module(deepcopy_module(original), axis=self.ctx.axis,
                                    passthrough=True)
                module.set_submodule(name, layer.eval())
                self.report.add(full, type(original).__name__, "slice-wise",
                                "after the head pool: stays a 2D layer")

    def _probe_body(self, module: nn.Module, path: str, record: CallRecord,
                    as_is: bool = False):
        """P0 in eval mode, and in train mode too when the module's code reads `training`.

        `as_is`: the module runs its own 2D code on volumes, which is watched (see _judge.probe)."""
        source = self.pristine.get_submodule(path)
        watched = source if as_is else None
        result = probe_slices(module, record, axis=self.ctx.axis, volumes=self.volumes,
                              source=watched)
        if not result.ok or not _reads_training(type(module)):
            return result
        with train_mode(source), torch.no_grad():
            args, kwargs = record.inputs()
            output = source(*args, **kwargs)
        trained = dataclasses.replace(record, output=output)
        result = probe_slices(module, trained, axis=self.ctx.axis, volumes=self.volumes,
                              training=True, source=watched)
        if not result.ok:
            result.reason = f"in train mode: {result.reason}"
        return result

    def _mend(self, module, path, record, result):
        """When a module's own forward fails its probe because of a descendant that no probe
        could check alone (its inputs or outputs are not all feature maps), fold that
        descendant and probe again; the result of the last probe."""
        for _ in range(MAX_MENDS):
            training = result.reason.startswith("in train mode")
            reference = Reference(self.pristine.get_submodule(path), self.volumes)
            divergence = localize(reference, module, record.inputs(), axis=self.ctx.axis,
                                  training=training)
            if divergence is None or not divergence.path:
                return result
            inner = divergence.path
            if divergence.inputs_differ:
                inner = inner.rpartition(".")[0]
            full = f"{path}.{inner}" if path else inner
            target = module.get_submodule(inner) if inner else module
            if not inner or self.regions.get(full) != "body" or is_folded(target):
                return result
            folded = self._fold(target, full, self.record_at.get(full),
                                f"{type_name(target)} inside {type(module).__name__} "
                                f"diverged on its probe: {_short(divergence.reason, 100)}",
                                passthrough=False)
            module.set_submodule(inner, folded)
            result = self._probe_body(module, path, record, as_is=True)
            if result.ok or result.decides:
                return result
        return result

    def _has_spatial_kernels(self, path: str) -> bool:
        """Whether folding would hide convolutions that other modes (or thickening) change."""
        return any(isinstance(m, nn.Conv2d) and spatial(m.kernel_size)
                   for m in self.pristine.get_submodule(path).modules())

    def _rewrite_body(self, module, path, record) -> bool:
        """Per-slice meaning for its functional code while its children stay 3D (P0-checked)."""
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
            deepcopy_module(self.pristine.get_submodule(path)), axis=self.ctx.axis,
            passthrough=passthrough,
        )
        folded.train(module.training)
        if record is not None and is_standard((record.args, record.kwargs), self.batch):
            folded.eval()
            if passthrough:
                check = probe_constant(folded, record, axis=self.ctx.axis, loose=True)
                ok = check.ok and not check.merged
            elif is_standard(record.output, self.batch):
                check = probe_slices(folded, record, axis=self.ctx.axis, volumes=self.volumes,
                                     loose=True)
                ok = check.ok
            else:
                check, ok = None, True
            if not ok:
                raise UnsupportedModuleError(
                    path, name,
                    "even run slice by slice it does not reproduce its 2D output "
                    f"({_short(check.reason) or 'it pools the planar axis'})",
                    "make the module deterministic in eval mode, or register a converter for it",
                )
        self.report.drop_below(path)
        for site in self._below(path):
            del self.sites[site]
        self.report.add(path, name, "slice-wise" if passthrough else "folded", _short(reason))
        return folded

    # -- after the end-to-end check ----------------------------------------------------------
    def culprit(self, divergence: Divergence) -> str:
        """The module whose code made the divergence: the one named, or, when its inputs
        already differ, the module whose own code computed them."""
        if divergence.inputs_differ and divergence.path:
            return divergence.path.rpartition(".")[0]
        return divergence.path

    def repair(self, root: nn.Module, divergence: Divergence) -> nn.Module | None:
        """Mend what the end-to-end check found and return the new root; None when nothing
        more can be done there. A body module is folded; a mixed module (feature maps and
        pooled outputs) gets its functional pooling rewritten as the head pool, once."""
        path = self.culprit(divergence)
        module = root.get_submodule(path)
        region = self.regions.get(path)
        if region == "mixed" and not is_rewritten(module) and path not in self.sites:
            try:
                touched = rewrite_head_forward(module, axis=self.ctx.axis, path=path)
            except UnsupportedModuleError:
                return None
            self.sites[path] = "code"
            ops = ", ".join(sorted(set(touched)))
            self.report.add(path, type_name(module), "head rewritten",
                            f"returns feature maps and pooled tensors; guarded calls: "
                            f"{_short(ops, 100)}")
            return root
        if region != "body" or is_folded(module):
            return None
        folded = self._fold(module, path, self.record_at.get(path), "the end-to-end check "
                            f"diverged here: "
                            f"{_short(divergence.reason, 120)}", passthrough=False)
        if not path:
            return folded
        root.set_submodule(path, folded)
        return root

    def refusal(self, root: nn.Module, divergence: Divergence) -> UnsupportedModuleError:
        """The error for a divergence that cannot be mended."""
        mode = "train" if divergence.training else "eval"
        path = self.culprit(divergence)
        kind = type_name(root.get_submodule(path))
        where = ("this module is the first to differ" if path == divergence.path else
                 f"this module's own code computes the inputs of {divergence.path}, the first "
                 "module to differ")
        return UnsupportedModuleError(
            path, kind,
            f"the converted network does not compute the reference in {mode} mode: {where} "
            f"({_short(divergence.reason, 240)})",
            f"register a converter for {kind} "
            "(planar3d.register_converter); for a non-spatial output, pool the feature maps "
            "globally first (e.g. nn.AdaptiveAvgPool2d(1)), or convert the feature extractor "
            "without its head",
        )

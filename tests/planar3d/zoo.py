"""The coverage sweep's machinery: build a zoo model, convert it in every mode, check it.

Every check is an oracle from `p3d_oracle` (docs/design.md P1-P4); results go to
build/coverage/<source>__<family>.json for scripts/coverage_table.py.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from pathlib import Path

import torch
from p3d_helpers import randomize
from p3d_oracle import fold_volume, head_reference, head_sites, slice_mismatches
from torch import nn

import planar3d
from planar3d import UnsupportedModuleError
from planar3d._state import state_of

RESULTS = Path(os.environ.get("PLANAR3D_COVERAGE_DIR", "build/coverage"))
SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 288, 299, 320, 331, 384)
# P2 needs a constant volume as deep as the depth receptive field; beyond these bounds the
# float64 check would take minutes and gigabytes on CI's 2 cores
MAX_INFLATE_DEPTH = 61
MAX_INFLATE_VOXELS = 61 * 64 * 64


def timm_families() -> dict[str, str]:
    table = Path(__file__).with_name("timm_families.txt").read_text().splitlines()
    return dict(line.split() for line in table if line and not line.startswith("#"))


def smallest_size(model: nn.Module, channels: int = 3) -> int:
    """The smallest square input (from SIZES) the 2D model runs on in eval and train mode."""
    trainable = copy.deepcopy(model).train()
    for size in SIZES:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model(torch.randn(2, channels, size, size))
                trainable(torch.randn(4, channels, size, size))
            return size
        except Exception:
            continue
    raise RuntimeError("no input size in SIZES works")


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> float:
    return ((got.double() - want.double()).abs().max() / (want.double().abs().max() + 1e-12)).item()


RANDOM_LAYERS = {"DropPath", "StochasticDepth", "DropBlock2d"}
# rates read by functional code (timm heads, MONAI's and smp's EfficientNet drop connect)
RANDOM_RATES = ("drop_rate", "drop_path_rate", "attn_drop", "proj_drop", "drop_connect_rate",
                "_drop_connect_rate")


def random_sites(model: nn.Module) -> list[tuple[str, str]]:
    """(module path, attribute) of every random layer's rate: dropout, drop path, stochastic
    depth, drop block, drop connect."""
    sites = []
    for path, m in model.named_modules():
        # by class name along the MRO: a folded module's class is Folded<Type>(<Type>)
        names = {cls.__name__ for cls in type(m).__mro__}
        # transformers names its drop paths per model (SegformerDropPath, ConvNextDropPath...)
        if isinstance(m, nn.modules.dropout._DropoutNd) or names & RANDOM_LAYERS or any(
                name.endswith("DropPath") for name in names):
            sites += [(path, attr) for attr in ("drop_prob", "p") if hasattr(m, attr)]
        sites += [(path, attr) for attr in RANDOM_RATES
                  if isinstance(getattr(m, attr, None), float)]
        # smp's EfficientNet encoders keep it in a namedtuple of global parameters
        if isinstance(getattr(getattr(m, "_global_params", None), "drop_connect_rate", None),
                      float):
            sites.append((path, "_global_params.drop_connect_rate"))
    return sites


def random_rate(module: nn.Module, attr: str) -> float:
    """The rate at a site of `random_sites`."""
    holder, _, name = attr.rpartition(".")
    return getattr(getattr(module, holder) if holder else module, name)


def _set_rate(module: nn.Module, attr: str, rate: float) -> None:
    holder, _, name = attr.rpartition(".")
    if holder:  # a namedtuple: replaced with the new rate
        setattr(module, holder, getattr(module, holder)._replace(**{name: rate}))
    else:
        setattr(module, name, rate)


def set_random_rates(model: nn.Module, rate: float,
                     sites: list[tuple[str, str]] | None = None) -> int:
    """Set the rate of every random layer (or of `sites`) to `rate`; returns how many. With
    rate 0 a train step is deterministic: dropout and stochastic depth draw different masks
    for N*D images and N volumes."""
    sites = random_sites(model) if sites is None else sites
    for path, attr in sites:
        _set_rate(model.get_submodule(path), attr, rate)
    return len(sites)


def hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a slice size given as one int (square) or (H, W)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def size_candidates(size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """Second slice sizes to try after `size`, in order: odd and a multiple of no stride, then
    even but a multiple of no stride above 4, then multiples of 16 and 32 (networks that accept
    only those), none square."""
    h, w = hw(size)
    return [(h + 29, w + 13), (h + 28, w + 12), (h + h // 2, w), (2 * h, w)]


def second_size(model2d: nn.Module, channels: int, size: int | tuple[int, int]
                ) -> tuple[int, int] | None:
    """The first of `size_candidates` the 2D network runs on in eval and in train mode, or None
    when it runs on none of them (a network of one input size)."""
    trainable = copy.deepcopy(model2d).train()
    set_random_rates(trainable, 0.0)
    for h, w in size_candidates(size):
        x = torch.randn(6, channels, h, w, generator=torch.Generator().manual_seed(2),
                        dtype=next(model2d.parameters()).dtype)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model2d(x)
                trainable(x)
        except Exception:
            continue
        return (h, w)
    return None


def check_train_mode(model2d: nn.Module, model3d: nn.Module, size: int) -> list[str]:
    """Gradients reach every parameter the 2D model trains; BatchNorm statistics are the 2D ones
    over the folded batch."""
    # in float64, so that train-mode BatchNorm does not amplify rounding; one model at a time,
    # so that a large model (deepseek_vit: 412M parameters) fits in memory
    problems = []
    x = torch.randn(2, 3, 2, size, size, generator=torch.Generator().manual_seed(3)).double()
    grads, buffers, on_volumes = {}, {}, set()  # on_volumes: modules before the head pool
    for name, original, inputs in (("2d", model2d, fold_volume(x)), ("3d", model3d, x)):
        model = copy.deepcopy(original).double()
        set_random_rates(model, 0.0)
        model.train()
        handles = [m.register_forward_pre_hook(
            lambda mod, args, n=n: on_volumes.add(n) if args and getattr(args[0], "ndim", 0) == 5
            else None) for n, m in model.named_modules()] if name == "3d" else []
        outputs = model(inputs)
        leaves = [t for t in torch.utils._pytree.tree_flatten(outputs)[0]
                  if isinstance(t, torch.Tensor) and t.is_floating_point()]
        sum(t.float().pow(2).mean() for t in leaves).backward()
        for handle in handles:
            handle.remove()
        grads[name] = {n for n, p in model.named_parameters() if p.grad is not None}
        buffers[name] = {n: b for n, b in model.named_buffers() if b.is_floating_point()}
        del model, outputs, leaves
    if grads["2d"] != grads["3d"]:
        missing = sorted(grads["2d"] - grads["3d"])[:3]
        problems.append(f"train mode: no gradient for {missing}")
    for name, buf in buffers["3d"].items():
        owner = name.rpartition(".")[0]
        if name in buffers["2d"] and owner in on_volumes:
            err = _close(buf, buffers["2d"][name])
            if err > 1e-8:
                problems.append(f"train mode: buffer {name} differs by {err:.2g}")
                break
    return problems


def _check_second_size(model2d: nn.Module, model3d: nn.Module, size: int, heads: list[str],
                       joined: dict[str, int], record: dict) -> list[str]:
    """P1 and the head at a second slice size (`second_size`): exact at every size the 2D
    network accepts, not only at the example's."""
    other = second_size(model2d, 3, size)
    record["second_size"] = "x".join(map(str, other)) if other else None
    if other is None:
        return []
    x = torch.randn(2, 3, 3, *other, generator=torch.Generator().manual_seed(4))
    where = f"at {other[0]}x{other[1]}"
    try:
        problems = [f"{where}: {p}" for p in slice_mismatches(model2d, model3d, x)]
        if heads or joined:
            with torch.no_grad():
                err = _close(model3d(x), head_reference(model2d, x, heads, joined=joined))
            if err > 1e-4:
                problems.append(f"{where}: head differs from the 2D head on pooled slices by "
                                f"{err:.2g}")
    except Exception as error:
        problems = [f"{where}: fails ({type(error).__name__}: {str(error)[:200]})"]
    return problems


def _has_tokens(model3d: nn.Module) -> bool:
    """Whether a converted network has per-slice token sequences (its depth sites say)."""
    sites = state_of(model3d).depth_sites
    return sites is not None and sites.tokens


def check_depth_layers(model: nn.Module, example: torch.Tensor, x: torch.Tensor,
                       planar: torch.Tensor) -> dict:
    """A token model with every depth layer that has a site (center mode, a depth position
    embedding, divided depth attention) must equal planar at initialisation."""
    for layers in (("position", "attention"), ("position",)):
        try:
            model3d = planar3d.convert(model, mode="center", depth_layers=layers,
                                       example_input=example)
        except UnsupportedModuleError as error:
            refusal = f"{error.path or '<root>'} ({error.module_type}): {error.reason}"
            continue
        added = [e.path for e in planar3d.conversion_report(model3d).entries
                 if e.action == "depth layer"]
        with torch.no_grad():
            err = _close(model3d(x), planar)
        return {"status": "exact" if err <= 1e-4 else "mismatch", "layers": list(layers),
                "attention": sum(p.endswith("depth_attention") for p in added),
                "problems": [] if err <= 1e-4 else [f"differs from planar by {err:.2g}"],
                "refused": refusal if layers != ("position", "attention") else ""}
    return {"status": "unsupported", "reason": refusal}


def check_model(source: str, family: str, name: str, build) -> dict:
    """Convert one model in every mode, check the properties (docs/design.md); return the record."""
    record: dict = {"source": source, "family": family, "model": name, "modes": {}}
    start = time.time()
    # the weights randomize() leaves alone come from the builder's init: seeded, so that a
    # result is reproducible (an unseeded focalnet once drew weights for which a wrong as-is
    # forward passed the value probe; the probe now also compares intermediate sizes)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = randomize(build()).eval()
    size = smallest_size(model)
    probe_size = max(size, 64)
    example = torch.randn(2, 3, probe_size, probe_size, generator=torch.Generator().manual_seed(0))
    record["size"] = size
    x = torch.randn(2, 3, 3, size, size, generator=torch.Generator().manual_seed(1))
    outputs = {}
    for mode in ("planar", "center", "inflate", "acs"):
        entry: dict = {}
        record["modes"][mode] = entry
        if record["modes"]["planar"].get("status") == "unsupported":
            # the structure is decided in planar terms for every mode: the same refusal
            entry.update(record["modes"]["planar"])
            continue
        try:
            if mode == "inflate":
                # in float64, so that P2 below sees the rounding of w / k in float64, not
                # float32's 3e-8 that a deep network amplifies past any tolerance
                model3d = planar3d.convert(copy.deepcopy(model).double(), mode=mode,
                                           example_input=example.double())
            else:
                model3d = planar3d.convert(model, mode=mode, example_input=example)
        except UnsupportedModuleError as error:
            entry.update(status="unsupported", reason=f"{error.path or '<root>'} "
                         f"({error.module_type}): {error.reason}")
            continue
        report = planar3d.conversion_report(model3d)
        entry["counts"] = report.counts()
        with torch.no_grad():
            outputs[mode] = model3d(x.double()).float() if mode == "inflate" else model3d(x)
        problems: list[str] = []
        if mode == "planar":
            problems += slice_mismatches(model, model3d, x)
            heads, joined = head_sites(report, model, x[:, :, 0])
            if heads or joined:
                err = _close(outputs[mode], head_reference(model, x, heads, joined=joined))
                if err > 1e-4:
                    problems.append(f"head differs from the 2D head on pooled slices by {err:.2g}")
            else:
                problems.append("expected a head pool (or a head run on all slices), found none")
            problems += check_train_mode(model, model3d, size)
            problems += _check_second_size(model, model3d, size, heads, joined, record)
        elif mode == "center" and "planar" in outputs:
            err = _close(outputs[mode], outputs["planar"])
            if err > 1e-4:
                problems.append(f"P3: center differs from planar by {err:.2g}")
        elif mode == "inflate":
            # every 2D convolution with a spatial kernel may become a thick one (layers or the
            # F.conv2d calls of rewritten modules): the receptive field along depth is at most
            # one slice per side for each
            thick = sum(isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1
                        for m in model.modules())
            depth = 2 * thick + 1
            if depth <= MAX_INFLATE_DEPTH and depth * size * size <= MAX_INFLATE_VOXELS:
                image = x[:1, :, 0]
                constant = image.unsqueeze(2).expand(1, 3, depth, size, size).contiguous()
                entry["p2_depth"] = depth
                # in float64 (w / k is rounded; randomised deep networks amplify float32's
                # rounding to 10% of halonet's features), with the 2D network's own sensitivity
                # to a 1e-13 perturbation as a floor; a wrong inflation is an O(1) difference
                problems += [f"P2 (interior slice): {p}" for p in slice_mismatches(
                    copy.deepcopy(model).double(), model3d, constant.double(), rtol=1e-6,
                    only_slice=depth // 2, noise=1e-13)]
            else:
                entry["p2_depth"] = None
        if mode != "planar":
            out = outputs[mode]
            if not torch.isfinite(out).all() or out.shape != outputs.get("planar", out).shape:
                problems.append(f"output {tuple(out.shape)} not finite or not planar's shape")
        entry["status"] = "mismatch" if problems else "exact"
        entry["problems"] = problems[:5]
        if mode == "planar" and _has_tokens(model3d):
            record["depth_layers"] = check_depth_layers(model, example, x, outputs["planar"])
        del model3d
    record["seconds"] = round(time.time() - start, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{source}__{family}.json").write_text(json.dumps(record, indent=1))
    return record

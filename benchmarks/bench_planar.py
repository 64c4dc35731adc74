"""Planar conversion against its physical limit: the 2D network on the N*D slices.

Run:  python benchmarks/bench_planar.py [--device cuda] [--quick] [--models tv/resnet18 ...]

For every model and pass (eval forward; train forward + backward), in one process:
- 2D: the 2D model on the N*D slices, in NCHW and in channels_last (model and input); the
  faster of the two is the baseline;
- planar: `planar3d.convert(model)` on the (N, C, D, H, W) volume, contiguous and
  channels_last_3d (`model.to(memory_format=torch.channels_last_3d)` and a channels_last_3d input);
- naive: the naive module swap of naive_swap.py on the contiguous volume.
"planar" is the converted model in the layout of the 2D baseline (channels_last_3d when
channels_last is the faster 2D layout). "2D A/A" times a second copy of the NCHW 2D model against
the first: how far from 1.00 noise alone puts a ratio. "MiB copied" counts the bytes that copy
ops write in one pass (layout conversions; noise cannot blur it). Time ratios are medians of
per-round ratios (see _common.py); on CPU each is followed by the same ratio of process CPU time, in
parentheses, which load from other processes cannot stretch. The project's targets: time ratio
<= 1.10 and memory ratio <= 1.05; ratios over target are in bold.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import _common as common  # first: it configures OpenMP before torch loads it
import torch
from _common import Ratio, fmt_mib, fmt_ms, fmt_ratio, markdown_row, markdown_table
from naive_swap import naive_swap
from torch import nn

import planar3d

TIME_TARGET = 1.10
MEMORY_TARGET = 1.05
SHAPES = {"cpu": (2, 3, 16, 128, 128), "cuda": (4, 3, 16, 256, 256)}
QUICK_SHAPE = (1, 3, 8, 96, 96)
CL2, CL3 = torch.channels_last, torch.channels_last_3d


@dataclass
class Row:
    model: str
    train: bool
    best_2d: str = ""
    ms_2d: float = 0.0
    same_2d: Ratio | None = None
    planar: Ratio | None = None
    planar_note: str = ""
    contiguous: Ratio | None = None
    channels_last: str = ""
    naive: str = ""
    mem_planar: float = 0.0
    mem_naive: str = ""
    copied: str = ""
    reference: list[str] | None = None

    def cells(self) -> list[str]:
        return [
            self.model, "train" if self.train else "eval", f"{self.best_2d}, {fmt_ms(self.ms_2d)}",
            self.same_2d.format(), self.planar.format(TIME_TARGET) + self.planar_note,
            self.contiguous.format(), self.channels_last, self.naive,
            fmt_ratio(self.mem_planar, MEMORY_TARGET), self.mem_naive, self.copied,
        ] + (self.reference or [])

    def met(self) -> bool:
        return self.planar.wall <= TIME_TARGET and self.mem_planar <= MEMORY_TARGET


HEADERS = [
    "model", "pass", "2D baseline: layout, ms", "2D A/A", "**planar** time / 2D",
    "planar contiguous / 2D NCHW", "planar CL3d / 2D CL", "naive time / 2D",
    "**planar** memory / 2D", "naive memory / 2D", "MiB copied: 2D, planar",
]
REFERENCE_HEADERS = ["reference contiguous / 2D NCHW", "reference CL3d / 2D CL"]


def load_reference(src: Path) -> ModuleType:
    """Another planar3d (e.g. `git archive` of an older commit) as module `planar3d_reference`."""
    init = src / "planar3d" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--reference-src must contain planar3d/__init__.py; {init} is missing")
    spec = importlib.util.spec_from_file_location(
        "planar3d_reference", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def planar_candidates(library: ModuleType, tag: str, model: nn.Module, example: torch.Tensor,
                      x: torch.Tensor) -> tuple[dict, str]:
    """`tag` (contiguous volume) and `tag`_cl (channels_last_3d model and volume), or why the
    channels_last_3d one could not be made."""
    converted = library.convert(model, example_input=example)
    candidates = {tag: (converted, x)}
    try:
        candidates[f"{tag}_cl"] = (copy.deepcopy(converted).to(memory_format=CL3),
                                   x.contiguous(memory_format=CL3))
    except RuntimeError as error:  # older planar3d: folded modules' 4-D weights refuse it
        return candidates, f".to(channels_last_3d) fails ({type(error).__name__})"
    return candidates, ""


def naive_check(naive: nn.Module, planar: nn.Module, x: torch.Tensor) -> str:
    """Whether the naive swap runs and agrees with planar on a volume of unlike slices."""
    scales = torch.linspace(0.25, 2.0, x.shape[2], device=x.device).view(1, 1, -1, 1, 1)
    x = x * scales
    try:
        with torch.no_grad():
            got = naive.eval()(x)
            want = planar.eval()(x)
    except Exception as error:  # the finding is the failure itself
        return f"fails ({type(error).__name__})"
    if got.shape != want.shape:
        return f"wrong shape {tuple(got.shape)}"
    err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()
    return "" if err < 1e-4 else f"wrong output (rel. err {err:.1g})"


def bench_model(name: str, shape: tuple, device: torch.device, args,
                reference: ModuleType | None) -> list[Row]:
    model = common.build_model(name).to(device).eval()
    example = torch.randn(2, shape[1], *shape[3:], device=device)
    x = torch.randn(shape, device=device)
    slices = common.fold_slices(x)
    models = {
        "2d": (model, slices),
        "2d_again": (copy.deepcopy(model), slices.clone()),
        "2d_cl": (copy.deepcopy(model).to(memory_format=CL2), slices.contiguous(memory_format=CL2)),
    }
    planar, cl_state = planar_candidates(planar3d, "3d", model, example, x)
    models.update(planar)
    ref_state = ""
    if reference is not None:
        candidates, ref_state = planar_candidates(reference, "ref", model, example, x)
        models.update(candidates)
    naive = naive_swap(model)
    naive_state = naive_check(naive, models["3d"][0], x)
    if not naive_state.startswith("fails"):
        models["naive"] = (naive, x)
    del naive  # a failing copy is not kept: vgg16 holds 0.5 GB of weights per copy

    rows = []
    for train in (False, True):
        steps = {k: common.make_step(*mi, train=train, amp=args.amp,
                                     compile=args.compile) for k, mi in models.items()}
        times = common.interleaved_times(steps, repeats=args.repeats, warmup=args.warmup,
                                         device=device)
        cl_best = times.median("2d_cl") < times.median("2d")
        base, same = ("2d_cl", "3d_cl") if cl_best else ("2d", "3d")
        row = Row(name, train, "channels_last" if cl_best else "NCHW", times.median(base))
        if same not in models:
            same, row.planar_note = "3d", " (contiguous)"
        row.same_2d = times.ratio("2d_again", "2d")
        row.planar = times.ratio(same, base)
        row.contiguous = times.ratio("3d", "2d")
        row.channels_last = cl_state or times.ratio("3d_cl", "2d_cl").format()
        mem_2d = common.memory_bytes(*models[base], train=train, amp=args.amp)
        row.mem_planar = common.memory_bytes(*models[same], train=train, amp=args.amp) / mem_2d
        copied = [common.copied_bytes(*models[k], train=train, amp=args.amp) for k in (base, same)]
        row.copied = ", ".join(fmt_mib(b) for b in copied)
        if reference is not None:
            row.reference = [times.ratio("ref", "2d").format(),
                             ref_state or times.ratio("ref_cl", "2d_cl").format()]
        if "naive" in models:
            naive_time = times.ratio("naive", base).format()
            row.naive = f"{naive_time} {naive_state}".strip()
            mem = common.memory_bytes(*models["naive"], train=train, amp=args.amp) / mem_2d
            row.mem_naive = fmt_ratio(mem)
        else:
            row.naive = row.mem_naive = naive_state
        print(markdown_row(row.cells()), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    sizes = dict(quick_models=common.QUICK_MODELS, shapes=SHAPES, quick_shape=QUICK_SHAPE)
    common.add_model_and_shape_args(parser, **sizes)
    parser.add_argument("--reference-src", type=Path, default=None,
                        help="also time the planar3d package in this folder (e.g. an older "
                        "commit: git archive COMMIT src | tar -x -C DIR, then DIR/src)")
    args = parser.parse_args(argv)
    reference = load_reference(args.reference_src) if args.reference_src else None
    headers = HEADERS + (REFERENCE_HEADERS if reference else [])
    device = common.setup(args)
    names, shape = common.model_names_and_shape(args, device, **sizes)

    print(f"## planar vs the 2D network on the N*D slices, volume {shape}")
    print(common.machine(device, args))
    print(markdown_table(headers, []), flush=True)
    rows = [row for name in names for row in bench_model(name, shape, device, args, reference)]
    met = [r for r in rows if r.met()]
    summary = (f"targets (time <= {TIME_TARGET}, memory <= {MEMORY_TARGET}) met for "
               f"{len(met)} of {len(rows)} model/pass pairs")
    print(summary)
    return "\n".join([
        f"### planar vs the 2D network on the N*D slices, volume {shape}",
        common.machine(device, args), "", markdown_table(headers, [r.cells() for r in rows]), "",
        summary,
    ])


if __name__ == "__main__":
    main(sys.argv[1:])

"""Conversion modes against planar: time, memory and FLOPs of the same network.

Run:  python benchmarks/bench_modes.py [--device cuda] [--quick] [--models tv/resnet18 ...]

Every mode `planar3d.convert` accepts (planar, center, inflate, acs; kernel depth 3 for the
thick-kernel modes) converts the same 2D model; each runs on the same contiguous volume. Time and
memory are ratios against planar measured in the same run (eval forward; train forward +
backward); FLOPs are counted with torch.utils.flop_counter on one eval forward, for the 2D model
on the N*D slices too. On CPU a time ratio is followed by the ratio of process CPU time (see
_common.Times). A mode `convert` refuses (NotImplementedError / ValueError) is listed
as unavailable, a model a mode cannot convert as failing, with the error class.
"""

from __future__ import annotations

import argparse
import sys

import _common as common  # first: it configures OpenMP before torch loads it
import torch
from _common import fmt_ratio, markdown_row, markdown_table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import planar3d

MODES = ("planar", "center", "inflate", "acs")
KERNEL_DEPTH = 3
# Thick kernels cost about KERNEL_DEPTH times planar's FLOPs: a smaller CPU volume than
# bench_planar's keeps the full run within an hour on 2 cores.
SHAPES = {"cpu": (1, 3, 16, 96, 96), "cuda": (4, 3, 16, 256, 256)}
QUICK_SHAPE = (1, 3, 8, 64, 64)
QUICK_MODELS = ("tv/resnet18",)
HEADERS = ["model", "mode", "GFLOPs (eval)", "FLOPs / planar", "eval time / planar",
           "train time / planar", "eval memory / planar", "train memory / planar"]


def flops(model: nn.Module, x: torch.Tensor) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def convert_modes(name: str, model: nn.Module, example: torch.Tensor) -> tuple[dict, list[str]]:
    """The converted model of every mode that converts; a note for every one that does not."""
    converted, notes = {}, []
    for mode in MODES:
        try:
            converted[mode] = planar3d.convert(
                model, mode=mode, kernel_depth=KERNEL_DEPTH, example_input=example
            )
        except (NotImplementedError, ValueError) as error:
            notes.append(f"mode {mode!r} unavailable: {type(error).__name__}: {error}")
        except Exception as error:  # a finding about this model, not a crash of the benchmark
            notes.append(f"mode {mode!r} fails on {name}: {type(error).__name__}: {error}")
    return converted, notes


def bench_model(name: str, shape: tuple, device: torch.device, args) -> tuple[list, list[str]]:
    model = common.build_model(name).to(device).eval()
    example = torch.randn(2, shape[1], *shape[3:], device=device)
    converted, notes = convert_modes(name, model, example)
    x = torch.randn(shape, device=device)
    flops_2d = flops(model, common.fold_slices(x))
    counted = {mode: flops(m, x) for mode, m in converted.items()}
    rows = [[name, "2D on N*D slices", f"{flops_2d / 1e9:.1f}",
             fmt_ratio(flops_2d / counted["planar"]), "", "", "", ""]]
    results: dict[str, dict[str, str]] = {mode: {} for mode in converted}
    for train in (False, True):
        pass_name = "train" if train else "eval"
        steps = {mode: common.make_step(m, x, train=train, amp=args.amp,
                                          compile=args.compile)
                 for mode, m in converted.items()}
        times = common.interleaved_times(steps, repeats=args.repeats, warmup=args.warmup,
                                         device=device)
        memory = {mode: common.memory_bytes(m, x, train=train, amp=args.amp)
                  for mode, m in converted.items()}
        for mode in converted:
            results[mode][f"{pass_name} time"] = times.ratio(mode, "planar").format()
            results[mode][f"{pass_name} memory"] = fmt_ratio(memory[mode] / memory["planar"])
    for mode, r in results.items():
        rows.append([name, mode, f"{counted[mode] / 1e9:.1f}",
                     fmt_ratio(counted[mode] / counted["planar"]), r["eval time"],
                     r["train time"], r["eval memory"], r["train memory"]])
    for row in rows:
        print(markdown_row(row), flush=True)
    return rows, notes


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    sizes = dict(quick_models=QUICK_MODELS, shapes=SHAPES, quick_shape=QUICK_SHAPE)
    common.add_model_and_shape_args(parser, **sizes)
    args = parser.parse_args(argv)
    device = common.setup(args)
    names, shape = common.model_names_and_shape(args, device, **sizes)

    title = f"conversion modes against planar, volume {shape}, kernel depth {KERNEL_DEPTH}"
    print(f"## {title}\n{common.machine(device, args)}")
    print(markdown_table(HEADERS, []), flush=True)
    rows, notes = [], []
    for name in names:
        model_rows, model_notes = bench_model(name, shape, device, args)
        rows += model_rows
        notes += model_notes
    for note in dict.fromkeys(notes):
        print(note)
    return "\n".join([f"### {title}", common.machine(device, args), "",
                      markdown_table(HEADERS, rows), "", *dict.fromkeys(notes)])


if __name__ == "__main__":
    main(sys.argv[1:])

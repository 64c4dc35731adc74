"""Vision transformers on volumes: planar against the 2D network on the N*D slices, and the cost
of learning depth.

Run:  python benchmarks/bench_tokens.py [--device cuda] [--quick] [--models vit_small ...]

For every model and pass (eval forward; train forward + backward), in one process:
- 2D: the 2D ViT on the N*D slices (the baseline), and a second copy of it ("2D A/A": how far
  from 1.00 noise alone puts a ratio);
- planar: `planar3d.convert(vit)` on the (N, C, D, H, W) volume;
- the depth options, each against planar: a depth position embedding, divided space-depth
  attention (a depth attention branch beside every attention module), center tubelets (the
  patch embedding with depth 3, one token grid per slice), and tubelets of 3 slices
  (`depth="pool"`: a third of the tokens).
Time ratios are medians of per-round ratios (see _common.py); on CPU each is followed by the same
ratio of process CPU time, in parentheses. Memory: bytes saved for backward (train) or the peak
of live tensors (eval) on CPU, peak allocated on GPU. The target for planar: time <= 1.10 and
memory <= 1.05 of the 2D network's.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings

import _common as common  # first: it configures OpenMP before torch loads it
import torch
from _common import fmt_ratio, markdown_row, markdown_table
from torch import nn

import planar3d

TIME_TARGET = 1.10
MEMORY_TARGET = 1.05
# name -> timm model; built for the volume's in-plane size
MODELS = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
          "vit_base": "vit_base_patch16_224"}
QUICK_MODELS = ("vit_tiny",)
SHAPES = {"cpu": (2, 3, 8, 224, 224), "cuda": (4, 3, 16, 224, 224)}
QUICK_SHAPE = (1, 3, 6, 96, 96)
# depth option -> convert() arguments beyond the 2D model
OPTIONS: dict[str, dict] = {
    "depth position": {"depth_layers": ("position",)},
    "depth attention": {"depth_layers": ("attention",)},
    "center tubelets": {"mode": "center"},
    "tubelets of 3 (pool)": {"mode": "center", "depth": "pool"},
}
HEADERS = ["model", "pass", "2D, ms", "2D A/A", "**planar** time / 2D", "planar memory / 2D",
           *(f"{option}: time, memory / planar" for option in OPTIONS)]


def build(name: str, size: int) -> nn.Module:
    """The 2D ViT `name` of MODELS for `size`² images, seeded random weights."""
    import timm

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(MODELS[name], img_size=size)


def bench_model(name: str, shape: tuple, device: torch.device, args) -> list[list[str]]:
    model = build(name, shape[-1]).to(device).eval()
    example = torch.randn(2, shape[1], *shape[3:], device=device)
    x = torch.randn(shape, device=device)
    slices = common.fold_slices(x)
    candidates = {"2d": (model, slices), "2d_again": (copy.deepcopy(model), slices.clone()),
                  "planar": (planar3d.convert(model, example_input=example), x)}
    for option, kwargs in OPTIONS.items():
        candidates[option] = (planar3d.convert(model, example_input=example, **kwargs), x)
    rows = []
    for train in (False, True):
        steps = {k: common.make_step(m, i, train=train, amp=args.amp, compile=args.compile)
                 for k, (m, i) in candidates.items()}
        times = common.interleaved_times(steps, repeats=args.repeats, warmup=args.warmup,
                                         device=device)
        memory = {k: common.memory_bytes(m, i, train=train, amp=args.amp)
                  for k, (m, i) in candidates.items()}
        cells = [name, "train" if train else "eval", common.fmt_ms(times.median("2d")),
                 times.ratio("2d_again", "2d").format(),
                 times.ratio("planar", "2d").format(TIME_TARGET),
                 fmt_ratio(memory["planar"] / memory["2d"], MEMORY_TARGET)]
        cells += [f"{times.ratio(option, 'planar').format()}, "
                  f"{fmt_ratio(memory[option] / memory['planar'])}" for option in OPTIONS]
        print(markdown_row(cells), flush=True)
        rows.append(cells)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None,
                        help=f"models to run (default: all; --quick: {', '.join(QUICK_MODELS)})")
    parser.add_argument("--shape", type=int, nargs=5, default=None,
                        metavar=("N", "C", "D", "H", "W"),
                        help=f"volume shape, H = W (default: {SHAPES['cpu']} on CPU, "
                        f"{SHAPES['cuda']} on GPU; --quick: {QUICK_SHAPE})")
    args = parser.parse_args(argv)
    device = common.setup(args)
    shape = tuple(args.shape or (QUICK_SHAPE if args.quick else SHAPES[device.type]))
    if shape[3] != shape[4]:
        raise SystemExit(f"--shape needs square slices (H = W), got {shape[3]}x{shape[4]}")
    names = args.models or list(QUICK_MODELS if args.quick else MODELS)
    title = f"vision transformers: planar vs the 2D network on the N*D slices, volume {shape}"
    print(f"## {title}")
    print(common.machine(device, args))
    print(markdown_table(HEADERS, []), flush=True)
    rows = [row for name in names for row in bench_model(name, shape, device, args)]
    return "\n".join([f"### {title}", common.machine(device, args), "",
                      markdown_table(HEADERS, rows)])


if __name__ == "__main__":
    main(sys.argv[1:])

"""Conversion time against the number of modules: it must grow no faster than linearly.

Run:  python benchmarks/bench_convert_time.py [--quick]

`planar3d.convert` records one 2D run and probes every module with its own forward on its
recorded input, so its time is the network's compute times the nesting depth plus a cost per
module. Two families separate the two:
- a chain of k identical blocks (Conv2d, BatchNorm2d, GroupNorm, ReLU and a timm-style
  squeeze-excite block that gets folded), k doubling: the same depth and the same work per
  module, so time against module count shows the per-module cost alone; fitted as
  time = a + b * modules and as a power law time ~ modules^p (p = 1: linear);
- real networks of increasing size (torchvision resnet18..152, timm nasnetalarge, the largest
  classic CNN of timm by module count), each with its default example input, as users run it.
Median of --repeats conversions each (3 by default, after one warm-up). Conversion runs on one
thread whatever torch's setting (it sets that itself), so its process CPU time, which is what is
reported, is the wall-clock time it takes on an idle machine, even when the machine is shared.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import _common as common  # first: it configures OpenMP before torch loads it
import torch
from _common import markdown_row, markdown_table
from torch import nn

import planar3d

CHAIN_LENGTHS = (32, 64, 128, 256, 512, 1024)
QUICK_CHAIN_LENGTHS = (8, 16, 32, 64)
REAL = ("tv/resnet18", "tv/resnet34", "tv/resnet50", "tv/resnet101", "tv/resnet152",
        "timm/nasnetalarge")
QUICK_REAL = ("tv/resnet18", "tv/resnet50")


class SqueezeExcite(nn.Module):
    """2D-only functional code (x.mean over H, W), as in timm's SE blocks: planar3d folds it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True)).sigmoid()


class Block(nn.Module):
    """Swapped, kept and folded layers under a custom forward; GroupNorm keeps the activations
    of a thousand-block chain finite."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.norm = nn.GroupNorm(2, channels)
        self.act = nn.ReLU()
        self.se = SqueezeExcite(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act(self.norm(self.bn(self.conv(x)))))


def chain(blocks: int, channels: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1),
                         *(Block(channels) for _ in range(blocks)))


def real_model(name: str) -> nn.Module:
    import timm
    import torchvision

    source, model = name.split("/")
    return timm.create_model(model) if source == "timm" else getattr(torchvision.models, model)()


def convert_seconds(model: nn.Module, example: torch.Tensor | None, repeats: int) -> float:
    """Median process CPU seconds of `convert` after one warm-up conversion."""
    times = []
    for i in range(repeats + 1):
        start = time.process_time()
        planar3d.convert(model, example_input=example)
        if i:
            times.append(time.process_time() - start)
    return statistics.median(times)


def fit(modules: list[int], seconds: list[float]) -> str:
    """Least-squares line and log-log slope of seconds against module count."""
    n = len(modules)
    mx, my = sum(modules) / n, sum(seconds) / n
    sxx = sum((m - mx) ** 2 for m in modules)
    slope = sum((m - mx) * (s - my) for m, s in zip(modules, seconds)) / sxx
    intercept = my - slope * mx
    ss_res = sum((s - intercept - slope * m) ** 2 for m, s in zip(modules, seconds))
    ss_tot = sum((s - my) ** 2 for s in seconds)
    lx = [math.log(m) for m in modules]
    ly = [math.log(s) for s in seconds]
    lmx, lmy = sum(lx) / n, sum(ly) / n
    power = (sum((a - lmx) * (b - lmy) for a, b in zip(lx, ly))
             / sum((a - lmx) ** 2 for a in lx))
    return (f"time = {slope * 1e3:.2f} ms x modules {intercept * 1e3:+.0f} ms "
            f"(R^2 = {1 - ss_res / ss_tot:.3f}); power law: time ~ modules^{power:.2f}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter chains, two real models")
    parser.add_argument("--repeats", type=int, default=3,
                        help="conversions per model, median reported (default: 3)")
    args = parser.parse_args(argv)
    lengths = QUICK_CHAIN_LENGTHS if args.quick else CHAIN_LENGTHS
    reals = QUICK_REAL if args.quick else REAL
    where = (f"CPU {common.cpu_name()}, torch {torch.__version__}, median of {args.repeats} "
             "conversions, process CPU time (one thread)")
    print(f"## conversion time\n{where}")

    headers = ["network", "modules", "example input", "convert CPU (s)", "ms per module"]
    print(markdown_table(headers, []), flush=True)
    rows, counts, seconds = [], [], []
    example = torch.randn(4, 3, 32, 32)
    for k in lengths:
        model = chain(k).eval()
        count = sum(1 for _ in model.modules())
        s = convert_seconds(model, example, args.repeats)
        counts.append(count)
        seconds.append(s)
        rows.append([f"chain of {k} blocks", count, "4x3x32x32", f"{s:.2f}",
                     f"{s / count * 1e3:.1f}"])
        print(markdown_row(rows[-1]), flush=True)
    chain_fit = fit(counts, seconds)
    print(f"chain: {chain_fit}")
    for name in reals:
        model = real_model(name).eval()
        count = sum(1 for _ in model.modules())
        s = convert_seconds(model, None, args.repeats)
        shape = planar3d.conversion_report(planar3d.convert(model)).example_shape
        size = "x".join(str(v) for v in shape)
        rows.append([name, count, size, f"{s:.2f}", f"{s / count * 1e3:.1f}"])
        print(markdown_row(rows[-1]), flush=True)
    return "\n".join(["### conversion time", where, "", markdown_table(headers, rows), "",
                      f"Chain of identical blocks: {chain_fit}."])


if __name__ == "__main__":
    main(sys.argv[1:])

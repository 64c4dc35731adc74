"""Every benchmark of the project in one run; the tables as Markdown for the README.

Run:  python benchmarks/run_all.py [--device cuda] [--quick] [--out results.md]
      make bench   (the --quick run: a few minutes on a 2-core CPU)

1. bench_planar.py: planar (and the naive module swap) against the 2D network on the N*D slices;
2. bench_modes.py: the conversion modes against planar;
   bench_tokens.py: vision transformers, planar against the 2D network, and the depth options;
3. bench_convert_time.py: conversion time against the number of modules (CPU);
4. bench_convert_sweep.py: conversion time of every network of the family sweep, idle and beside
   a busy process, and conversion memory against the 2D forward (CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _common as common  # first: it configures OpenMP before torch loads it
import bench_convert_sweep
import bench_convert_time
import bench_modes
import bench_planar
import bench_tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the Markdown tables to this file")
    args = parser.parse_args(argv)
    shared = ["--device", args.device, "--threads", str(args.threads), "--warmup",
              str(args.warmup)] + (["--quick"] if args.quick else []) + (
              ["--amp"] if args.amp else []) + (["--compile"] if args.compile else []) + (
              ["--repeats", str(args.repeats)] if args.repeats else [])
    sections = [bench_planar.main(shared), bench_modes.main(shared), bench_tokens.main(shared)]
    quick = ["--quick"] if args.quick else []
    sections.append(bench_convert_time.main(quick))
    if args.device == "cpu":
        sections.append(bench_convert_sweep.main(quick))
    text = "\n\n".join(sections) + "\n"
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])

"""``msseg demo`` (``make demo``): phantom -> training -> prediction -> evaluation on a CPU.

    msseg demo                                # everything under demo_out/
    msseg demo --rounds 1 2 3 4 5             # the full 5-round cross-validation
    msseg demo --encoder vgg16 -o demo_vgg    # the paper's encoder and weights (slower)
    msseg demo --encoder vit_tiny_patch16_224 --train-encoder -o demo_vit   # a vision transformer

What it runs and why is `msseg.workflows.demo`. It runs torch on one thread by default
(``--threads``): on a small shared machine, OpenMP threads that wait for each other cost more
than they gain (measured 5x slower steps with two threads at a load average of 4 on two cores).
Exits with 1 if the model does not beat the threshold baseline.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.config import PRESETS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg demo``."""
    demo = PRESETS["demo"]
    parser.add_argument("-o", "--out", type=Path, default=Path("demo_out"),
                        help="output folder (default demo_out/)")
    parser.add_argument("--rounds", type=int, nargs="+", default=[1], metavar="K",
                        help="cross-validation rounds to run (default 1; all: 1 2 3 4 5)")
    parser.add_argument("--encoder", default=demo.encoder,
                        help=f"timm encoder (default {demo.encoder} with offline ImageNet "
                             f"weights; vgg16 with Keras' ImageNet weights, the paper's; any "
                             f"other starts from random weights; a vision transformer feeds the "
                             f"decoder from evenly spaced blocks, as ViT-based U-Nets do)")
    parser.add_argument("--train-encoder", action="store_true",
                        help="fine-tune the encoder too (the demo freezes it; an encoder without "
                             "offline weights learns only this way)")
    parser.add_argument("--epochs", type=int, default=demo.epochs,
                        help=f"maximum epochs (default {demo.epochs}, the demo preset's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: more threads wait on each other on "
                             "a small shared machine)")


def run(args: argparse.Namespace) -> int:
    """Run the demo; log the comparison. Returns 1 if the model does not beat the baseline."""
    import torch

    from msseg.evaluation.reports import overall_table
    from msseg.workflows.demo import run_demo

    torch.set_num_threads(args.threads)
    result = run_demo(args.out, rounds=args.rounds, encoder=args.encoder, epochs=args.epochs,
                      train_encoder=args.train_encoder)
    log.info("\n%s", overall_table(result.rows()).rstrip())
    log.info("demo finished in %.0f s; results: %s", result.seconds["total"], result.report)
    log.info("report (open it in a browser): %s", result.page.resolve())
    if not result.beats_baseline:
        config = result.config
        log.error("the model does not beat the threshold baseline (see %s); the encoder %s %s:"
                  " see %s and try more --epochs", result.report, config.encoder,
                  "has ImageNet weights" if config.weights else "is RANDOM",
                  args.out / f"round{args.rounds[0]}" / "train" / "history.csv")
        return 1
    return 0

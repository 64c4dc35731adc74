"""``python examples/msseg demo`` (``make demo``): the whole method end to end on a CPU, in minutes.

    python examples/msseg demo                          # everything under demo_out/
    python examples/msseg demo --rounds 1 2 3 4 5       # the full 5-round cross-validation
    python examples/msseg demo --encoder vgg16 --out demo_vgg   # the paper's encoder, random

1. Phantom: the 15 MSSEG patients as synthetic scans (`msseg.phantom.generate`) at scale 0.125, so the
   largest array (centre 01) is 18 x 64 x 64 and every scan fits in the 64³ cube without
   shrinking: a perfect cube prediction maps back to its native grid with Dice 1.0. (At scale
   0.25 lesions are 1-3 voxels wide and the round trip through 64³ caps Dice near 0.7.)
2. Preprocessing into 64³ cubes, as the paper's pipeline at 256³ (`msseg.data.cache`).
3. Per round of the paper's cross-validation (`msseg.evaluation.cross_validation`; default round 1: test 01016SACH,
   07001MOEL, 08002CHJE, validate 08037ROGU, train on the other 11):
   - the threshold baseline: the best single global intensity threshold, chosen on the round's
     12 training and validation scans, applied to its test scans;
   - training of the `demo` config: the paper's planar res-u-net at reduced width (decoder
     64/32/16/8, bottleneck 128, trainable) on a frozen planar MobileNetV2 encoder converted by
     planar3d from torchvision's genuine ImageNet weights (installed offline), loss BCE − Dice
     + 1, Adam 1e-3, 16-slice slabs with step 8, early stopping on the validation loss;
   - prediction of the test scans, recomposed both ways (the paper's middle-8 rule and the
     average of the overlaps), scored on the native grids, and an overlay PNG per test scan.
4. ``results.md`` (the comparison, Table 2 layout and timings), ``per_scan.csv``, ``table.md``,
   ``table.csv`` and the figures, all under `--out`.

Why MobileNetV2 and not VGG-16: no ImageNet VGG-16 weights can be had offline, and the paper's
own finding holds here: the frozen random VGG-16 encoder stays at the all-negative minimum
(`--encoder vgg16`: validation Dice <= 0.002 in 20 epochs, test Dice 0.007). MobileNetV2's
genuine ImageNet weights do converge, and its planar encoder costs far less than VGG-16 at 64²
(3-5 s per 39-step epoch on one core, against 20-22 s).

The demo runs torch on one thread by default (`--threads`): on a small shared machine, OpenMP
threads that wait for each other cost more than they gain (measured 5x slower steps with two
threads at a load average of 4 on two cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from msseg.commands.train import format_config, pipeline_config
from msseg.config import preset
from msseg.data.cache import fill_cache
from msseg.data.preprocess import normalise
from msseg.evaluation.baseline import threshold_baseline
from msseg.evaluation.cross_validation import RECOMPOSE_NAMES, CvRound, cv_rounds, run_round
from msseg.evaluation.scoring import (
    ScanResult,
    format_results,
    overall_table,
    score_scan,
    write_report,
)
from msseg.io.atomic import atomic_write_text
from msseg.io.nifti import load_scan
from msseg.model.encoder import offline_mobilenet_v2
from msseg.phantom.generate import write_phantom

PHANTOM_SCALE = 0.125  # centre 01: 18 x 64 x 64 voxels, so the 64³ cube never shrinks a scan
PHANTOM_SEED = 0
DEMO_ENCODER = "mobilenetv2_100"  # the encoder with genuine ImageNet weights available offline


def baseline_results(cv_round: CvRound) -> tuple[float, list[ScanResult]]:
    """The best global threshold on the round's training and validation scans, scored on its
    test scans (native grids, FLAIR min-max scaled to [-1, 1] as in `msseg.evaluation.baseline`)."""
    chosen = threshold_baseline([*cv_round.train, cv_round.val], progress=False).threshold
    results = []
    for record in cv_round.test:
        scan = load_scan(record)
        results.append(score_scan(normalise(scan.flair) >= chosen, scan))
    return chosen, results


def mean_dice(results: list[ScanResult]) -> float:
    """The mean Dice over `results`."""
    return float(np.mean([r.metrics.dice for r in results]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg demo``."""
    parser.add_argument("--out", type=Path, default=Path("demo_out"),
                        help="output folder (default demo_out/)")
    parser.add_argument("--rounds", type=int, nargs="+", default=[1], metavar="K",
                        help="cross-validation rounds to run (default 1; all: 1 2 3 4 5)")
    parser.add_argument("--encoder", default=DEMO_ENCODER,
                        help=f"timm encoder (default {DEMO_ENCODER} with offline ImageNet "
                             f"weights; any other starts from random weights)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the demo preset's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, see the module docstring)")


def run(args: argparse.Namespace) -> int:
    """Run the demo; print and write the results. Returns 1 if the model does not beat the
    threshold baseline."""
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    seconds: dict[str, float] = {}
    out = args.out

    # 1-2. phantom and 64³ cubes
    tick = time.perf_counter()
    records = write_phantom(out / "data", scale=PHANTOM_SCALE, seed=PHANTOM_SEED, progress=False)
    seconds["phantom"] = time.perf_counter() - tick
    changes = {"encoder": args.encoder, "out_dir": str(out / "train")}
    if args.encoder == DEMO_ENCODER:
        changes["weights"] = str(offline_mobilenet_v2())
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    config = preset("demo", **changes)
    tick = time.perf_counter()
    entries = {e.record.patient_id: e for e in
               fill_cache(records, pipeline_config(config), out / "cache", progress=False)}
    seconds["preprocessing"] = time.perf_counter() - tick
    print(f"phantom: {len(records)} scans at scale {PHANTOM_SCALE} in {out / 'data'}; "
          f"cubes {config.volume_size}³ in {out / 'cache'}")
    print(f"config 'demo':\n{format_config(config)}")

    # 3. per round: threshold baseline, training, prediction both ways, scores, overlays
    rounds = [r for r in cv_rounds(records) if r.number in args.rounds]
    if len(rounds) != len(set(args.rounds)):
        raise ValueError(f"--rounds {args.rounds}: the phantom has rounds 1..5")
    methods = ("average", "paper")
    model: dict[str, list[ScanResult]] = {m: [] for m in methods}
    baseline: list[ScanResult] = []
    thresholds = []
    for cv_round in rounds:
        print(f"round {cv_round.number}: test {[r.patient_id for r in cv_round.test]}, "
              f"validation {cv_round.val.patient_id}, {len(cv_round.train)} training scans")
        tick = time.perf_counter()
        threshold, results = baseline_results(cv_round)
        thresholds.append(threshold)
        baseline += results
        seconds["threshold baseline"] = seconds.get("threshold baseline", 0) + (
            time.perf_counter() - tick)
        tick = time.perf_counter()
        done = run_round(cv_round, config, entries, out / f"round{cv_round.number}",
                         out / "overlays", methods=methods)
        seconds["training + prediction"] = seconds.get("training + prediction", 0) + (
            time.perf_counter() - tick)
        for method in methods:
            model[method] += done[method]
    seconds["total"] = time.perf_counter() - start

    # 4. results
    table = write_report(model["average"], out)
    rows = {"threshold baseline (best global threshold of the training scans)": baseline,
            **{f"planar res-u-net, {RECOMPOSE_NAMES[m]}": model[m] for m in methods}}
    test_ids = [r.patient_id for r in model["average"]]
    curves = [f"[round {r.number}](round{r.number}/train/curves.png)" for r in rounds]
    report = "\n".join([
        "# msseg demo results",
        "",
        f"Phantom at scale {PHANTOM_SCALE} (seed {PHANTOM_SEED}), {config.volume_size}³ cubes; "
        f"cross-validation round(s) {[r.number for r in rounds]} of the paper's protocol; "
        f"test scans {test_ids}. Model: planar res-u-net, encoder {config.encoder} "
        f"({'ImageNet weights, ' if config.weights else 'RANDOM weights, '}"
        f"{'trainable' if config.train_encoder else 'frozen'}), decoder "
        f"{list(config.decoder_filters)}, bottleneck {config.bottleneck_filters}. Scores on "
        f"the native grids; mean ± std over the test scans.",
        "",
        overall_table(rows),
        f"Baseline threshold(s) on [-1, 1]-scaled FLAIR: {[round(t, 3) for t in thresholds]}.",
        "",
        "## Table 2 layout (average of overlaps)",
        "",
        table.to_markdown(),
        "## Per scan (average of overlaps)",
        "",
        "```",
        format_results(model["average"]),
        "```",
        "",
        "## Run time",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {step} | {value:.0f} |" for step, value in seconds.items()),
        "",
        f"Figures: training curves {', '.join(curves)}; overlays in [overlays/](overlays/).",
        "",
    ])
    atomic_write_text(out / "results.md", report)
    print()
    print(overall_table(rows), end="")
    print(f"\ndemo finished in {seconds['total']:.0f} s; report: {out / 'results.md'}")
    if mean_dice(model["average"]) <= mean_dice(baseline):
        print(f"error: the model (Dice {mean_dice(model['average']):.3f}) does not beat the "
              f"threshold baseline (Dice {mean_dice(baseline):.3f}); the encoder {config.encoder}"
              f" {'has ImageNet weights' if config.weights else 'is RANDOM'}: see "
              f"{out / f'round{rounds[0].number}' / 'train' / 'history.csv'} and try more "
              f"--epochs")
        return 1
    return 0

"""The paper's claim with its own encoder: transfer learning (Keras' ImageNet VGG-16) against the
same network from random weights, everything else equal, over several seeds.

    python examples/msseg/scripts/transfer_vs_random.py --out runs/transfer \\
        --phantom data/phantom \\
        --scan tests/data/open_ms_data/patient07/FLAIR.nii.gz \\
               tests/data/open_ms_data/patient07/Consensus.nii.gz

Two experiments, each run once per arm ("ImageNet" with ``--weights`` = `offline_vgg16()`,
"random" without) and per seed, with the msseg command line (one torch thread per run,
``--jobs`` runs at a time; finished runs are kept and not run again):

- phantom (``--phantom``, e.g. ``msseg phantom -o data/phantom --scale 0.125``): round 1 of the
  paper's cross-validation with the ``demo`` config on a VGG-16 encoder: ``msseg cv --config demo
  --encoder vgg16 --rounds 1``; scored on the 3 test scans' own grids.
- one real scan (``--scan FLAIR MASK``): a smoke test of the real-data recipe at a size a CPU
  trains (2 mm in-plane, 16 x 64² windows, the demo's decoder widths, lr 1e-3): ``msseg train``
  on the scan, validated on the same scan (listed twice). It says whether training fits a real
  scan at all, not how well it generalises.

Writes ``<out>/table.md`` (per run and mean ± std per arm) and ``<out>/curves.png`` (validation
Dice per epoch).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARMS = ("ImageNet", "random")
SCAN_CONFIG = ["--config", "real", "--set", "decoder_filters=64,32,16,8", "bottleneck_filters=128",
               "train_bottleneck=true", "lr=1e-3", "spacing_mm=2", "window=64", "batch_size=2"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for runs and results")
    parser.add_argument("--phantom", type=Path, help="an msseg phantom folder")
    parser.add_argument("--scan", type=Path, nargs=2, metavar=("FLAIR", "MASK"),
                        help="one real scan and its lesion mask")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (20)")
    parser.add_argument("--scan-seeds", type=int, nargs="+",
                        help="seeds of the real-scan runs (default: --seeds)")
    parser.add_argument("--scan-epochs", type=int,
                        help="epochs of the real-scan runs (default: --epochs)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (2)")
    args = parser.parse_args()
    from msseg.model.keras_vgg16 import offline_vgg16

    weights = str(offline_vgg16())
    runs: dict[tuple[str, str, int], tuple[Path, list[str]]] = {}
    if args.phantom:
        for arm in ARMS:
            for seed in args.seeds:
                folder = args.out / "phantom" / f"{arm}-seed{seed}"
                command = ["cv", "-i", str(args.phantom), "-o", str(folder), "--config", "demo",
                           "--encoder", "vgg16", "--rounds", "1", "--epochs", str(args.epochs),
                           "--seed", str(seed), "--threads", "1", "--no-progress",
                           *(["--weights", weights] if arm == "ImageNet" else [])]
                runs[("phantom", arm, seed)] = (folder, command)
    if args.scan:
        table = args.out / "scan" / "scans.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        flair, mask = (p.resolve() for p in args.scan)
        table.write_text("patient_id,flair,mask\n" + "".join(
            f"{name},{flair},{mask}\n" for name in ("scan", "scan_again")))
        epochs = args.scan_epochs or args.epochs
        for arm in ARMS:
            for seed in args.scan_seeds or args.seeds:
                folder = args.out / "scan" / f"{arm}-seed{seed}"
                command = ["train", "-i", str(table), "-o", str(folder), "--val", "scan_again",
                           *SCAN_CONFIG, "--epochs", str(epochs), "--patience",
                           str(epochs), "--seed", str(seed), "--threads", "1",
                           "--no-progress", *(["--weights", weights] if arm == "ImageNet"
                                              else [])]
                runs[("scan", arm, seed)] = (folder, command)
    _run_all({key: value for key, value in runs.items() if not _finished(*key[:1], value[0])},
             jobs=args.jobs)
    results = {key: _result(key[0], folder) for key, (folder, _) in runs.items()}
    (args.out / "table.md").write_text(_table(results))
    _figure(results, args.out / "curves.png")
    print((args.out / "table.md").read_text())
    return 0


def _run_all(runs: dict, *, jobs: int) -> None:
    waiting, running = list(runs.items()), []
    while waiting or running:
        while waiting and len(running) < jobs:
            key, (folder, command) = waiting.pop(0)
            folder.mkdir(parents=True, exist_ok=True)
            log = (folder / "run.log").open("w")
            running.append((key, subprocess.Popen([sys.executable, "-m", "msseg", *command],
                                                  stdout=log, stderr=subprocess.STDOUT), log))
            print("started", *key, flush=True)
        for entry in list(running):
            key, process, log = entry
            if process.poll() is not None:
                log.close()
                running.remove(entry)
                print("finished", *key, "exit", process.returncode, flush=True)
        time.sleep(5)


def _finished(experiment: str, folder: Path) -> bool:
    return (folder / ("round1/results.json" if experiment == "phantom"
                      else "validation.json")).is_file()


def _result(experiment: str, folder: Path) -> dict:
    train = folder / "round1" / "train" if experiment == "phantom" else folder
    with (train / "history.csv").open() as handle:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    if experiment == "phantom":
        saved = json.loads((folder / "round1" / "results.json").read_text())
        validation = saved["validation"]["mean_dice"]
        test = float(np.mean([s["dice"] for s in saved["results"]["average"]]))
        best = saved["best_epoch"]
    else:
        validation = json.loads((folder / "validation.json").read_text())["mean_dice"]
        test = float("nan")
        best = int(min(history, key=lambda r: r["val_loss"])["epoch"])
    return {"history": history, "best_epoch": best, "validation": validation, "test": test,
            "seconds": float(np.median([r["seconds"] for r in history]))}


def _table(results: dict) -> str:
    lines = ["| experiment | encoder | seed | best epoch | max working-space val Dice | "
             "native val Dice (best ckpt) | test Dice (native) | s / epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for (experiment, arm, seed), r in sorted(results.items()):
        peak = max(row["val_dice_working"] for row in r["history"])
        test = "-" if np.isnan(r["test"]) else f"{r['test']:.3f}"
        lines.append(f"| {experiment} | {arm} | {seed} | {r['best_epoch']} | {peak:.3f} | "
                     f"{r['validation']:.3f} | {test} | {r['seconds']:.0f} |")
    lines += ["", "| experiment | encoder | runs | native val Dice | test Dice |",
              "|---|---|---|---|---|"]
    for experiment in sorted({key[0] for key in results}):
        for arm in ARMS:
            chosen = [r for (e, a, _), r in results.items() if (e, a) == (experiment, arm)]
            val = np.array([r["validation"] for r in chosen])
            test = np.array([r["test"] for r in chosen])
            test_text = "-" if np.isnan(test).all() else f"{test.mean():.3f} ± {test.std():.3f}"
            lines.append(f"| {experiment} | {arm} | {len(chosen)} | "
                         f"{val.mean():.3f} ± {val.std():.3f} | {test_text} |")
    return "\n".join(lines) + "\n"


def _figure(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    experiments = sorted({key[0] for key in results})
    fig = Figure(figsize=(5.5 * len(experiments), 4))
    for ax, experiment in zip(np.atleast_1d(fig.subplots(1, len(experiments))), experiments):
        for (e, arm, seed), r in sorted(results.items()):
            if e != experiment:
                continue
            ax.plot([row["epoch"] for row in r["history"]],
                    [row["val_dice_working"] for row in r["history"]], "o-", markersize=3,
                    color="tab:blue" if arm == "ImageNet" else "tab:red",
                    label=f"{arm} VGG-16, seed {seed}")
        ax.set(xlabel="epoch", ylabel="validation Dice (working space)", ylim=(0, 1),
               title={"phantom": "phantom, round 1 (demo config, 64³)",
                      "scan": "real scan, fitted and validated on itself"}[experiment])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())

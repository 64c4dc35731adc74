"""``python examples/msseg cv``: the paper's cross-validation, with its Table 2 and overlays.

    python examples/msseg cv --data data/msseg --out runs/cv --config paper --weights vgg16.pth
    python examples/msseg cv --data data/phantom --out runs/cv-demo --config demo --rounds 1 \
        --weights mobilenet_v2-b0353104.pth   # torchvision ImageNet MobileNetV2

The protocol (paper §3.2): scans are grouped by centre and sorted alphabetically; round k tests
the k-th scan of every centre (5 rounds of 3 test scans for MSSEG). Of the remaining scans,
sorted alphabetically, the LAST one validates (early stopping and the best checkpoint) and the
others train (11 for MSSEG): for MSSEG that is 08037ROGU in rounds 1-4 and 08031SEVE in round 5.

Each round trains from scratch in ``<out>/round<k>/train/``, predicts its test scans with the
best checkpoint, recomposes the slabs both ways (the paper's middle-8 rule and the average of
the overlaps), takes both onto the native grids and scores them there (`msseg.evaluation.scoring`); the
`--recompose` method's masks are written (``<out>/round<k>/pred/<id>_mask.nii.gz``) and drawn
(``<out>/overlays/<id>.png``). ``<out>/round<k>/results.json`` records the round; a finished
round is not run again, so rerunning the same command continues after an interruption. At the
end, in ``<out>``: ``per_scan.csv`` and the Table 2 layout (``table.md``, ``table.csv``: mean ±
std over test scans, per centre and overall) for `--recompose`, and ``recompose.md`` comparing
the two recompositions on the same test scans.

cv runs in one process (one GPU, or the CPU); for several GPUs run ``train`` under torchrun
with ``--exclude`` set to a round's test scans.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.commands.predict import predict_slabs, resolve_runtime
from msseg.commands.train import (
    add_config_arguments,
    config_from_args,
    load_slab_datasets,
    pipeline_config,
)
from msseg.config import TrainConfig
from msseg.data.cache import CacheEntry, fill_cache
from msseg.data.native import prediction_to_native
from msseg.data.slabs import RECOMPOSE_METHODS, recompose_slabs
from msseg.evaluation.metrics import ScanMetrics
from msseg.evaluation.overlay import save_overlay
from msseg.evaluation.scoring import (
    ScanResult,
    format_results,
    overall_table,
    score_scan,
    write_report,
)
from msseg.io.discovery import ScanRecord, discover_scans, prediction_path
from msseg.io.atomic import atomic_write_text
from msseg.io.nifti import load_scan, save_nifti
from msseg.training.checkpoint import load_model
from msseg.training.engine import train

__all__ = [
    "RECOMPOSE_NAMES",
    "CvRound",
    "cv_rounds",
    "finished_round",
    "run_round",
]


@dataclass(frozen=True)
class CvRound:
    """One round of the protocol: which scans test, train and validate."""

    number: int  # 1-based
    test: tuple[ScanRecord, ...]  # the round-th scan of every centre
    train: tuple[ScanRecord, ...]
    val: ScanRecord  # the last remaining scan in alphabetical order


def cv_rounds(records: Sequence[ScanRecord]) -> list[CvRound]:
    """The paper's rounds for `records` (see the module docstring).

    Returns:
        As many rounds as the largest centre has scans; a centre with fewer scans has no test
        scan in the last rounds, so every scan is tested exactly once.
    Raises:
        ValueError: a scan without centre or mask, or a round with fewer than 2 remaining scans.
    """
    unknown = [r.patient_id for r in records if r.centre is None or r.mask is None]
    if unknown:
        raise ValueError(f"cross-validation needs a centre and a mask for every scan; missing for "
                         f"{unknown}. Use the MSSEG layout or a CSV with mask and centre columns.")
    ordered = sorted(records, key=lambda r: r.patient_id)
    centres: dict[str, list[ScanRecord]] = {}
    for record in ordered:
        centres.setdefault(record.centre, []).append(record)
    rounds = []
    for k in range(max(len(scans) for scans in centres.values())):
        test = tuple(scans[k] for _, scans in sorted(centres.items()) if k < len(scans))
        rest = [r for r in ordered if r not in test]
        if len(rest) < 2:
            raise ValueError(f"round {k + 1} leaves {len(rest)} scan(s) for training and "
                             f"validation; cross-validation needs at least 2")
        rounds.append(CvRound(k + 1, test, tuple(rest[:-1]), rest[-1]))
    return rounds


def run_round(
    cv_round: CvRound,
    config: TrainConfig,
    entries: dict[str, CacheEntry],
    folder: Path,
    overlays: Path,
    *,
    methods: Sequence[str] = RECOMPOSE_METHODS,
    min_lesion_mm3: float = 3.0,
) -> dict[str, list[ScanResult]]:
    """Train on the round's scans, predict and score its test scans (see the module docstring).

    Args:
        cv_round: the scans of this round.
        config: the run's config (its out_dir is replaced by ``<folder>/train``).
        entries: patient id -> `CacheEntry` of the preprocessed cubes.
        folder: the round's folder; overlays: where the overlay PNGs go.
        methods: slab recompositions to score ("average", "paper"); the first one's masks are
            written and drawn.
        min_lesion_mm3: see `msseg.evaluation.scoring`.
    Returns:
        Per method, one `ScanResult` per test scan (also saved in ``<folder>/results.json``).
    """
    config = config.replace(out_dir=str(folder / "train"))
    train_set, val_set = load_slab_datasets(config, entries, cv_round.train, [cv_round.val])
    trained = train(config, train_set, val_set)
    device, amp_dtype = resolve_runtime(config.device, _AMP[config.precision])
    model, _ = load_model(trained.best_path or trained.last_path, device=device)
    results: dict[str, list[ScanResult]] = {method: [] for method in methods}
    for record in cv_round.test:
        scan = load_scan(record)
        slabs = predict_slabs(model, entries[record.patient_id].load().flair, slab=config.slab,
                              step=config.slab_step, batch_size=config.batch_size,
                              amp_dtype=amp_dtype, channels_last=config.channels_last)
        for method in methods:
            cube = recompose_slabs(slabs, step=config.slab_step, method=method)
            predicted = prediction_to_native(cube.astype(np.float32), scan.geometry,
                                             threshold=config.threshold)
            results[method].append(score_scan(predicted, scan, min_lesion_mm3=min_lesion_mm3))
            if method == methods[0]:
                save_nifti(predicted, scan.geometry,
                           prediction_path(folder / "pred", record.patient_id))
                save_overlay(scan.flair, scan.mask, predicted, scan.geometry,
                             overlays / f"{record.patient_id}.png",
                             title=f"{record.patient_id} (round {cv_round.number}, {method}): "
                                   f"Dice {results[method][-1].metrics.dice:.3f}")
    saved = {"config": _comparable(config), "best_epoch": trained.best_epoch,
             "epochs": len(trained.history),
             "results": {method: [{"patient_id": r.patient_id, "centre": r.centre,
                                   **r.metrics.as_dict()} for r in scans]
                         for method, scans in results.items()}}
    atomic_write_text(folder / "results.json", json.dumps(saved, indent=2))
    return results


def _comparable(config: TrainConfig) -> dict:
    """The config fields that change results (not where files go or how progress is shown)."""
    values = config.to_dict()
    for name in ("out_dir", "progress", "tensorboard", "num_workers"):
        del values[name]
    return values


def finished_round(folder: Path, config: TrainConfig) -> dict[str, list[ScanResult]] | None:
    """The results of a round that `run_round` completed in `folder`, or None.

    Raises:
        ValueError: the round was run with another config.
    """
    path = folder / "results.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if saved["config"] != _comparable(config):
        raise ValueError(f"{path} comes from a run with another config; use a new --out "
                         f"folder (or delete {folder} to redo that round)")
    return {method: [ScanResult(s.pop("patient_id"), s.pop("centre"), ScanMetrics(**s))
                     for s in scans] for method, scans in saved["results"].items()}


RECOMPOSE_NAMES = {"paper": "middle-8 (paper, Eq. 1)", "average": "average of overlaps"}
_AMP = {"auto": "auto", "fp32": "none", "bf16": "bf16", "fp16": "fp16"}


def _named(results: dict[str, list[ScanResult]]) -> dict[str, list[ScanResult]]:
    return {RECOMPOSE_NAMES[method]: scans for method, scans in results.items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg cv``."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True,
                      help="MSSEG folder or scan CSV with mask and centre columns")
    data.add_argument("--out", type=Path, required=True,
                      help="folder for rounds, overlays, per_scan.csv and table.md/csv")
    data.add_argument("--cache", type=Path, default=Path("runs/cache"),
                      help="preprocessed-cube cache, shared by runs (default runs/cache)")
    data.add_argument("--rounds", type=int, nargs="+", metavar="K",
                      help="run only these rounds (1-based; default all)")
    data.add_argument("--recompose", choices=RECOMPOSE_METHODS, default="average",
                      help="recomposition of the written masks and of table.md (default "
                           "average; both are scored, see recompose.md)")
    data.add_argument("--min-lesion-mm3", type=float, default=3.0,
                      help="lesion-wise scores ignore smaller lesions (default 3 mm³)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the cross-validation and print Table 2."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("cv runs in one process; under torchrun use `train` per round "
                         "(--exclude <the round's test scans>)")
    config = config_from_args(args)
    records = discover_scans(args.data)
    rounds = cv_rounds(records)
    chosen = args.rounds or [r.number for r in rounds]
    if not set(chosen) <= {r.number for r in rounds}:
        raise ValueError(f"--rounds {chosen}: this data has rounds 1..{len(rounds)}")
    entries = {e.record.patient_id: e for e in
               fill_cache(records, pipeline_config(config), args.cache, progress=config.progress)}
    methods = (args.recompose, *(m for m in RECOMPOSE_METHODS if m != args.recompose))
    results: dict[str, list[ScanResult]] = {method: [] for method in methods}
    for cv_round in (r for r in rounds if r.number in chosen):
        folder = args.out / f"round{cv_round.number}"
        done = finished_round(folder, config)
        if done is None:
            print(f"round {cv_round.number}: test {[r.patient_id for r in cv_round.test]}, "
                  f"validation {cv_round.val.patient_id}, {len(cv_round.train)} training scans")
            start = time.perf_counter()
            done = run_round(cv_round, config, entries, folder, args.out / "overlays",
                             methods=methods, min_lesion_mm3=args.min_lesion_mm3)
            print(f"round {cv_round.number} done in {time.perf_counter() - start:.0f} s")
        else:
            print(f"round {cv_round.number}: finished earlier, read from {folder}")
        for method in methods:
            results[method] += done[method]
    table = write_report(results[args.recompose], args.out)
    atomic_write_text(args.out / "recompose.md", overall_table(_named(results), first="Recomposition"))
    print(format_results(results[args.recompose]))
    print(f"\nTable 2 layout ({RECOMPOSE_NAMES[args.recompose]}):")
    print(table.to_markdown(), end="")
    print("\nslab recomposition:")
    print(overall_table(_named(results), first="Recomposition"), end="")
    print(f"wrote {args.out / 'table.md'}, table.csv, per_scan.csv, recompose.md and overlays/")
    return 0

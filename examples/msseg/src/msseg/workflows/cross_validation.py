"""The paper's cross-validation: rounds trained from scratch, their test scans predicted, scored
and drawn, and the Table 2 layout over all test scans.

    results = cross_validate(discover_scans("data/msseg"), preset("paper"), "runs/cv",
                             cache="runs/cache")

The rounds are `msseg.data.splits.cv_rounds`. Each round trains in ``<out>/round<k>/train/``,
scores the best checkpoint on its validation scan's own grid (`msseg.workflows.validation`),
predicts its test scans with the best checkpoint through the one prediction path
(`msseg.inference.predict.predict_scan`) with every recomposition of the recipe (the paper's:
the average of the overlaps and its middle-8 rule), and scores them on the native grids; the
first method's masks are written (``<out>/round<k>/pred/<id>_mask.nii.gz``) and drawn
(``<out>/overlays/<id>.png``). ``<out>/round<k>/results.json`` records the round; a finished
round is read back instead of run again, and an interrupted one continues from its
``train/last.pt``, so rerunning continues after an interruption where it stopped.
`report_rounds` draws the rounds' ``report.html`` from those files: each round's training and
every test scan's written mask against its consensus (`msseg.report.runs`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from msseg.config import TrainConfig, recipe_named
from msseg.data.cache import CacheEntry, fill_cache
from msseg.data.slab_dataset import SlabDataset
from msseg.data.splits import CvRound, cv_rounds
from msseg.evaluation.lesions import MIN_LESION_MM3
from msseg.evaluation.metrics import ScanMetrics
from msseg.evaluation.overlay import save_overlay
from msseg.evaluation.scoring import ScanResult, score_scan
from msseg.inference.predict import predict_scan
from msseg.inference.predictor import load_predictor
from msseg.io.atomic import atomic_write_text
from msseg.io.discovery import ScanRecord, prediction_path
from msseg.io.lock import folder_lock
from msseg.io.nifti import PREDICTION_DESCRIPTIONS, load_scan, save_nifti
from msseg.io.paths import output_path
from msseg.report.runs import write_cv_report
from msseg.training.checkpoint import checkpoint_config, load_checkpoint
from msseg.training.engine import train
from msseg.training.run_data import training_data
from msseg.workflows.validation import native_validation

__all__ = ["cross_validate", "finished_round", "report_rounds", "run_round"]

log = logging.getLogger(__name__)


def run_round(
    cv_round: CvRound,
    config: TrainConfig,
    entries: dict[str, CacheEntry],
    folder: Path,
    overlays: Path,
    *,
    methods: Sequence[str] | None = None,
    min_lesion_mm3: float = MIN_LESION_MM3,
) -> dict[str, list[ScanResult]]:
    """Train on the round's scans, predict and score its test scans (see the module docstring).

    Args:
        cv_round: the scans of this round.
        config: the run's config (its out_dir is replaced by ``<folder>/train``).
        entries: patient id -> `CacheEntry` of the preprocessed cubes.
        folder: the round's folder; overlays: where the overlay PNGs go.
        methods: recompositions to score (default: all of the recipe's, `Recipe.recompositions`);
            the first one's masks are written and drawn.
        min_lesion_mm3: see `msseg.evaluation.scoring`.
    Returns:
        Per method, one `ScanResult` per test scan (also saved in ``<folder>/results.json``).
    Raises:
        ValueError: the round's ``train/last.pt`` comes from a run with another config.
    """
    config = config.replace(out_dir=str(folder / "train"))
    recipe = recipe_named(config.recipe)
    methods = methods or tuple(recipe.recompositions)
    resume = _interrupted(folder / "train" / "last.pt", config, cv_round.number)
    train_entries = [entries[r.patient_id] for r in cv_round.train]
    val_entries = [entries[cv_round.val.patient_id]]
    trained = train(config, SlabDataset.for_config(train_entries, config),
                    SlabDataset.for_config(val_entries, config), resume=resume,
                    data=training_data(train_entries, val_entries))
    best = trained.best_path or trained.last_path
    predictor = load_predictor(best, device=config.device, precision=config.precision).predictor
    # results.json moves with its round: the checkpoint relative to it
    validation = native_validation(predictor, config, [entries[cv_round.val.patient_id]],
                                   checkpoint=best.relative_to(folder))
    log.info("round %d: best checkpoint (epoch %d), validation Dice on %s's own grid %.3f",
             cv_round.number, trained.best_epoch, cv_round.val.patient_id,
             validation["mean_dice"])
    results: dict[str, list[ScanResult]] = {method: [] for method in methods}
    for record in cv_round.test:
        scan = load_scan(record)
        working = entries[record.patient_id].load()
        for method in methods:
            predicted = predict_scan(scan, predictor, config=config, recompose=method,
                                     batch_size=config.batch_size, working=working).mask
            results[method].append(score_scan(predicted, scan, min_lesion_mm3=min_lesion_mm3))
            if method == methods[0]:
                save_nifti(predicted, scan.geometry,
                           prediction_path(folder / "pred", record.patient_id),
                           description=PREDICTION_DESCRIPTIONS["mask"])
                save_overlay(scan.flair, scan.mask, predicted, scan.geometry,
                             output_path(overlays, f"{record.patient_id}.png"),
                             title=f"{record.patient_id} (round {cv_round.number}, "
                                   f"{recipe.recompositions[method]}): Dice "
                                   f"{results[method][-1].metrics.dice:.3f}")
    saved = {"config": _comparable(config), "best_epoch": trained.best_epoch,
             "epochs": len(trained.history), "validation": validation,
             "results": {method: [{"patient_id": r.patient_id, "centre": r.centre,
                                   **r.metrics.as_dict()} for r in scans]
                         for method, scans in results.items()}}
    atomic_write_text(folder / "results.json", json.dumps(saved, indent=2))
    return results


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
        raise ValueError(f"{path} comes from a run with another config; use a new output "
                         f"folder (or delete {folder} to redo that round)")
    return {method: [ScanResult(s.pop("patient_id"), s.pop("centre"), ScanMetrics(**s))
                     for s in scans] for method, scans in saved["results"].items()}


def cross_validate(
    records: Sequence[ScanRecord],
    config: TrainConfig,
    out: str | Path,
    *,
    cache: str | Path,
    rounds: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    min_lesion_mm3: float = MIN_LESION_MM3,
) -> dict[str, list[ScanResult]]:
    """Run (or continue) the chosen rounds; return every test scan's results per method.

    Args:
        records: scans with masks and centres.
        config: the training config of every round (recipe "spacing" without `spacing_mm`:
            the in-plane voxel size of all `records` by its `spacing_rule`, read from their
            headers).
        out: the cross-validation folder (rounds, overlays).
        cache: the preprocessed-cube cache (`msseg.data.cache`).
        rounds: 1-based round numbers (default: all).
        methods, min_lesion_mm3: as `run_round`.
    Raises:
        ValueError: rounds the data does not have, or the errors of `cv_rounds` and
            `finished_round`.
        msseg.io.lock.FolderLockedError: another process writes into `out`.
    """
    out = Path(out)
    all_rounds = cv_rounds(records)
    chosen = list(rounds or [r.number for r in all_rounds])
    if not set(chosen) <= {r.number for r in all_rounds}:
        raise ValueError(f"rounds {chosen}: this data has rounds 1..{len(all_rounds)}")
    config = config.with_data(records)  # headers only: every round, one working grid
    methods = methods or tuple(recipe_named(config.recipe).recompositions)
    with folder_lock(out, command="msseg cv"):
        entries = {e.record.patient_id: e for e in
                   fill_cache(list(records), config.pipeline, cache, progress=config.progress)}
        return _run_rounds([r for r in all_rounds if r.number in chosen], config, entries, out,
                           methods=methods, min_lesion_mm3=min_lesion_mm3)


def _run_rounds(chosen: Sequence[CvRound], config: TrainConfig,
                entries: dict[str, CacheEntry], out: Path, *, methods: Sequence[str],
                min_lesion_mm3: float) -> dict[str, list[ScanResult]]:
    """Each round finished earlier read back, the others run (`cross_validate`)."""
    results: dict[str, list[ScanResult]] = {method: [] for method in methods}
    for cv_round in chosen:
        folder = out / f"round{cv_round.number}"
        done = finished_round(folder, config)
        if done is None:
            log.info("round %d: test %s, validation %s, %d training scans", cv_round.number,
                     [r.patient_id for r in cv_round.test], cv_round.val.patient_id,
                     len(cv_round.train))
            start = time.perf_counter()
            done = run_round(cv_round, config, entries, folder, out / "overlays",
                             methods=methods, min_lesion_mm3=min_lesion_mm3)
            log.info("round %d done in %.0f s", cv_round.number, time.perf_counter() - start)
        else:
            log.info("round %d: finished earlier, read from %s", cv_round.number, folder)
        for method in methods:
            results[method] += done[method]
    return results


def report_rounds(records: Sequence[ScanRecord], out: str | Path, rounds: Sequence[int],
                  chosen: Sequence[ScanResult], rows: dict[str, Sequence[ScanResult]], *,
                  title: str = "msseg cv: cross-validation report",
                  parts: Sequence[str] = ()) -> Path:
    """Write ``<out>/report.html`` for the finished `rounds` (`msseg.report.runs`).

    Args:
        records: the scans of the cross-validation.
        out: its folder (the rounds' ``round<k>/`` folders in it).
        rounds: the round numbers run.
        chosen: the test scans' results of the written masks.
        rows: the methods to compare over the test scans.
        title, parts: as `msseg.report.runs.write_cv_report`.
    Returns:
        The report's path.
    """
    out = Path(out)
    by_id = {result.patient_id: result for result in chosen}
    scans, runs = [], []
    for cv_round in (r for r in cv_rounds(records) if r.number in rounds):
        folder = out / f"round{cv_round.number}"
        saved = json.loads((folder / "results.json").read_text())
        runs.append((f"Round {cv_round.number}", folder / "train", saved["validation"]["dice"]))
        scans += [(record, prediction_path(folder / "pred", record.patient_id),
                   by_id[record.patient_id]) for record in cv_round.test]
    return write_cv_report(out, scans, runs, rows, chosen=chosen, title=title, parts=parts)


def _interrupted(last: Path, config: TrainConfig, number: int) -> Path | None:
    """The checkpoint an interrupted round continues from, or None for a round not started."""
    if not last.is_file():
        return None
    checkpoint = load_checkpoint(last)
    if _comparable(checkpoint_config(checkpoint, last)) != _comparable(config):
        raise ValueError(f"{last} comes from a run with another config; use a new output folder "
                         f"(or delete {last.parent.parent} to redo that round)")
    log.info("round %d: continuing from %s (epoch %d of %d)", number, last, checkpoint["epoch"],
             config.epochs)
    return last


def _comparable(config: TrainConfig) -> dict:
    """The config fields that change results (not where files go or how progress is shown)."""
    values = config.to_dict()
    for name in ("out_dir", "progress", "tensorboard", "num_workers"):
        del values[name]
    return values

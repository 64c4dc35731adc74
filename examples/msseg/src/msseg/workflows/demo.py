"""The demo: the whole method end to end on a CPU, in minutes (``msseg demo``, ``make demo``).

    result = run_demo("demo_out")                       # round 1, as `make demo`
    result = run_demo("demo_out", rounds=(1, 2, 3, 4, 5))  # the full cross-validation

1. Phantom: the 15 MSSEG patients as synthetic scans (`msseg.phantom`) at scale
   `DEMO_PHANTOM_SCALE` (0.125), so the largest array (centre 01) is 18 x 64 x 64 and every scan
   fits in the 64³ cube without shrinking: a perfect cube prediction maps back to its native
   grid with Dice 1.0. (At scale 0.25 lesions are 1-3 voxels wide and the round trip through
   64³ caps Dice near 0.7.)
2. Preprocessing into 64³ cubes, as the paper's pipeline at 256³ (`msseg.data.cache`).
3. Per round of the paper's cross-validation (`msseg.data.splits`; round 1: test 01016SACH,
   07001MOEL, 08002CHJE, validate 08037ROGU, train on the other 11):
   - the threshold baseline: the best single global intensity threshold, chosen on the round's
     12 training and validation scans, applied to its test scans;
   - training of the `demo` config: the paper's planar res-u-net at reduced width (decoder
     64/32/16/8, bottleneck 128, trainable) on a frozen planar MobileNetV2 encoder converted by
     planar3d from torchvision's genuine ImageNet weights (installed offline), loss BCE − Dice
     + 1, Adam 1e-3, 16-slice slabs with step 8, early stopping on the validation loss;
   - prediction of the test scans, recomposed both ways (the paper's middle-8 rule and the
     average of the overlaps), scored on the native grids, and an overlay PNG per test scan
     (`msseg.workflows.cross_validation.run_round`).
4. ``results.md`` (the comparison, Table 2 layout and timings), ``per_scan.csv``, ``table.md``,
   ``table.csv`` and the figures, all under the output folder.

Why MobileNetV2 and not VGG-16: no ImageNet VGG-16 weights can be had offline, and the paper's
own finding holds here: the frozen random VGG-16 encoder stays at the all-negative minimum
(``--encoder vgg16``: validation Dice <= 0.002 in 20 epochs, test Dice 0.007). MobileNetV2's
genuine ImageNet weights do converge, and its planar encoder costs far less than VGG-16 at 64²
(3-5 s per 39-step epoch on one core, against 20-22 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from msseg.config import (
    DEMO_PHANTOM_SCALE,
    DEMO_PHANTOM_SEED,
    PRESETS,
    TrainConfig,
    preset,
    recipe_named,
)
from msseg.data.cache import fill_cache
from msseg.data.splits import CvRound, cv_rounds
from msseg.evaluation.reports import format_results, overall_table, write_report
from msseg.evaluation.scoring import ScanResult
from msseg.io.atomic import atomic_write_text
from msseg.io.lock import folder_lock
from msseg.model.encoder import offline_mobilenet_v2
from msseg.model.keras_vgg16 import offline_vgg16
from msseg.phantom.generate import write_phantom
from msseg.report.html import Table, paragraph, table_html
from msseg.workflows.baseline import apply_threshold, threshold_baseline
from msseg.workflows.cross_validation import report_rounds, run_round

__all__ = ["DemoResult", "baseline_results", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """What `run_demo` measured; `report` is the results.md it wrote."""

    config: TrainConfig
    model: dict[str, list[ScanResult]]  # per recomposition (the default first), per test scan
    baseline: list[ScanResult]  # the threshold baseline on the same test scans
    thresholds: list[float]  # the baseline's threshold of each round
    seconds: dict[str, float] = field(default_factory=dict)  # per step, and "total"
    report: Path | None = None
    page: Path | None = None  # report.html: the same, in a browser

    @property
    def default(self) -> list[ScanResult]:
        """The model's results with the recipe's default recomposition."""
        return next(iter(self.model.values()))

    @property
    def beats_baseline(self) -> bool:
        """Whether the model (default recomposition) has a higher mean Dice than the baseline."""
        return _mean_dice(self.default) > _mean_dice(self.baseline)

    def rows(self) -> dict[str, list[ScanResult]]:
        """The comparison table's rows: the baseline, then the model per recomposition."""
        names = recipe_named(self.config.recipe).recompositions
        return {"threshold baseline (best global threshold of the training scans)":
                self.baseline,
                **{f"planar res-u-net, {names[m]}": scans for m, scans in self.model.items()}}


def baseline_results(cv_round: CvRound, config: TrainConfig) -> tuple[float, list[ScanResult]]:
    """The best global threshold on the round's training and validation scans, scored on its
    test scans (native grids, FLAIR scaled to [-1, 1] as `config` scales it)."""
    fitted = threshold_baseline([*cv_round.train, cv_round.val],
                                normalisation=config.normalisation, progress=False)
    return fitted.threshold, apply_threshold(fitted, list(cv_round.test))


def run_demo(out: str | Path, *, rounds: Sequence[int] = (1,), encoder: str | None = None,
             epochs: int | None = None, train_encoder: bool = False) -> DemoResult:
    """Run the demo into `out` (see the module docstring) and write its results.md.

    Args:
        out: the output folder.
        rounds: cross-validation rounds (1-based).
        encoder: timm encoder (default: the demo preset's MobileNetV2 with its offline ImageNet
            weights; "vgg16" gets Keras' ImageNet weights, the paper's; any other starts from
            random weights).
        epochs: maximum epochs (default: the demo preset's).
        train_encoder: fine-tune the encoder too (the demo preset freezes it; an encoder without
            offline weights, such as a vision transformer, learns only this way).
    Raises:
        ValueError: rounds the phantom does not have (1..5).
        FileNotFoundError: the offline weights of the encoder are not installed.
        msseg.io.lock.FolderLockedError: another process writes into `out`.
    """
    out = Path(out)
    with folder_lock(out, command="msseg demo"):
        return _run(out, rounds=rounds, encoder=encoder, epochs=epochs,
                    train_encoder=train_encoder)


def _run(out: Path, *, rounds: Sequence[int], encoder: str | None,
         epochs: int | None, train_encoder: bool) -> DemoResult:
    """`run_demo`, its folder locked."""
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    records = write_phantom(out / "data", scale=DEMO_PHANTOM_SCALE, seed=DEMO_PHANTOM_SEED,
                            progress=False)
    seconds["phantom"] = time.perf_counter() - tick
    encoder = encoder or PRESETS["demo"].encoder
    changes = {"encoder": encoder, "out_dir": str(out / "train")}
    offline = {PRESETS["demo"].encoder: offline_mobilenet_v2, "vgg16": offline_vgg16}
    if encoder in offline:
        changes["weights"] = str(offline[encoder]())
    if epochs is not None:
        changes["epochs"] = epochs
    if train_encoder:
        changes["train_encoder"] = True
    config = preset("demo", **changes)
    chosen = [r for r in cv_rounds(records) if r.number in rounds]
    if len(chosen) != len(set(rounds)):
        raise ValueError(f"rounds {list(rounds)}: the phantom has rounds 1..5")
    tick = time.perf_counter()
    entries = {e.record.patient_id: e for e in
               fill_cache(records, config.pipeline, out / "cache", progress=False)}
    seconds["preprocessing"] = time.perf_counter() - tick
    recipe = recipe_named(config.recipe)
    log.info("phantom: %d scans at scale %s in %s; %s in %s", len(records),
             DEMO_PHANTOM_SCALE, out / "data", recipe.describe(config), out / "cache")
    log.info("config 'demo':\n%s", config.describe())

    methods = tuple(recipe.recompositions)
    result = DemoResult(config, {m: [] for m in methods}, [], [], seconds)
    for cv_round in chosen:
        log.info("round %d: test %s, validation %s, %d training scans", cv_round.number,
                 [r.patient_id for r in cv_round.test], cv_round.val.patient_id,
                 len(cv_round.train))
        tick = time.perf_counter()
        threshold, results = baseline_results(cv_round, config)
        result.thresholds.append(threshold)
        result.baseline += results
        _add(seconds, "threshold baseline", tick)
        tick = time.perf_counter()
        done = run_round(cv_round, config, entries, out / f"round{cv_round.number}",
                         out / "overlays", methods=methods)
        _add(seconds, "training + prediction", tick)
        for method in methods:
            result.model[method] += done[method]
    seconds["total"] = time.perf_counter() - start
    result.report = _write_report(result, out, [r.number for r in chosen])
    result.page = report_rounds(records, out, [r.number for r in chosen], result.default,
                                result.rows(), title="msseg demo: results",
                                parts=_page_parts(result))
    return result


def _page_parts(result: DemoResult) -> list[str]:
    """The demo's own lines on its page: what ran, the baseline's thresholds, the run time."""
    config = result.config
    weights = "ImageNet weights" if config.weights else "RANDOM weights"
    return [
        paragraph(f"Phantom at scale {DEMO_PHANTOM_SCALE} (seed {DEMO_PHANTOM_SEED}), "
                  f"{recipe_named(config.recipe).describe(config)}. Model: planar res-u-net, "
                  f"encoder {config.encoder} ({weights}). The phantom is not MRI: these "
                  "numbers say that the pipeline works, nothing about patients.", css="note"),
        paragraph(f"Baseline threshold(s) on [-1, 1]-scaled FLAIR: "
                  f"{[round(t, 3) for t in result.thresholds]}.", css="note"),
        table_html(Table(["step", "seconds"],
                         [[step, (f"{value:.0f}", value)] for step, value in
                          result.seconds.items()], caption="Run time", sortable=False))]


def _write_report(result: DemoResult, out: Path, rounds: list[int]) -> Path:
    config = result.config
    recipe = recipe_named(config.recipe)
    default = recipe.recompositions[recipe.recomposition(None)]
    table = write_report(result.default, out)
    test_ids = [r.patient_id for r in result.default]
    curves = [f"[round {k}](round{k}/train/curves.png)" for k in rounds]
    weights = "ImageNet weights" if config.weights else "RANDOM weights"
    report = "\n".join([
        "# msseg demo results",
        "",
        f"Phantom at scale {DEMO_PHANTOM_SCALE} (seed {DEMO_PHANTOM_SEED}), "
        f"{recipe.describe(config)}; cross-validation round(s) {rounds} of the paper's "
        f"protocol; test scans {test_ids}. Model: planar res-u-net, encoder {config.encoder} "
        f"({weights}, {'trainable' if config.train_encoder else 'frozen'}), decoder "
        f"{list(config.decoder_filters)}, bottleneck {config.bottleneck_filters}. Scores on "
        f"the native grids; mean ± std over the n test scans.",
        "",
        overall_table(result.rows()),
        f"Baseline threshold(s) on [-1, 1]-scaled FLAIR: "
        f"{[round(t, 3) for t in result.thresholds]}.",
        "",
        f"## Table 2 layout ({default})",
        "",
        table.to_markdown(),
        f"## Per scan ({default})",
        "",
        "```",
        format_results(result.default),
        "```",
        "",
        "## Run time",
        "",
        "| step | seconds |",
        "|---|---|",
        *(f"| {step} | {value:.0f} |" for step, value in result.seconds.items()),
        "",
        f"Figures: training curves {', '.join(curves)}; overlays in [overlays/](overlays/).",
        "",
    ])
    return atomic_write_text(out / "results.md", report)


def _add(seconds: dict[str, float], step: str, tick: float) -> None:
    seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - tick


def _mean_dice(results: list[ScanResult]) -> float:
    return float(np.mean([r.metrics.dice for r in results]))

"""``msseg baseline``: the Dice of the best single global intensity threshold.

    msseg baseline -i data/phantom --test 01016SACH 07001MOEL 08002CHJE
    msseg baseline -i data/phantom                    # fitted and scored on the same scans

The threshold is fitted on the scans not named by ``--test`` and scored on the ``--test`` scans
(on their own grids), as a model is trained on some scans and tested on others. Without
``--test`` it is fitted and scored on all scans, which flatters it.
"""

from __future__ import annotations

import argparse
import logging

from msseg.commands.options import add_data_arguments, mask_labels
from msseg.config import PRESETS
from msseg.recipes.recipe import NORMALISATIONS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg baseline``."""
    add_data_arguments(parser)
    parser.add_argument("--test", nargs="+", default=[], metavar="PATIENT",
                        help="score on these scans, fit on the others (default: fit and score "
                             "on all, optimistic)")
    default = PRESETS["real"].normalisation
    parser.add_argument("--normalisation", choices=NORMALISATIONS, default=default,
                        help=f"FLAIR scaling before thresholding (default {default}, as the "
                             f"real-data recipe; the paper's is minmax)")
    parser.add_argument("--bins", type=int, default=1000, help="candidate thresholds (1000)")


def run(args: argparse.Namespace) -> int:
    """Log the threshold, the per-scan Dice and the means per centre."""
    from msseg.evaluation.reports import mean_std
    from msseg.io.discovery import discover_scans
    from msseg.workflows.baseline import apply_threshold, threshold_baseline

    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             mask_labels=mask_labels(args))
    ids = [r.patient_id for r in records]
    unknown = sorted(set(args.test) - set(ids))
    if unknown:
        raise ValueError(f"--test: unknown patient id(s) {unknown}; the data has {ids}")
    fitting = [r for r in records if r.patient_id not in args.test]
    scored = [r for r in records if r.patient_id in args.test] or fitting
    if not fitting:
        raise ValueError("--test names every scan; leave some to fit the threshold on")
    fitted = threshold_baseline(fitting, normalisation=args.normalisation, bins=args.bins)
    log.info("best global threshold on [-1, 1] (%s), fitted on %d scans: %+.3f",
             args.normalisation, len(fitting), fitted.threshold)
    if args.test:
        dice = {r.patient_id: r.metrics.dice for r in apply_threshold(fitted, scored)}
        log.info("scored on the %d test scans:", len(scored))
    else:
        dice = fitted.dice
        log.info("scored on the scans it was fitted on (optimistic; --test holds scans out):")
    log.info("patient     centre  dice")
    for record in scored:
        log.info("%-10s  %-6s  %.3f", record.patient_id, record.centre or "-",
                 dice[record.patient_id])
    groups: dict[str, list[str]] = {}
    for record in scored:
        groups.setdefault(record.centre or "-", []).append(record.patient_id)
    for centre, members in sorted(groups.items()):
        log.info("centre %s (n=%d): %s", centre, len(members),
                 mean_std([dice[i] for i in members]))
    log.info("overall (n=%d): Dice %s  (per-scan oracle on the fitting scans %s)", len(scored),
             mean_std(list(dice.values())), mean_std(list(fitted.oracle_dice.values())))
    return 0

"""``msseg baseline``: the Dice of the best single global intensity threshold.

    msseg baseline -i data/phantom
"""

from __future__ import annotations

import argparse
import logging

from msseg.commands.options import add_data_arguments
from msseg.config import NORMALISATIONS, PipelineConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg baseline``."""
    add_data_arguments(parser)
    default = PipelineConfig().normalisation
    parser.add_argument("--normalisation", choices=NORMALISATIONS, default=default,
                        help=f"FLAIR scaling before thresholding (default {default}, as the "
                             f"model's preprocessing)")
    parser.add_argument("--bins", type=int, default=1000, help="candidate thresholds (1000)")


def run(args: argparse.Namespace) -> int:
    """Log per-scan, per-centre and overall Dice of the best global threshold."""
    from msseg.evaluation.baseline import threshold_baseline
    from msseg.evaluation.reports import mean_std
    from msseg.io.discovery import discover_scans

    records = discover_scans(args.data, mask_pattern=args.mask_pattern)
    result = threshold_baseline(records, normalisation=args.normalisation, bins=args.bins)
    log.info("best global threshold on [-1, 1] (%s): %+.3f", args.normalisation,
             result.threshold)
    log.info("patient     centre  dice   oracle")
    for record in records:
        log.info("%-10s  %-6s  %.3f  %.3f", record.patient_id, record.centre or "-",
                 result.dice[record.patient_id], result.oracle_dice[record.patient_id])
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record.centre or "-", []).append(record.patient_id)
    for centre, ids in sorted(groups.items()):
        log.info("centre %s (n=%d): %s", centre, len(ids),
                 mean_std([result.dice[i] for i in ids]))
    log.info("overall (n=%d): Dice %s  (per-scan oracle %s)", len(records),
             mean_std(list(result.dice.values())), mean_std(list(result.oracle_dice.values())))
    return 0

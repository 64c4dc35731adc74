"""``msseg evaluate``: predicted masks against the consensus, per scan and centre.

    msseg evaluate -p pred/ -t data/msseg
    msseg evaluate -p pred/ -t scans.csv -o report/

Scores every scan of the ground truth that has a prediction (``<pred>/<id>_mask.nii.gz``, what
``predict`` writes) on its native grid (`msseg.evaluation.scoring`), lists the scans it skipped
for want of a prediction, and writes ``per_scan.csv`` and the paper's Table 2 layout (rows:
metrics; columns: centres and Overall) as ``table.md`` and ``table.csv``. Lesion-wise scores
follow the MSSEG-2016 detection rule (`msseg.evaluation.lesions`). A scan whose ground
truth has no lesion has no Dice, sensitivity, lesion TPR or F1 (`msseg.evaluation.metrics`): it
is named in a warning, left out of those means, and every cell says on how many scans it rests.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.commands.options import add_label_argument, mask_labels
from msseg.evaluation.lesions import MIN_LESION_MM3

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg evaluate``."""
    parser.add_argument("-p", "--pred", type=Path, required=True,
                        help="folder with <id>_mask.nii.gz files (the output of predict)")
    parser.add_argument("-t", "--truth", required=True,
                        help="MSSEG folder, scan CSV with masks, or FLAIR pattern with {id}")
    parser.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")
    add_label_argument(parser)
    parser.add_argument("-o", "--out", type=Path,
                        help="folder for per_scan.csv, table.md, table.csv (default: --pred)")
    parser.add_argument("--min-lesion-mm3", type=float, default=MIN_LESION_MM3,
                        help=f"lesion-wise scores ignore lesions of this volume or less "
                             f"(default {MIN_LESION_MM3:g} mm³, as the MSSEG challenge)")


def run(args: argparse.Namespace) -> int:
    """Score the predicted scans, log the per-scan lines and the table, write the files."""
    if not args.min_lesion_mm3 >= 0:
        raise ValueError(f"--min-lesion-mm3 must be a volume >= 0 in mm³; got "
                         f"{args.min_lesion_mm3}")
    from msseg.evaluation.reports import format_results, without_lesions, write_report
    from msseg.evaluation.scoring import score_predictions
    from msseg.io.discovery import discover_scans
    from msseg.io.lock import check_unlocked, folder_lock

    records = discover_scans(args.truth, mask_pattern=args.mask_pattern,
                             mask_labels=mask_labels(args))
    check_unlocked(args.pred)  # a predict still writing there: its masks are not all there
    results, skipped = score_predictions(records, args.pred, min_lesion_mm3=args.min_lesion_mm3)
    out = args.out or args.pred
    with folder_lock(out, command="msseg evaluate"):
        table = write_report(results, out)
    log.info("%s\n", format_results(results))
    log.info("%s", table.to_markdown().rstrip())
    empty = without_lesions(results)
    if empty:
        log.warning("%d scan(s) without ground-truth lesions: %s; Dice, sensitivity, lesion TPR "
                    "and F1 are undefined there and left out of their means (see n in the "
                    "table); their false positives show in lesion FPR", len(empty), empty)
    if skipped:
        log.warning("skipped %d of %d scans without a prediction in %s: %s", len(skipped),
                    len(records), args.pred, skipped)
    log.info("scored %d scans; wrote %s, %s, %s", len(results), out / "per_scan.csv",
             out / "table.md", out / "table.csv")
    return 0

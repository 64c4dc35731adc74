"""``msseg ceiling``: what a perfect model would score on your scans under a recipe.

    msseg ceiling -i data/msseg                          # the real-data recipe (default)
    msseg ceiling -i data/msseg --config paper           # the paper's 256³ cube
    msseg ceiling -i data/msseg -m runs/real/best.pt     # the recipe a model was trained with
    msseg ceiling -i data/{id}/flair.nii.gz --mask-pattern data/{id}/lesions.nii.gz -o report/

Each ground-truth mask goes through the pipeline into the working space and back to its own
grid (`msseg.workflows.ceiling`); the table gives, per scan, the Dice of that round trip (the
most a model can score there), the 95 % Hausdorff and average surface distances in mm, and the
lesion voxels before and after. ``-o`` also writes ``ceiling.csv``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.commands.options import (
    add_data_arguments,
    add_recipe_arguments,
    mask_labels,
    recipe_config,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg ceiling``."""
    add_data_arguments(parser)
    parser.add_argument("-o", "--out", type=Path, help="also write <out>/ceiling.csv")
    add_recipe_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Log one line per scan and the mean; write ceiling.csv with ``-o``."""
    import csv
    import io

    import numpy as np

    from msseg.config import recipe_named
    from msseg.io.atomic import atomic_write_text
    from msseg.io.discovery import discover_scans
    from msseg.workflows.ceiling import recipe_ceiling

    config = recipe_config(args)
    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             mask_labels=mask_labels(args))
    config = config.with_data(records)
    log.info("%s, %d scan(s)", recipe_named(config.recipe).describe(config), len(records))
    results = recipe_ceiling(records, config.pipeline)
    log.info("patient        working shape     lesion voxels (after)   Dice   HD95 mm  ASSD mm")
    for r in results:
        log.info("%-13s  %-16s  %7d (%7d)        %.3f  %7.2f  %7.2f", r.patient_id,
                 "x".join(map(str, r.working_shape)), r.lesion_voxels, r.round_trip_voxels,
                 r.dice, r.hd95_mm, r.assd_mm)
    log.info("mean Dice ceiling %.3f over %d scan(s) (recipe %s)",
             float(np.mean([r.dice for r in results])), len(results), config.recipe)
    if args.out is not None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(results[0].as_dict()),
                                lineterminator="\n")
        writer.writeheader()
        for r in results:
            writer.writerow({**r.as_dict(), "working_shape": "x".join(map(str, r.working_shape))})
        log.info("wrote %s", atomic_write_text(args.out / "ceiling.csv", text.getvalue()))
    return 0

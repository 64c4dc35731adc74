"""``msseg cv``: the paper's cross-validation, with its Table 2 and overlays.

    msseg cv -i data/msseg -o runs/cv --config paper --weights vgg16.onnx
    msseg cv -i data/phantom -o runs/cv-demo --config demo --rounds 1 --weights mobilenet_v2.pth

The protocol is `msseg.data.splits.cv_rounds`, a round `msseg.workflows.cross_validation`. At
the end, in the output folder: ``per_scan.csv`` and the Table 2 layout (``table.md``,
``table.csv``) for ``--recompose``, and ``recompose.md`` comparing both recompositions on the
same test scans. Rerunning the same command continues where it stopped: finished rounds are
read back, an interrupted one continues from its ``train/last.pt``.

cv runs in one process (one GPU, or the CPU); for several GPUs run ``train`` under torchrun
with ``--exclude`` set to a round's test scans.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from msseg.commands.options import (
    add_config_arguments,
    add_data_arguments,
    add_recompose_argument,
    check_before_training,
    check_outputs_outside,
    mask_labels,
    set_threads,
    train_config,
)
from msseg.evaluation.lesions import MIN_LESION_MM3

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg cv``."""
    data = parser.add_argument_group("data")
    add_data_arguments(data, help="MSSEG folder or scan CSV with mask and centre columns")
    data.add_argument("-o", "--out", type=Path, required=True,
                      help="folder for rounds, overlays, per_scan.csv and table.md/csv")
    data.add_argument("--cache", type=Path,
                      help="preprocessing cache; runs may share one (default <out>/cache)")
    data.add_argument("--rounds", type=int, nargs="+", metavar="K",
                      help="run only these rounds (1-based; default all)")
    add_recompose_argument(data, help="recomposition of the written masks and of table.md "
                                      "(the recipe's others are scored too, see recompose.md), "
                                      "per recipe (the first is the default): ")
    data.add_argument("--min-lesion-mm3", type=float, default=MIN_LESION_MM3,
                      help=f"lesion-wise scores ignore smaller lesions (default "
                           f"{MIN_LESION_MM3:g} mm³)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the cross-validation; log and write Table 2."""
    if not args.min_lesion_mm3 >= 0:
        raise ValueError(f"--min-lesion-mm3 must be a volume >= 0 in mm³; got "
                         f"{args.min_lesion_mm3}")
    from msseg.config import recipe_named
    from msseg.data.splits import cv_rounds
    from msseg.evaluation.reports import format_results, overall_table, write_report
    from msseg.io.atomic import atomic_write_text
    from msseg.io.discovery import discover_scans
    from msseg.workflows.cross_validation import cross_validate, report_rounds

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("cv runs in one process; under torchrun use `train` per round "
                         "(--exclude <the round's test scans>)")
    set_threads(args)
    config = train_config(args)
    check_before_training(config, args.out)
    check_outputs_outside(args.data, cross_validation_folder=args.out, cache=args.cache)
    recipe = recipe_named(config.recipe)
    chosen = recipe.recomposition(args.recompose)
    methods = (chosen, *(m for m in recipe.recompositions if m != chosen))
    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             mask_labels=mask_labels(args))
    results = cross_validate(records, config, args.out, cache=args.cache or args.out / "cache",
                             rounds=args.rounds, methods=methods,
                             min_lesion_mm3=args.min_lesion_mm3)
    table = write_report(results[chosen], args.out)
    comparison = overall_table({recipe.recompositions[m]: results[m] for m in methods},
                               first="Recomposition")
    atomic_write_text(args.out / "recompose.md", comparison)
    log.info("%s", format_results(results[chosen]))
    log.info("\nTable 2 layout (%s):\n%s", recipe.recompositions[chosen],
             table.to_markdown().rstrip())
    log.info("\nslab recomposition:\n%s", comparison.rstrip())
    rounds = args.rounds or sorted({r.number for r in cv_rounds(records)})
    report = report_rounds(records, args.out, rounds, results[chosen],
                           {recipe.recompositions[m]: results[m] for m in methods})
    log.info("wrote %s, table.csv, per_scan.csv, recompose.md and overlays/",
             args.out / "table.md")
    log.info("report: %s", report)
    return 0

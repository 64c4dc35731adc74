"""``msseg cv``: the paper's cross-validation, with its Table 2 and overlays.

    msseg cv -i data/msseg -o runs/cv --config paper --weights vgg16.pth
    msseg cv -i data/phantom -o runs/cv-demo --config demo --rounds 1 --weights mobilenet_v2.pth

The protocol is `msseg.data.splits.cv_rounds`, a round `msseg.evaluation.cross_validation`. At
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

from msseg.commands.options import add_config_arguments, train_config
from msseg.config import MIN_LESION_MM3
from msseg.data.slabs import RECOMPOSE_METHODS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg cv``."""
    data = parser.add_argument_group("data")
    data.add_argument("-i", "--data", required=True,
                      help="MSSEG folder or scan CSV with mask and centre columns")
    data.add_argument("-o", "--out", type=Path, required=True,
                      help="folder for rounds, overlays, per_scan.csv and table.md/csv")
    data.add_argument("--cache", type=Path, default=Path("runs/cache"),
                      help="preprocessed-cube cache, shared by runs (default runs/cache)")
    data.add_argument("--rounds", type=int, nargs="+", metavar="K",
                      help="run only these rounds (1-based; default all)")
    data.add_argument("--recompose", choices=RECOMPOSE_METHODS, default="average",
                      help="recomposition of the written masks and of table.md (default "
                           "average; both are scored, see recompose.md)")
    data.add_argument("--min-lesion-mm3", type=float, default=MIN_LESION_MM3,
                      help=f"lesion-wise scores ignore smaller lesions (default "
                           f"{MIN_LESION_MM3:g} mm³)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the cross-validation; log and write Table 2."""
    from msseg.device import resolve_compute
    from msseg.evaluation.cross_validation import RECOMPOSE_NAMES, cross_validate
    from msseg.evaluation.reports import format_results, overall_table, write_report
    from msseg.io.atomic import atomic_write_text
    from msseg.io.discovery import discover_scans
    from msseg.model.hub import check_pretrained_available

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("cv runs in one process; under torchrun use `train` per round "
                         "(--exclude <the round's test scans>)")
    config = train_config(args)
    resolve_compute(config.device, config.precision)  # a bad --device fails before any work
    if config.pretrained:
        check_pretrained_available(config.encoder)
    methods = (args.recompose, *(m for m in RECOMPOSE_METHODS if m != args.recompose))
    results = cross_validate(discover_scans(args.data), config, args.out, cache=args.cache,
                             rounds=args.rounds, methods=methods,
                             min_lesion_mm3=args.min_lesion_mm3)
    table = write_report(results[args.recompose], args.out)
    comparison = overall_table({RECOMPOSE_NAMES[m]: results[m] for m in methods},
                               first="Recomposition")
    atomic_write_text(args.out / "recompose.md", comparison)
    log.info("%s", format_results(results[args.recompose]))
    log.info("\nTable 2 layout (%s):\n%s", RECOMPOSE_NAMES[args.recompose],
             table.to_markdown().rstrip())
    log.info("\nslab recomposition:\n%s", comparison.rstrip())
    log.info("wrote %s, table.csv, per_scan.csv, recompose.md and overlays/",
             args.out / "table.md")
    return 0

"""``msseg preprocess``: fill the cache that training reads (`msseg.data.cache`).

    msseg preprocess -i data/msseg -c runs/cache                      # the real-data recipe
    msseg preprocess -i data/phantom -c runs/cache --config demo      # the paper's, at 64³
    msseg preprocess -i data/msseg -c runs/cache -m runs/real/best.pt # as a model was trained

The recipe is a preset's (``--config``, with ``--set`` changes) or a checkpoint's (``-m``), so
the entries are the ones ``train`` with the same settings reads. Recipe "spacing" without a
``spacing_mm`` takes the median (``--set spacing_rule=finest``: the finest) in-plane voxel size
of the scans given here.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from msseg.commands.options import (
    add_data_arguments,
    add_recipe_arguments,
    check_outputs_outside,
    mask_labels,
    recipe_config,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg preprocess``."""
    add_data_arguments(parser)
    parser.add_argument("--no-masks", action="store_true",
                        help="accept scans without masks (prediction-only input)")
    parser.add_argument("-c", "--cache", type=Path, required=True, help="cache folder")
    add_recipe_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Fill the cache; log where each scan's working volume is."""
    from msseg.config import recipe_named
    from msseg.data.cache import fill_cache
    from msseg.io.discovery import discover_scans

    config = recipe_config(args)
    check_outputs_outside(args.data, cache=args.cache)
    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             require_masks=not args.no_masks, mask_labels=mask_labels(args))
    config = config.with_data(records)
    start = time.perf_counter()
    entries = fill_cache(records, config.pipeline, args.cache)
    for entry in entries:
        log.info("%s  %s  %s", entry.record.patient_id, entry.path,
                 "x".join(map(str, entry.load().flair.shape)))
    log.info("%d scans cached, %s, in %.1f s", len(entries),
             recipe_named(config.recipe).describe(config), time.perf_counter() - start)
    return 0

"""``msseg preprocess``: fill the cube cache that training reads (`msseg.data.cache`).

    msseg preprocess -i data/phantom -c runs/cache --size 64
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from msseg.commands.options import add_data_arguments, add_pipeline_arguments, pipeline_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg preprocess``."""
    add_data_arguments(parser)
    parser.add_argument("--no-masks", action="store_true",
                        help="accept scans without masks (prediction-only input)")
    parser.add_argument("-c", "--cache", type=Path, required=True, help="cache folder")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Fill the cache; log where each scan's cube is."""
    from msseg.data.cache import fill_cache
    from msseg.io.discovery import discover_scans

    config = pipeline_config(args)
    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             require_masks=not args.no_masks)
    start = time.perf_counter()
    entries = fill_cache(records, config, args.cache)
    for entry in entries:
        log.info("%s  %s", entry.record.patient_id, entry.path)
    log.info("%d scans cached at S=%d in %.1f s", len(entries), config.size,
             time.perf_counter() - start)
    return 0

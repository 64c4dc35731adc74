"""``msseg phantom``: write the synthetic 15-patient dataset in the MSSEG layout.

    msseg phantom -o data/phantom --scale 0.25 --seed 0

A folder that holds scans of the phantom's patient ids (real ones, or an earlier phantom) is
refused before anything is written, unless ``--overwrite`` replaces them.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from msseg.config import DEMO_PHANTOM_SCALE, DEMO_PHANTOM_SEED

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg phantom``."""
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="output folder (MSSEG layout)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help=f"array size factor in (0, 1]; 1 = the real scans' sizes, the demo "
                             f"uses {DEMO_PHANTOM_SCALE} (default 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help=f"random seed (default 0; the demo uses {DEMO_PHANTOM_SEED})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace scans of the phantom's patient ids that the folder holds "
                             "(default: refuse)")


def run(args: argparse.Namespace) -> int:
    """Generate the phantom; log one line per scan."""
    from msseg.phantom.generate import write_phantom

    start = time.perf_counter()
    records = write_phantom(args.out, scale=args.scale, seed=args.seed,
                            overwrite=args.overwrite)
    for record in records:
        log.info("%s  %s", record.patient_id, record.flair)
    log.info("wrote %d scans to %s in %.1f s", len(records), args.out,
             time.perf_counter() - start)
    return 0

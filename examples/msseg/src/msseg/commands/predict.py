"""``msseg predict``: FLAIR NIfTI in, lesion mask NIfTI out on the scan's own grid.

    msseg predict -m runs/paper/best.pt -i scan.nii.gz -o pred/
    msseg predict -m best.pt -i data/msseg -o pred/ --probabilities --threads 4

Inputs: one FLAIR file, a folder of them, one MSSEG patient folder, an MSSEG folder or a scan
CSV; outputs are named by patient: ``<out>/<id>_mask.nii.gz`` (uint8 0/1) and, with
``--probabilities``, ``<out>/<id>_prob.nii.gz`` (float32), both with the FLAIR's affine, qform
and sform so they overlay it in any viewer. The path from scan to mask is
`msseg.inference.predict` (the model's recipe, overlapping slabs or windows blended into one
volume, the threshold there, the mask back to the native grid as labels). Every input is
validated and the output folder checked before anything is written; existing outputs are
replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.commands.options import (
    add_device_arguments,
    add_recompose_argument,
    add_threads_argument,
    set_threads,
)
from msseg.config import PAPER_THRESHOLD

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg predict``."""
    parser.add_argument("-m", "--model", type=Path, required=True,
                        help="checkpoint of a training run (best.pt)")
    parser.add_argument("-i", "--input", type=Path, required=True,
                        help="FLAIR .nii/.nii.gz, a folder of them, an MSSEG patient folder, an "
                             "MSSEG folder or a scan CSV")
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="output folder for <id>_mask.nii.gz (and <id>_prob.nii.gz)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write the probability map <id>_prob.nii.gz")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs of an earlier run (default: refuse)")
    add_recompose_argument(parser, help="how overlapping slabs or windows are blended into one "
                                        "volume, per recipe (the first is the default): ")
    parser.add_argument("--threshold", type=float,
                        help=f"probability cut for the mask, in the working space (default: the "
                             f"model's; the paper's is {PAPER_THRESHOLD:g} = 16/256)")
    add_device_arguments(parser)
    add_threads_argument(parser)
    parser.add_argument("--batch-size", type=int, default=2,
                        help="slabs or windows per forward pass (2)")


def run(args: argparse.Namespace) -> int:
    """Predict every input scan; log where each mask went and the seconds per scan."""
    from msseg.config import recipe_named
    from msseg.inference.predict import predict_files
    from msseg.inference.predictor import load_predictor
    from msseg.io.discovery import find_inputs

    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must be a probability in (0, 1); got {args.threshold}")
    set_threads(args)
    records = find_inputs(args.input)
    predictor, config = load_predictor(args.model, device=args.device, precision=args.precision)
    recipe = recipe_named(config.recipe)
    log.info("%d scan(s), model %s (%s, encoder %s), recompose=%s, threshold=%.4f",
             len(records), args.model, recipe.describe(config), config.encoder,
             recipe.recomposition(args.recompose),
             config.threshold if args.threshold is None else args.threshold)
    predict_files(records, args.out, predictor, config=config, recompose=args.recompose,
                  batch_size=args.batch_size, threshold=args.threshold,
                  probabilities=args.probabilities, overwrite=args.overwrite)
    return 0

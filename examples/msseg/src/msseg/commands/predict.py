"""``msseg predict``: FLAIR NIfTI in; lesion mask, lesion map, lesion table and a report out.

    msseg predict -m runs/paper/best.pt -i scan.nii.gz -o pred/
    msseg predict -m best.pt -i data/msseg -o pred/ --probabilities --threads 4
    msseg predict -m best.pt -i nnUNet_raw/Dataset001_MS -o pred/ --naming nnunet

Inputs: one FLAIR file, a folder of them, one MSSEG patient folder, an MSSEG folder, an nnU-Net
dataset (its imagesTs) or images folder, a BIDS dataset, or a scan CSV. Outputs, named by
patient (`--naming`: msseg's ``<out>/<id>_mask.nii.gz``..., nnU-Net's, or BIDS derivatives), all
with the FLAIR's affine, qform and sform so they overlay it in any viewer: the mask (uint8 0/1),
the lesion map (each lesion's number, 1 the largest), the lesion table (``_lesions.csv``:
volume in mL, centroid in scanner mm, bounding box, mean and max probability) and, with
``--probabilities``, the probability map (float32); then ``summary.csv`` (a row per scan:
lesion count, total volume, grid, model, recipe, warnings) and ``report.html``, one page that
opens in any browser without network. The path from scan to mask is `msseg.inference.predict`
(the model's recipe, overlapping slabs or windows blended into one volume, the threshold there,
the mask back to the native grid as labels). Every input is validated and the output folder
checked before anything is written; existing outputs are replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.commands.options import (
    add_device_arguments,
    add_recompose_argument,
    add_threads_argument,
    check_outputs_outside,
    set_threads,
)
from msseg.config import PAPER_THRESHOLD
from msseg.evaluation.lesions import CONNECTIVITIES, DEFAULT_CONNECTIVITY, MIN_LESION_MM3
from msseg.io.discovery import OUTPUT_NAMINGS

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg predict``."""
    parser.add_argument("-m", "--model", type=Path, required=True,
                        help="checkpoint of a training run (best.pt)")
    parser.add_argument("-i", "--input", type=Path, required=True,
                        help="FLAIR .nii/.nii.gz, a folder of them, an MSSEG patient folder, an "
                             "MSSEG folder, an nnU-Net dataset or images folder, a BIDS "
                             "dataset or a scan CSV")
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="output folder: per scan its mask, lesion map and lesion table; "
                             "summary.csv and report.html")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write each scan's probability map")
    parser.add_argument("--naming", choices=OUTPUT_NAMINGS, default="msseg",
                        help="file names: 'msseg' (<id>_mask.nii.gz, default), 'nnunet' (the "
                             "masks as <CASE>.nii.gz alone in the folder, as nnU-Net's "
                             "evaluation reads them; other maps in maps/) or 'bids' (BIDS "
                             "derivatives, sub-X/[ses-Y/]anat/..._desc-lesion_mask.nii.gz)")
    parser.add_argument("--connectivity", type=int, choices=tuple(CONNECTIVITIES),
                        default=DEFAULT_CONNECTIVITY,
                        help=f"voxels that share a face (6), also an edge (18) or also a corner "
                             f"(26) are one lesion (default {DEFAULT_CONNECTIVITY}, as "
                             f"`evaluate`)")
    parser.add_argument("--min-lesion-mm3", type=float, default=MIN_LESION_MM3,
                        help=f"components of this volume or less are not lesions (default "
                             f"{MIN_LESION_MM3:g} mm³, as `evaluate`)")
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
    """Predict every input scan; log where each mask went and the seconds per scan; write the
    report and say where it is."""
    from msseg.config import recipe_named
    from msseg.inference.outputs import without_outputs
    from msseg.inference.predict import predict_files
    from msseg.inference.predictor import load_predictor
    from msseg.io.discovery import find_inputs
    from msseg.report.prediction import write_prediction_report

    set_threads(args)
    check_outputs_outside(args.input, output_folder=args.out)
    records = without_outputs(find_inputs(args.input), args.out, naming=args.naming)
    predictor, config, intensity = load_predictor(args.model, device=args.device,
                                                  precision=args.precision)
    if args.threshold is not None:  # checked as the config's own threshold is
        try:
            config = config.replace(threshold=args.threshold)
        except ValueError as error:
            raise ValueError(f"--threshold {args.threshold}: {error}") from None
    recipe = recipe_named(config.recipe)
    log.info("%d scan(s), model %s (%s, encoder %s), recompose=%s, threshold=%.4f",
             len(records), args.model, recipe.describe(config), config.encoder,
             recipe.recomposition(args.recompose), config.threshold)
    predict_files(records, args.out, predictor, config=config, recompose=args.recompose,
                  batch_size=args.batch_size, probabilities=args.probabilities,
                  overwrite=args.overwrite, training_intensity=intensity, naming=args.naming,
                  connectivity=args.connectivity, min_lesion_mm3=args.min_lesion_mm3,
                  model=str(args.model))
    report = write_prediction_report(args.out, naming=args.naming)
    log.info("summary: %s\nreport: %s", args.out / "summary.csv", report)
    return 0

"""``python examples/msseg predict``: FLAIR NIfTI in, lesion mask NIfTI out on the scan's own grid.

    python examples/msseg predict --model runs/paper/best.pt --input scan.nii.gz --out pred/
    python examples/msseg predict --model best.pt --input data/msseg --out pred/ --probabilities

Per scan: load and validate the FLAIR -> the training pipeline's cube (reorient to sagittal,
resample to S³, scale to [-1, 1]) -> overlapping slabs through the network in batches -> slabs
recomposed into one probability cube (`--recompose paper`: the paper's middle-8 rule;
`average`: the mean of all overlapping predictions, the paper's stated future work) -> resampled
back onto the scan's grid and cut at the threshold (16/256 by default) -> ``<out>/<id>_mask.nii.gz``
(uint8 0/1) and, with `--probabilities`, ``<out>/<id>_prob.nii.gz`` (float32), both with the
FLAIR's affine, qform and sform so they overlay it in any viewer.

Every input is validated before anything is written, and every file is written to a temporary
name and renamed, so bad input leaves the output folder untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msseg.commands.train import pipeline_config
from msseg.config import TrainConfig
from msseg.data.native import write_prediction
from msseg.data.preprocess import preprocess_scan
from msseg.data.slabs import RECOMPOSE_METHODS, make_slabs, recompose_slabs
from msseg.inference.predict import predict_probabilities
from msseg.io.discovery import ScanRecord, discover_scans, prediction_path
from msseg.io.nifti import load_scan
from msseg.training.checkpoint import load_model

__all__ = ["find_inputs", "predict_cube", "predict_slabs", "resolve_runtime"]

_NIFTI = (".nii.gz", ".nii")


def find_inputs(source: str | Path) -> list[ScanRecord]:
    """The FLAIR scans to predict: one NIfTI file; a folder of NIfTI files (one scan each, id =
    file name); an MSSEG-layout folder (``<PATIENT>/3DFLAIR.nii.gz``); or a scan CSV.

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: a folder with neither NIfTI files nor patient folders.
    """
    source = Path(source)
    if source.is_file() and source.name.endswith(_NIFTI):
        return [ScanRecord(_stem(source), None, source, None)]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.name.endswith(_NIFTI))
        if files:
            return [ScanRecord(_stem(p), None, p, None) for p in files]
    elif not source.exists():
        raise FileNotFoundError(f"{source}: input not found; give a FLAIR .nii/.nii.gz file, a "
                                f"folder of them, an MSSEG folder or a scan CSV")
    # masks, where the folder or CSV has them, are neither needed nor read
    return [dataclasses.replace(r, mask=None) for r in discover_scans(source, require_masks=False)]


def _stem(path: Path) -> str:
    return next(path.name[: -len(s)] for s in _NIFTI if path.name.endswith(s))


def resolve_runtime(device: str, amp: str) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype) for inference: 'auto' picks CUDA and bf16 where available.

    Raises:
        ValueError: CUDA requested but not available, or fp16/bf16 on a device without it.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")
    if amp == "auto":
        amp = "bf16" if resolved.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if amp == "fp16" and resolved.type == "cpu":
        raise ValueError("--amp fp16 needs a GPU; use --amp bf16 or none on the CPU")
    return resolved, {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]


def predict_slabs(
    model: nn.Module,
    cube: np.ndarray,
    *,
    slab: int,
    step: int,
    batch_size: int = 2,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = True,
) -> np.ndarray:
    """Lesion probabilities of every overlapping slab of a preprocessed cube.

    Args:
        model: a trained `PlanarResUNet` (e.g. from `load_model`), on its device.
        cube: (S, S, S) FLAIR in [-1, 1], sagittal slices first (`preprocess_scan`).
        slab, step: the slab geometry the model was trained with.
        batch_size, amp_dtype, channels_last: see `predict_probabilities`.
    Returns:
        (n, slab, S, S) float32 probabilities, n = (S - slab) / step + 1.
    """
    slabs = make_slabs(np.asarray(cube, dtype=np.float32), slab=slab, step=step)
    return predict_probabilities(model, torch.from_numpy(slabs), batch_size=batch_size,
                                 amp_dtype=amp_dtype, channels_last=channels_last).numpy()


def predict_cube(
    model: nn.Module,
    config: TrainConfig,
    cube: np.ndarray,
    *,
    recompose: str = "average",
    batch_size: int = 2,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """The probability cube of one preprocessed scan.

    Args:
        model, config: from `load_model`.
        cube: (S, S, S) FLAIR in [-1, 1] from `preprocess_scan(scan, pipeline_config(config))`
            or the cache.
        recompose: "average" (mean over overlapping slabs) or "paper" (middle-8 rule, Eq. 1).
        batch_size, amp_dtype: see `predict_probabilities`.
    Returns:
        (S, S, S) float32 probabilities in the canonical cube; `msseg.data.native.write_prediction`
        takes them back to the scan's grid.
    """
    slabs = predict_slabs(model, cube, slab=config.slab, step=config.slab_step,
                          batch_size=batch_size, amp_dtype=amp_dtype,
                          channels_last=config.channels_last)
    return recompose_slabs(slabs, step=config.slab_step, method=recompose).astype(np.float32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg predict``."""
    parser.add_argument("--model", type=Path, required=True,
                        help="checkpoint of a training run (best.pt)")
    parser.add_argument("--input", type=Path, required=True,
                        help="FLAIR .nii/.nii.gz, a folder of them, an MSSEG folder or a CSV")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder for <id>_mask.nii.gz (and <id>_prob.nii.gz)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write the probability map <id>_prob.nii.gz")
    parser.add_argument("--recompose", choices=RECOMPOSE_METHODS, default="average",
                        help="overlapping slabs -> volume: 'average' (default, beyond the "
                             "paper) or 'paper' (middle-8 rule, Eq. 1)")
    parser.add_argument("--threshold", type=float,
                        help="probability cut for the mask (default: the model's, 16/256)")
    parser.add_argument("--device", default="auto", help="'auto' (default), 'cpu', 'cuda'")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="auto",
                        help="autocast precision (default: bf16 on a GPU, none on the CPU)")
    parser.add_argument("--batch-size", type=int, default=2, help="slabs per forward pass (2)")


def run(args: argparse.Namespace) -> int:
    """Predict every input scan; print where each mask went and the seconds per scan."""
    device, amp_dtype = resolve_runtime(args.device, args.amp)
    model, config = load_model(args.model, device=device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    threshold = config.threshold if args.threshold is None else args.threshold
    if not 0 < threshold < 1:
        raise ValueError(f"--threshold must be a probability in (0, 1); got {threshold}")
    records = find_inputs(args.input)
    for record in records:  # validate every input before writing anything
        load_scan(record)
    print(f"{len(records)} scan(s), model {args.model} (S={config.volume_size}, "
          f"{config.encoder}), {device}, recompose={args.recompose}, threshold={threshold:.4f}")
    seconds = []
    for record in records:
        start = time.perf_counter()
        scan = load_scan(record)
        flair = preprocess_scan(scan, pipeline_config(config)).flair
        cube = predict_cube(model, config, flair, recompose=args.recompose,
                            batch_size=args.batch_size, amp_dtype=amp_dtype)
        probability = (prediction_path(args.out, record.patient_id, "prob")
                       if args.probabilities else None)
        path = write_prediction(cube, scan.geometry, prediction_path(args.out, record.patient_id),
                                threshold=threshold, probability_path=probability)
        seconds.append(time.perf_counter() - start)
        print(f"{record.patient_id}: {path}  ({seconds[-1]:.1f} s)")
    print(f"{np.mean(seconds):.1f} s per scan on average")
    return 0

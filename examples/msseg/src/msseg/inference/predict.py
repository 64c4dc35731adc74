"""The one prediction path: FLAIR scan in, lesion probabilities and mask on its own grid out.

    predictor, config = load_predictor("runs/paper/best.pt")          # device and precision: auto
    prediction = predict_scan(load_scan(record), predictor, config=config)
    prediction.mask                                                   # (X, Y, Z) uint8, FLAIR grid

Every caller (the `predict` command, cross-validation, the demo) goes through `predict_scan`:
1. the scan is preprocessed exactly as for training (`config.pipeline`: the recipe's working
   space, FLAIR scaled to [-1, 1]), unless the caller passes it (e.g. from the cache);
2. `predict_volume` runs the network over the working volume and blends the overlaps into one
   probability volume. Recipe "paper": `predict_cube` cuts the cube into the config's
   overlapping slabs of whole planes and blends them by "average" (the mean of the overlapping
   predictions, the paper's stated future work) or "paper" (its middle-8 rule, Eq. 1). Recipe
   "spacing": `msseg.inference.windows` slides (slab, window, window) windows over a volume of
   any size and blends them ("gaussian" or "average"). Both own cutting, batching and blending
   and take the network as a callable (as MONAI's inferers), so a stand-in (a test, a
   benchmark) uses the same path;
3. the decision is taken in the working space at the threshold and mapped back to the scan's
   grid as labels, with the probability map interpolated for viewing (`msseg.data.native`).
`predict_files` runs this over many scans and writes the files (`msseg.inference.outputs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msseg.config import RECOMPOSITIONS, TrainConfig
from msseg.data.intensity_checks import warn_if_degenerate
from msseg.data.native import NativePrediction, to_native
from msseg.data.preprocess import Preprocessed, preprocess_scan
from msseg.data.slabs import RecomposeMethod, make_slabs, recompose_slabs
from msseg.device import Compute, resolve_compute
from msseg.inference.outputs import check_outputs, write_prediction
from msseg.inference.windows import predict_windows
from msseg.io.discovery import ScanRecord
from msseg.io.lock import folder_lock
from msseg.io.nifti import Scan, load_scan
from msseg.training.checkpoint import load_model

__all__ = [
    "Predictor",
    "load_predictor",
    "model_predictor",
    "predict_cube",
    "predict_files",
    "predict_scan",
    "predict_volume",
]

log = logging.getLogger(__name__)

# (B, slab, h, w) float32 FLAIR slabs in [-1, 1] on the CPU -> (B, slab, h, w) probabilities.
Predictor = Callable[[torch.Tensor], torch.Tensor]


def model_predictor(model: nn.Module, *, compute: Compute, channels_last: bool = True) -> Predictor:
    """Wrap a trained network as a `Predictor` (eval mode, no autograd, sigmoid of its logits).

    Args:
        model: a `PlanarResUNet` (put on `compute.device`, eval mode; not copied).
        compute: device and autocast dtype (`msseg.device.resolve_compute`).
        channels_last: run in channels_last_3d memory format (as the model was trained).
    Returns:
        A predictor that copies each FLAIR slab to the model's input channels and returns
        float32 probabilities on the CPU.
    """
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model.to(compute.device, memory_format=fmt).eval()
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv3d)).in_channels

    @torch.inference_mode()
    def predict(slabs: torch.Tensor) -> torch.Tensor:
        batch = slabs.unsqueeze(1).expand(-1, channels, -1, -1, -1)
        batch = batch.to(compute.device, torch.float32, non_blocking=True, memory_format=fmt)
        with compute.autocast():
            logits = model(batch)
        return torch.sigmoid(logits.float())[:, 0].cpu()

    return predict


def load_predictor(checkpoint: str | Path, *, device: str = "auto",
                   precision: str = "auto") -> tuple[Predictor, TrainConfig]:
    """The predictor of a training checkpoint and the config it was trained with.

    Args:
        checkpoint: a checkpoint of a training run (e.g. ``best.pt``).
        device, precision: as `msseg.device.resolve_compute`.
    Raises:
        FileNotFoundError, ValueError: a missing or foreign checkpoint, or an unusable device.
    """
    compute = resolve_compute(device, precision)
    model, config = load_model(checkpoint, device=compute.device)
    return model_predictor(model, compute=compute, channels_last=config.channels_last), config


def predict_cube(
    cube: np.ndarray,
    predictor: Predictor,
    *,
    slab: int,
    step: int,
    batch_size: int = 2,
    recompose: RecomposeMethod = "average",
) -> np.ndarray:
    """Lesion probabilities of a preprocessed cube, slab by slab, blended into one cube.

    Args:
        cube: (S, S, S) FLAIR in [-1, 1], sagittal slices first (`preprocess_scan`, the cache).
        predictor: slabs -> probabilities (`model_predictor`).
        slab, step: the slab geometry the model was trained with (`TrainConfig.slabs`).
        batch_size: slabs per predictor call.
        recompose: "average" (mean of the overlapping slabs) or "paper" (Eq. 1).
    Returns:
        (S, S, S) float32 probabilities in the canonical cube.
    Raises:
        ValueError: slabs that do not tile the cube, a batch_size < 1, an unknown method.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    slabs = make_slabs(np.asarray(cube, dtype=np.float32), slab=slab, step=step)
    probabilities = np.empty(slabs.shape, np.float32)
    for start in range(0, len(slabs), batch_size):
        batch = torch.from_numpy(slabs[start:start + batch_size])
        probabilities[start:start + batch_size] = predictor(batch).numpy()
    return recompose_slabs(probabilities, step=step, method=recompose).astype(np.float32)


def predict_volume(
    volume: np.ndarray,
    predictor: Predictor,
    *,
    config: TrainConfig,
    recompose: str | None = None,
    batch_size: int = 2,
) -> np.ndarray:
    """Lesion probabilities of a working volume under the config's recipe.

    Args:
        volume: (D, H, W) FLAIR in [-1, 1] (`preprocess_scan`, the cache).
        predictor: slabs -> probabilities.
        config: the model's training config (recipe, slabs, windows).
        recompose: how overlaps are blended: "average" or "paper" (recipe "paper"), "gaussian"
            or "average" (recipe "spacing"); None = the recipe's default (the first of
            `msseg.config.RECOMPOSITIONS`).
        batch_size: slabs or windows per predictor call.
    Returns:
        (D, H, W) float32 probabilities in the working space.
    Raises:
        ValueError: a recomposition the recipe does not have, or the errors of `predict_cube`
            and `predict_windows`.
    """
    allowed = RECOMPOSITIONS[config.recipe]
    method = recompose or allowed[0]
    if method not in allowed:
        raise ValueError(f"recompose={method!r} does not apply to recipe {config.recipe!r}; "
                         f"choose one of {allowed}")
    if config.recipe == "paper":
        return predict_cube(volume, predictor, slab=config.slab, step=config.slab_step,
                            batch_size=batch_size, recompose=method)
    return predict_windows(volume, predictor, slab=config.slab, step=config.slab_step,
                           window=config.window, overlap=config.window_overlap,
                           batch_size=batch_size, blend=method)


def predict_scan(
    scan: Scan,
    predictor: Predictor,
    *,
    config: TrainConfig,
    recompose: str | None = None,
    batch_size: int = 2,
    threshold: float | None = None,
    working: Preprocessed | None = None,
) -> NativePrediction:
    """Probabilities and mask of one scan on its own grid (see the module docstring).

    Args:
        scan: a loaded FLAIR (`load_scan`).
        predictor: slabs -> probabilities.
        config: the model's training config (preprocessing, slabs, windows, threshold).
        recompose, batch_size: as `predict_volume`.
        threshold: the probability cut in the working space (default: `config.threshold`).
        working: the scan's preprocessed volume, when the caller has it already (the cache).
    Returns:
        A `NativePrediction` (probability float32 and mask uint8, both (X, Y, Z)).
    Raises:
        ValueError: a threshold outside (0, 1], or the errors of `predict_volume`.
    """
    if working is None:
        working = preprocess_scan(scan, config.pipeline)
    warn_if_degenerate(scan, working.flair)
    probability = predict_volume(working.flair, predictor, config=config, recompose=recompose,
                                 batch_size=batch_size)
    level = config.threshold if threshold is None else threshold
    return to_native(probability, working.grid, threshold=level)


def predict_files(
    records: Sequence[ScanRecord],
    out_dir: str | Path,
    predictor: Predictor,
    *,
    config: TrainConfig,
    recompose: str | None = None,
    batch_size: int = 2,
    threshold: float | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Predict every scan and write ``<out>/<id>_mask.nii.gz`` (and ``<id>_prob.nii.gz``).

    Every FLAIR is loaded and checked, and the output folder is checked for earlier results,
    for two scans with one id, and for room to write (`check_outputs`), before any inference,
    so bad input, a forgotten ``--overwrite`` or a read-only folder writes nothing. The folder
    is then locked (`msseg.io.lock.folder_lock`): a second run writing into it is refused.

    Args:
        records: the scans (`msseg.io.discovery.find_inputs`).
        out_dir: the output folder (created).
        predictor, config, recompose, batch_size, threshold: as `predict_scan`.
        probabilities: also write the probability maps.
        overwrite: replace the outputs of an earlier run (see `write_prediction`).
    Returns:
        The mask paths, in the order of `records`.
    Raises:
        FileExistsError: outputs exist and `overwrite` is False (the message lists them).
        FileNotFoundError, msseg.io.nifti.ScanError: an input is missing or unusable.
        ValueError, msseg.io.atomic.WriteError: as `check_outputs`.
        msseg.io.lock.FolderLockedError: another process writes into `out_dir`.
    """
    shapes = [load_scan(record).geometry.shape for record in records]
    check_outputs(records, shapes, out_dir, probabilities=probabilities, overwrite=overwrite)
    masks, seconds = [], []
    with folder_lock(out_dir, command="msseg predict"):
        for record in records:
            start = time.perf_counter()
            scan = load_scan(record)
            prediction = predict_scan(scan, predictor, config=config, recompose=recompose,
                                      batch_size=batch_size, threshold=threshold)
            masks.append(write_prediction(prediction, scan.geometry, out_dir, record.patient_id,
                                          probabilities=probabilities, overwrite=overwrite))
            seconds.append(time.perf_counter() - start)
            log.info("%s: %s  (%.1f s)", record.patient_id, masks[-1], seconds[-1])
    log.info("%.1f s per scan on average", float(np.mean(seconds)))
    return masks

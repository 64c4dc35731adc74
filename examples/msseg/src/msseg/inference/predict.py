"""The one prediction path: FLAIR scan in, lesion probabilities and mask on its own grid out.

    predictor, config, intensity = load_predictor("runs/paper/best.pt")  # inference.predictor
    prediction = predict_scan(load_scan(record), predictor, config=config,
                              training_intensity=intensity)
    prediction.mask                                                   # (X, Y, Z) uint8, FLAIR grid

Every caller (the `predict` command, cross-validation, the demo, validation) goes through
`predict_scan`:
1. the scan is preprocessed exactly as for training (`config.pipeline`: the recipe's working
   space, FLAIR scaled to [-1, 1]), unless the caller passes it (e.g. from the cache);
2. `predict_volume` runs the network over the working volume and blends the overlaps into one
   probability volume, as the model's recipe does it (`msseg.recipes`: the paper's slabs of
   whole planes, averaged or by its Eq. 1; the spacing recipe's MONAI windows, Gaussian-weighted
   or averaged). The recipes own cutting, batching and blending and take the network as a
   callable (a `Predictor`, as MONAI's inferers), so a stand-in (a test, a benchmark) uses the
   same path;
3. the decision is taken in the working space at the threshold and mapped back to the scan's
   grid as labels, with the probability map interpolated for viewing (`msseg.data.native`).
`predict_files` runs this over many scans and writes the files (`msseg.inference.outputs`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from msseg.config import TrainConfig, recipe_named
from msseg.data.intensity_checks import warn_if_degenerate
from msseg.data.native import NativePrediction, to_native
from msseg.data.preprocess import Preprocessed, preprocess_scan
from msseg.evaluation.lesion_table import ScanSummary, analyse_lesions
from msseg.evaluation.lesions import DEFAULT_CONNECTIVITY, MIN_LESION_MM3
from msseg.inference.outputs import check_outputs, write_prediction
from msseg.io.discovery import ScanRecord
from msseg.io.lock import folder_lock
from msseg.io.nifti import Scan, load_scan, read_geometry, warn_if_oblique
from msseg.recipes.recipe import Predictor

__all__ = ["predict_files", "predict_scan", "predict_volume"]

log = logging.getLogger(__name__)


def predict_volume(
    volume: np.ndarray,
    predictor: Predictor,
    *,
    config: TrainConfig,
    recompose: str | None = None,
    batch_size: int = 2,
) -> np.ndarray:
    """Lesion probabilities of a working volume under the config's recipe (`Recipe.predict`).

    Args:
        volume: (D, H, W) FLAIR in [-1, 1] (`preprocess_scan`, the cache).
        predictor: network inputs -> probabilities.
        config: the model's training config (recipe, slabs, windows).
        recompose: how overlaps are blended, one of the recipe's `recompositions`; None = its
            default (the first).
        batch_size: network inputs per predictor call.
    Returns:
        (D, H, W) float32 probabilities in the working space.
    Raises:
        ValueError: a recomposition the recipe does not have, or a batch_size < 1.
    """
    return recipe_named(config.recipe).predict(volume, predictor, config=config,
                                                method=recompose, batch_size=batch_size)


def predict_scan(
    scan: Scan,
    predictor: Predictor,
    *,
    config: TrainConfig,
    recompose: str | None = None,
    batch_size: int = 2,
    threshold: float | None = None,
    working: Preprocessed | None = None,
    training_intensity: Sequence[Sequence[float]] | None = None,
) -> NativePrediction:
    """Probabilities and mask of one scan on its own grid (see the module docstring).

    Args:
        scan: a loaded FLAIR (`load_scan`).
        predictor: slabs -> probabilities.
        config: the model's training config (preprocessing, slabs, windows, threshold).
        recompose, batch_size: as `predict_volume`.
        threshold: the probability cut in the working space (default: `config.threshold`).
        working: the scan's preprocessed volume, when the caller has it already (the cache).
        training_intensity: the model's training scans' intensity profiles
            (`load_predictor`); a scan far from all of them is warned about.
    Returns:
        A `NativePrediction` (probability float32 and mask uint8, both (X, Y, Z)).
    Raises:
        ValueError: a threshold outside (0, 1], or the errors of `predict_volume`.
    """
    recipe = recipe_named(config.recipe)
    warn_if_oblique(scan.record.flair, scan.geometry.affine, slabs=recipe.slabs,
                    recipe=recipe.name)
    if working is None:
        working = preprocess_scan(scan, config.pipeline)
    warn_if_degenerate(scan, working.flair, training=training_intensity)
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
    training_intensity: Sequence[Sequence[float]] | None = None,
    naming: str = "msseg",
    connectivity: int = DEFAULT_CONNECTIVITY,
    min_lesion_mm3: float = MIN_LESION_MM3,
    model: str = "",
) -> list[Path]:
    """Predict every scan and write its files (`msseg.inference.outputs`: mask, lesion map,
    lesion table, with `probabilities` the probability map) and its row of ``summary.csv``.

    Every FLAIR's header is checked (`msseg.io.nifti.read_geometry`), and the output folder
    for earlier results, for two scans with one id, and for room to write (`check_outputs`),
    before any inference, so a missing or unreadable file, a forgotten ``--overwrite`` or a
    read-only folder writes nothing. The folder is then locked (`msseg.io.lock.folder_lock`):
    a second run writing into it is refused. Each scan's voxels are read once, when it is
    predicted: a scan whose voxels are unusable (non-finite, constant, truncated) stops the run
    there, with the scans before it written. The warnings raised while a scan is read and
    predicted are shown as they come and kept in its summary row.

    Args:
        records: the scans (`msseg.io.discovery.find_inputs`).
        out_dir: the output folder (created).
        predictor, config, recompose, batch_size, threshold, training_intensity: as
            `predict_scan`.
        probabilities: also write the probability maps.
        overwrite: replace the outputs of an earlier run (see `write_prediction`).
        naming: how the files are named (`msseg.io.discovery.OUTPUT_NAMINGS`); nnU-Net's
            masks hold the lesion label of the scans' dataset.json.
        connectivity, min_lesion_mm3: the lesions' rule (`analyse_lesions`).
        model: the model as the summary names it (e.g. the checkpoint's path).
    Returns:
        The mask paths, in the order of `records`.
    Raises:
        FileExistsError: outputs exist and `overwrite` is False (the message lists them).
        FileNotFoundError, msseg.io.nifti.ScanError: an input is missing or unusable.
        ValueError, msseg.io.atomic.WriteError: as `check_outputs`.
        msseg.io.lock.FolderLockedError: another process writes into `out_dir`.
    """
    kept: dict[str, list[str]] = {record.patient_id: [] for record in records}
    shapes = []
    for record in records:
        with _warnings_kept(kept[record.patient_id]):
            shapes.append(read_geometry(record.flair).shape)
    check_outputs(records, shapes, out_dir, probabilities=probabilities, overwrite=overwrite,
                  naming=naming)
    recipe = recipe_named(config.recipe).describe(config)
    masks, seconds = [], []
    with folder_lock(out_dir, command="msseg predict"):
        for record in records:
            start = time.perf_counter()
            with _warnings_kept(kept[record.patient_id]):
                scan = load_scan(record)
                prediction = predict_scan(scan, predictor, config=config, recompose=recompose,
                                          batch_size=batch_size, threshold=threshold,
                                          training_intensity=training_intensity)
            analysis = analyse_lesions(prediction.mask, scan.geometry,
                                       probability=prediction.probability,
                                       connectivity=connectivity, min_lesion_mm3=min_lesion_mm3)
            labels = record.mask_labels
            label = labels[0] if naming == "nnunet" and isinstance(labels, tuple) else 1
            summary = ScanSummary.of(record.patient_id, str(record.flair), analysis,
                                     scan.geometry, model=model, recipe=recipe,
                                     warnings=list(dict.fromkeys(kept[record.patient_id])))
            masks.append(write_prediction(prediction, analysis, scan.geometry, out_dir,
                                          record.patient_id, probabilities=probabilities,
                                          overwrite=overwrite, naming=naming, label=label,
                                          summary=summary))
            seconds.append(time.perf_counter() - start)
            log.info("%s: %s, %d lesion(s), %.2f mL  (%.1f s)", record.patient_id, masks[-1],
                     analysis.count, analysis.total_ml, seconds[-1])
    log.info("%.1f s per scan on average", float(np.mean(seconds)))
    return masks


@contextlib.contextmanager
def _warnings_kept(texts: list[str]) -> Iterator[None]:
    """Warnings raised in the block go on as they would (shown, or raised under ``--strict``),
    and the text of each one shown is added to `texts`."""
    shown = warnings.showwarning

    def keep(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        texts.append(str(message))
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = keep
    try:
        yield
    finally:
        warnings.showwarning = shown

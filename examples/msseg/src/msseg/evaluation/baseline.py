"""The baseline a trained model must beat: the best single global intensity threshold.

    result = threshold_baseline(discover_scans("data/phantom"))      # `msseg baseline`

Every scan's FLAIR is scaled to [-1, 1] in its own grid (the pipeline's normalisation, so one
threshold means the same thing on every scan); then one threshold t is chosen for *all* scans
to maximise the mean per-scan Dice of "lesion = FLAIR >= t" against the consensus mask. This is
what thresholding can do without a model. The per-scan oracle (each scan with its own best
threshold, which needs the answer to pick) is reported as a ceiling for thresholding.

Public API:
    ThresholdBaseline(threshold, dice, oracle_dice)   dice/oracle per patient id
    threshold_baseline(records, *, normalisation="minmax", bins=1000, progress=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msseg.config import NORMALISATIONS, Normalisation
from msseg.data.preprocess import normalise
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.progress import progress_bar


@dataclass(frozen=True)
class ThresholdBaseline:
    """Result of `threshold_baseline`.

    Attributes:
        threshold: the global threshold on [-1, 1]-scaled FLAIR.
        dice: per patient id, Dice at that threshold.
        oracle_dice: per patient id, Dice at the scan's own best threshold.
    """

    threshold: float
    dice: dict[str, float]
    oracle_dice: dict[str, float]


def threshold_baseline(
    records: list[ScanRecord],
    *,
    normalisation: Normalisation = "minmax",
    bins: int = 1000,
    progress: bool = True,
) -> ThresholdBaseline:
    """Find the single threshold that maximises the mean Dice over `records`.

    Args:
        records: scans with masks.
        normalisation: how each FLAIR is scaled to [-1, 1] ("minmax" or "percentile").
        bins: candidate thresholds, evenly spaced on [-1, 1].
        progress: show a progress bar while loading.

    Returns:
        `ThresholdBaseline`.

    Raises:
        ValueError: no records, a record without mask, bins < 2, unknown normalisation.
        FileNotFoundError, msseg.io.nifti.ScanError: as `load_scan`.
    """
    if not records:
        raise ValueError("no scans given; point --data at a folder with scans and masks.")
    if bins < 2:
        raise ValueError(f"bins must be >= 2; found {bins}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}; found {normalisation!r}")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    dice_curves = []
    for record in progress_bar(records, desc="baseline", unit="scan", enabled=progress):
        if record.mask is None:
            raise ValueError(f"{record.patient_id}: the baseline needs a lesion mask; found none.")
        scan = load_scan(record)
        flair = normalise(scan.flair, method=normalisation)
        lesion = scan.mask.astype(bool)
        dice_curves.append(_dice_per_threshold(flair[lesion], flair[~lesion], edges))
    curves = np.array(dice_curves)
    best = int(np.argmax(curves.mean(axis=0)))
    ids = [r.patient_id for r in records]
    return ThresholdBaseline(
        threshold=float(edges[best]),
        dice=dict(zip(ids, curves[:, best].tolist(), strict=True)),
        oracle_dice=dict(zip(ids, curves.max(axis=1).tolist(), strict=True)),
    )


def _dice_per_threshold(lesion: np.ndarray, other: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Dice of (value >= edges[i]) for every lower bin edge, from the two histograms."""
    true_positive = np.cumsum(np.histogram(lesion, bins=edges)[0][::-1])[::-1]
    false_positive = np.cumsum(np.histogram(other, bins=edges)[0][::-1])[::-1]
    return 2 * true_positive / (lesion.size + true_positive + false_positive)

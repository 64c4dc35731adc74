"""The baseline a trained model must beat: the best single global intensity threshold.

    fitted = threshold_baseline(training_records)                 # `msseg baseline --test ...`
    results = apply_threshold(fitted, test_records)               # scored on the native grids

Every scan's FLAIR is scaled to [-1, 1] in its own grid (the pipeline's normalisation, so one
threshold means the same thing on every scan); then one threshold t is chosen for *all* the
fitting scans to maximise their mean per-scan Dice of "lesion = FLAIR >= t" against the
consensus mask. Applied to scans it was not fitted on, this is what thresholding can do without
a model; on its own fitting scans it is optimistic. The per-scan oracle (each scan with its own
best threshold, which needs the answer to pick) is reported as a ceiling for thresholding.

Public API:
    ThresholdBaseline(threshold, normalisation, dice, oracle_dice)   per fitting scan
    threshold_baseline(records, *, normalisation="minmax", bins=1000, progress=True)
    apply_threshold(baseline, records) -> list[ScanResult]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msseg.data.intensity import normalise
from msseg.evaluation.scoring import ScanResult, score_scan
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.progress import progress_bar
from msseg.recipes.recipe import NORMALISATIONS, Normalisation


@dataclass(frozen=True)
class ThresholdBaseline:
    """Result of `threshold_baseline`.

    Attributes:
        threshold: the global threshold on [-1, 1]-scaled FLAIR.
        normalisation: how the FLAIR was scaled to [-1, 1].
        dice: per fitting scan's patient id, Dice at that threshold.
        oracle_dice: per fitting scan's patient id, Dice at the scan's own best threshold.
    """

    threshold: float
    normalisation: str
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
        threshold=float(edges[best]), normalisation=normalisation,
        dice=dict(zip(ids, curves[:, best].tolist(), strict=True)),
        oracle_dice=dict(zip(ids, curves.max(axis=1).tolist(), strict=True)),
    )


def apply_threshold(baseline: ThresholdBaseline, records: list[ScanRecord]) -> list[ScanResult]:
    """Score a fitted threshold on scans (e.g. test scans it was not fitted on).

    Args:
        baseline: from `threshold_baseline` (threshold and normalisation).
        records: scans with masks.
    Returns:
        One `ScanResult` per record (native grid: Dice, sensitivity, lesion-wise scores).
    Raises:
        ValueError: a record without mask; FileNotFoundError, msseg.io.nifti.ScanError: as
            `load_scan`.
    """
    results = []
    for record in records:
        if record.mask is None:
            raise ValueError(f"{record.patient_id}: scoring the baseline needs a lesion mask")
        scan = load_scan(record, allow_empty_mask=True)
        lesion = normalise(scan.flair, method=baseline.normalisation) >= baseline.threshold
        results.append(score_scan(lesion, scan))
    return results


def _dice_per_threshold(lesion: np.ndarray, other: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Dice of (value >= edges[i]) for every lower bin edge, from the two histograms."""
    true_positive = np.cumsum(np.histogram(lesion, bins=edges)[0][::-1])[::-1]
    false_positive = np.cumsum(np.histogram(other, bins=edges)[0][::-1])[::-1]
    return 2 * true_positive / (lesion.size + true_positive + false_positive)

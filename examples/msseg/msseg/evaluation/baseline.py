"""The baseline a trained model must beat: the best single global intensity threshold.

    python examples/msseg baseline --data data/phantom

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

import argparse
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from msseg.data.preprocess import NORMALISATIONS, Normalisation, normalise
from msseg.io.discovery import ScanRecord, discover_scans
from msseg.io.nifti import load_scan


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
    for record in tqdm(records, desc="baseline", unit="scan", disable=not progress):
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg baseline``."""
    parser.add_argument("--data", required=True,
                        help="MSSEG folder, scan CSV, or FLAIR pattern with {id}")
    parser.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")
    parser.add_argument("--normalisation", choices=NORMALISATIONS, default="minmax",
                        help="FLAIR scaling before thresholding (default minmax, as the model)")
    parser.add_argument("--bins", type=int, default=1000, help="candidate thresholds (1000)")


def run(args: argparse.Namespace) -> int:
    """Print per-scan, per-centre and overall Dice of the best global threshold."""
    records = discover_scans(args.data, mask_pattern=args.mask_pattern)
    result = threshold_baseline(records, normalisation=args.normalisation, bins=args.bins)
    print(f"best global threshold on [-1, 1] ({args.normalisation}): {result.threshold:+.3f}")
    print("patient     centre  dice   oracle")
    for record in records:
        print(f"{record.patient_id:10s}  {record.centre or '-':6s}  "
              f"{result.dice[record.patient_id]:.3f}  {result.oracle_dice[record.patient_id]:.3f}")
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record.centre or "-", []).append(record.patient_id)
    for centre, ids in sorted(groups.items()):
        print(f"centre {centre}: {_mean_std([result.dice[i] for i in ids])}")
    print(f"overall: Dice {_mean_std(list(result.dice.values()))}  "
          f"(per-scan oracle {_mean_std(list(result.oracle_dice.values()))})")
    return 0


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

"""Intensities a model cannot read: a FLAIR that loads, but would give a confident mask of nothing.

`warn_if_degenerate` runs on every scan the prediction path sees (`predict_scan`), on the file's
intensities and on the scaled cube the model is given, and names the file in a `ScanWarning`
with the first of these that applies:
- only two distinct values: a mask or label map passed as the FLAIR;
- the scaled cube is almost constant: 98% of its voxels lie within `ALMOST_CONSTANT_SPAN` of
  each other (in a FLAIR scaled to [-1, 1] they span about 1.3). When a few extreme voxels span
  most of the file's range (one hot voxel of 1e38 squeezes a phantom scan from a span of 1.4 to
  0.0, its standard deviation from 0.32 to 0.006), the warning says so;
- the scaled volume's intensities are unlike every training scan's: its `intensity_profile`
  (percentiles of the working volume, in [-1, 1]) lies more than `FAR_FROM_TRAINING` from the
  profile of the nearest training scan (`profile_distance`, the mean absolute difference of the
  percentiles). Measured: phantom scans lie 0.006-0.033 from the nearest of the others, two
  real scans of different kinds (raw; skull-stripped in MNI space) 0.06 (real-data recipe) and
  0.15 (the paper's cube at 64³), a gamma of 0.5 or 2 0.14-0.22; a negated scan 0.92-1.15.
Complex and non-finite voxels never get this far: `msseg.io.nifti.load_scan` refuses them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from msseg.io.nifti import Scan, ScanWarning

__all__ = [
    "ALMOST_CONSTANT_SPAN",
    "FAR_FROM_TRAINING",
    "PROFILE_PERCENTILES",
    "intensity_problems",
    "intensity_profile",
    "profile_distance",
    "warn_if_degenerate",
]

ALMOST_CONSTANT_SPAN = 0.05  # of the scaled cube's 1st to 99th percentile, in [-1, 1]
PROFILE_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)  # an intensity profile's points
FAR_FROM_TRAINING = 0.25  # a profile this far from every training scan's: warned about
_TAIL_PERCENT = 0.1  # the bulk of the file's intensities: between these percentiles
_SQUEEZED = 0.05  # the bulk spans less than this fraction of [min, max]: outliers rule the range
_SAMPLE = 1_000_000  # voxels enough to estimate percentiles


def intensity_profile(volume: np.ndarray) -> list[float]:
    """The `PROFILE_PERCENTILES` of a working volume (a sample of about a million voxels).

    Args:
        volume: (D, H, W) a scan scaled for the model (`preprocess_scan`, the cache).
    Returns:
        One value per percentile, in [-1, 1], as plain floats (they go into checkpoints).
    """
    return [float(v) for v in np.percentile(_sample(volume), PROFILE_PERCENTILES)]


def profile_distance(profile: Sequence[float], training: Sequence[Sequence[float]]) -> float:
    """How far a profile lies from the nearest of the training scans' profiles.

    Args:
        profile: `intensity_profile` of one scan.
        training: the training scans' profiles (at least one).
    Returns:
        The smallest mean absolute difference of the percentiles, in [0, 2].
    Raises:
        ValueError: no training profile, or profiles of another length.
    """
    reference = np.asarray(training, dtype=np.float64)
    if reference.ndim != 2 or len(reference) == 0 or reference.shape[1] != len(profile):
        raise ValueError(f"need training profiles of {len(profile)} percentiles each; got "
                         f"shape {reference.shape}")
    return float(np.min(np.mean(np.abs(reference - np.asarray(profile)), axis=1)))


def intensity_problems(flair: np.ndarray, cube: np.ndarray, *,
                       training: Sequence[Sequence[float]] | None = None) -> list[str]:
    """What makes these intensities unusable: the first finding that applies, as a sentence.

    Args:
        flair: (X, Y, Z) the file's intensities (finite, real).
        cube: (D, H, W) the same scan scaled for the model (`preprocess_scan`).
        training: the training scans' `intensity_profile`s (from the model's checkpoint), or
            None to skip that comparison.
    Returns:
        [the finding, saying what was found and what to do], or [] for a usable scan.
    """
    flair = np.asarray(flair)
    low, high = float(flair.min()), float(flair.max())
    if np.all((flair == low) | (flair == high)):  # the one cause worth naming
        return [f"it holds only two values ({low:g} and {high:g}), like a mask, not a FLAIR; "
                "check that the FLAIR file was given"]
    span = float(np.subtract(*np.percentile(_sample(cube), [99, 1])))
    if span < ALMOST_CONSTANT_SPAN:
        bulk_low, bulk_high = np.percentile(_sample(flair), [_TAIL_PERCENT, 100 - _TAIL_PERCENT])
        cause = "the scan is almost constant"
        if (bulk_high - bulk_low) < _SQUEEZED * (high - low):
            cause = (f"{100 - 2 * _TAIL_PERCENT:g}% of its voxels lie in [{bulk_low:.4g}, "
                     f"{bulk_high:.4g}] while the range is [{low:.4g}, {high:.4g}]: a few "
                     "extreme voxels squeeze the scan; clip them (e.g. to the 99.9th "
                     "percentile) and predict again")
        return [f"after scaling, 98% of its voxels lie within {span:.3g} of each other (in a "
                f"FLAIR they span about 1.3 of [-1, 1]): {cause}"]
    if training:
        distance = profile_distance(intensity_profile(cube), training)
        if distance > FAR_FROM_TRAINING:
            return [f"its intensities are unlike the training scans' (after scaling, its "
                    f"percentiles lie {distance:.2f} from the nearest training scan's, more "
                    f"than {FAR_FROM_TRAINING}): a negated, differently weighted or processed "
                    f"scan? Check that it is a FLAIR prepared as the training scans were"]
    return []


def _sample(volume: np.ndarray) -> np.ndarray:
    """Every k-th voxel, about `_SAMPLE` of them: enough for percentiles."""
    flat = np.asarray(volume).reshape(-1)
    return flat[:: max(1, flat.size // _SAMPLE)]


def warn_if_degenerate(scan: Scan, cube: np.ndarray, *,
                       training: Sequence[Sequence[float]] | None = None) -> None:
    """Give a `ScanWarning` for each of `intensity_problems`, naming the scan's FLAIR file."""
    for problem in intensity_problems(scan.flair, cube, training=training):
        warnings.warn(f"{scan.record.flair}: {problem}; the predicted mask cannot be trusted",
                      ScanWarning, stacklevel=1)  # one location: shown once per text

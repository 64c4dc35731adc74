"""The single-global-threshold baseline."""

import numpy as np
import pytest
from msseg.io.discovery import ScanRecord, find_msseg_scans
from msseg.workflows.baseline import _dice_per_threshold, threshold_baseline
from msseg_helpers import oriented_affine, save


def test_dice_curve_matches_brute_force():
    rng = np.random.default_rng(0)
    lesion, other = rng.uniform(0, 1, 50), rng.uniform(-1, 0.5, 500)
    edges = np.linspace(-1, 1, 41)
    curve = _dice_per_threshold(lesion, other, edges)
    for i, t in enumerate(edges[:-1]):
        tp, fp = np.sum(lesion >= t), np.sum(other >= t)
        assert curve[i] == pytest.approx(2 * tp / (lesion.size + tp + fp))


def _scan(folder, name, lesion_value):
    """8 lesion voxels, 20 tissue voxels at 5, one bright voxel at 10, background 0."""
    flair = np.zeros((6, 6, 6), np.float32)
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    flair[mask > 0] = lesion_value
    flair[5, :5, :4] = 5.0
    flair[0, 0, 0] = 10.0
    affine = oriented_affine("RAS", shape=flair.shape)
    return ScanRecord(name, name[:2], save(folder / f"{name}_f.nii.gz", flair, affine),
                      save(folder / f"{name}_m.nii.gz", mask, affine))


def test_one_threshold_for_all_scans(tmp_path):
    """Scaled to [-1, 1]: tissue at 0, lesions at 0.6 (A, B) or -0.2 (C), bright voxel at 1.

    A threshold in (0, 0.6] gives A and B 2*8/(8+8+1) and C nothing: mean 0.627; one in
    (-1, -0.2] gives every scan 2*8/(8+8+21) = 0.432; so the first wins, and C's own best
    (its oracle) is 0.432.
    """
    records = [_scan(tmp_path, "01A", 8.0), _scan(tmp_path, "01B", 8.0),
               _scan(tmp_path, "07C", 4.0)]
    result = threshold_baseline(records, bins=100, progress=False)
    assert 0 < result.threshold <= 0.6
    assert result.dice == pytest.approx({"01A": 16 / 17, "01B": 16 / 17, "07C": 0.0})
    assert result.oracle_dice == pytest.approx({"01A": 16 / 17, "01B": 16 / 17, "07C": 16 / 37})


def test_phantom_is_not_solvable_by_thresholding(phantom_dir):
    result = threshold_baseline(find_msseg_scans(phantom_dir), progress=False)
    assert np.mean(list(result.dice.values())) < 0.1
    assert max(result.oracle_dice.values()) < 0.15


def test_baseline_needs_masks_and_scans(tmp_path):
    record = _scan(tmp_path, "01A", 8.0)
    with pytest.raises(ValueError, match="needs a lesion mask"):
        threshold_baseline([ScanRecord("01A", "01", record.flair, None)], progress=False)
    with pytest.raises(ValueError, match="no scans given"):
        threshold_baseline([], progress=False)
    with pytest.raises(ValueError, match="bins must be >= 2"):
        threshold_baseline([record], bins=1, progress=False)

"""FLAIR intensities to [-1, 1]: min-max and robust percentiles of the head, the range taken on
the scan before resampling, spline overshoot clipped; on synthetic volumes and on the real
skull-stripped (1 mm MNI) and raw (scanner space, zero-filled air) scans."""


import numpy as np
import pytest
from msseg.config import PipelineConfig
from msseg.data.intensity import foreground, intensity_range, normalise, scale
from msseg.data.preprocess import preprocess_scan
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg_helpers import REAL_SCANS


def test_minmax_maps_range_to_minus_one_one():
    volume = np.array([2.0, 4.0, 6.0, 5.0])
    np.testing.assert_array_equal(normalise(volume), [-1, 0, 1, 0.5])
    assert normalise(volume).dtype == np.float32
    assert volume.tolist() == [2.0, 4.0, 6.0, 5.0]


def test_percentile_clips_extremes():
    volume = np.arange(1.0, 102.0)
    out = normalise(volume, method="percentile", percentiles=(10, 90))
    np.testing.assert_allclose(out[[0, 10, 50, 90, 100]], [-1, -1, 0, 1, 1], atol=1e-6)
    spiky = np.r_[np.linspace(0, 1, 999), 1000.0]
    robust = normalise(spiky, method="percentile")  # (0.5, 99.5): the spike is clipped
    assert robust[499] == pytest.approx(0, abs=0.01) and robust[-1] == 1
    assert normalise(spiky)[499] == pytest.approx(-0.999, abs=1e-3)  # minmax: crushed


def test_percentiles_are_taken_on_the_head_not_the_background():
    """80 % zero background, tissue 100..200: the head's (0.5, 99.5) percentiles are about
    100.5 and 199.5; over all voxels they would be 0 and 199.6."""
    tissue = np.linspace(100, 200, 2000)
    volume = np.r_[np.zeros(8000), tissue]
    assert foreground(volume).sum() == 2000
    low, high = intensity_range(volume, method="percentile")
    assert (low, high) == pytest.approx((100.5, 199.5), abs=0.01)
    assert foreground(tissue).all() and foreground(np.zeros(5)).all()  # nothing to leave out


def test_one_hot_voxel_squeezes_minmax_but_not_the_percentiles():
    volume = np.r_[np.zeros(100), np.linspace(10, 20, 1000), 1e38].astype(np.float32)
    assert np.ptp(normalise(volume)[100:-1]) < 1e-30  # the whole head in one sliver
    robust = normalise(volume, method="percentile")
    assert robust[100] == -1 and robust[-2] == 1 and robust[-1] == 1
    assert robust[600] == pytest.approx(0, abs=0.01)


def test_scale_clips_what_resampling_overshoots():
    np.testing.assert_array_equal(scale(np.array([-3.0, 0.0, 5.0, 10.0, 12.0]), 0.0, 10.0),
                                  [-1, -1, 0, 1, 1])


def test_constant_volume_cannot_be_normalised():
    with pytest.raises(ValueError, match=r"intensity range \[3.0, 3.0\] is empty"):
        normalise(np.full((3, 3), 3.0))
    with pytest.raises(ValueError, match="method must be one of"):
        intensity_range(np.arange(3.0), method="zscore")


@pytest.fixture(scope="module")
def real_scans():
    return {
        "skull-stripped": load_scan(ScanRecord("patient07", None,
                                               REAL_SCANS / "patient07" / "FLAIR.nii.gz",
                                               REAL_SCANS / "patient07" / "Consensus.nii.gz")),
        "raw": load_scan(ScanRecord("patient01", None,
                                    REAL_SCANS / "raw" / "patient01_study1_FLAIR.nii.gz", None)),
    }


@pytest.mark.parametrize(("kind", "minmax", "head", "robust"), [
    # (low, high) of the scan; share of non-zero voxels; (low, high) of their percentiles
    ("skull-stripped", (-19.672, 200.422), 0.157, (0.394, 123.201)),
    ("raw", (0.0, 658.0), 0.391, (1.0, 371.0)),
])
def test_ranges_of_the_real_scans(real_scans, kind, minmax, head, robust):
    """The MNI scan has real negative values and a zero background; the raw scan zero-filled
    air and bright scalp fat: min-max puts the background at 0.08 or -1 of the range by chance,
    the head's percentiles put it at -1 and keep 99.5 % of the head unclipped."""
    flair = real_scans[kind].flair
    assert intensity_range(flair) == pytest.approx(minmax, abs=1e-3)
    assert foreground(flair).mean() == pytest.approx(head, abs=1e-3)
    low, high = intensity_range(flair, method="percentile")
    assert (low, high) == pytest.approx(robust, abs=0.01)
    scaled = normalise(flair, method="percentile")
    assert (scaled[flair == 0] == -1).all()
    assert (scaled[foreground(flair)] == 1).mean() == pytest.approx(0.005, abs=0.001)


@pytest.mark.parametrize(("kind", "normalisation", "background"), [
    ("raw", "minmax", -1.0),
    ("raw", "percentile", -1.0),
    ("skull-stripped", "percentile", -1.0),
    ("skull-stripped", "minmax", 19.672 / 220.094 * 2 - 1),  # the scan's own negative values
])
def test_the_background_of_real_scans_is_set_by_the_scan_not_by_spline_overshoot(
        real_scans, kind, normalisation, background):
    """The range is taken on the scan, not after the order-2 spline: the spline's undershoot at
    the head's edge would set the minimum, and at 64³ the background (most voxels) would land at
    -0.752 (skull-stripped, whose real minimum alone puts it at -0.821) and -0.881 (raw) instead
    of -1; the robust percentiles at -0.983 and -0.994."""
    scan = real_scans[kind]
    cube = preprocess_scan(scan, PipelineConfig(volume_size=64, normalisation=normalisation)).flair
    values, counts = np.unique(cube, return_counts=True)
    assert values[counts.argmax()] == pytest.approx(background, abs=1e-5)
    assert counts.max() / cube.size > 0.5
    assert cube.min() >= -1.0 and cube.max() <= 1.0


def test_the_lesions_of_the_real_scan_stay_bright_under_robust_scaling(real_scans):
    """The consensus lesions (1,300 voxels) sit above most of the brain: median at +0.9 of the
    head's percentile range; 36 % of lesion voxels reach the clip at +1 (the head's top 0.5 %
    holds lesions, vessels and the brightest cortex)."""
    scan = real_scans["skull-stripped"]
    scaled = normalise(scan.flair, method="percentile")
    lesion = scaled[scan.mask > 0]
    assert np.median(lesion) == pytest.approx(0.90, abs=0.01)
    assert (lesion == 1).mean() == pytest.approx(0.362, abs=0.002)

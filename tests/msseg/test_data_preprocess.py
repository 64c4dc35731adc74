"""Resampling, normalisation and preprocessing into the cube."""

import nibabel as nib
import numpy as np
import pytest
from msseg.config import PipelineConfig
from msseg.data.preprocess import normalise, preprocess_scan, resample_to_cube
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry
from msseg_helpers import oriented_affine


def test_minmax_maps_range_to_minus_one_one():
    volume = np.array([2.0, 4.0, 6.0, 5.0])
    np.testing.assert_array_equal(normalise(volume), [-1, 0, 1, 0.5])
    assert normalise(volume).dtype == np.float32
    assert volume.tolist() == [2.0, 4.0, 6.0, 5.0]


def test_percentile_clips_extremes():
    volume = np.arange(101.0)
    out = normalise(volume, method="percentile", percentiles=(10, 90))
    np.testing.assert_allclose(out[[0, 10, 50, 90, 100]], [-1, -1, 0, 1, 1], atol=1e-6)
    spiky = np.r_[np.linspace(0, 1, 999), 1000.0]
    robust = normalise(spiky, method="percentile")  # (0.5, 99.5): the spike is clipped
    assert robust[499] == pytest.approx(0, abs=0.01) and robust[-1] == 1
    assert normalise(spiky)[499] == pytest.approx(-0.999, abs=1e-3)  # minmax: crushed


def test_constant_volume_cannot_be_normalised():
    with pytest.raises(ValueError, match=r"intensity range \[3.0, 3.0\] is empty"):
        normalise(np.full((3, 3), 3.0))


def test_resample_keeps_corners_and_label_values():
    rng = np.random.default_rng(1)
    volume = rng.random((9, 20, 5)).astype(np.float32)
    cube = resample_to_cube(volume, size=16, order=2)
    assert cube.shape == (16, 16, 16) and cube.dtype == np.float32
    for corner in [(0, 0, 0), (-1, -1, -1), (0, -1, 0)]:
        assert cube[corner] == pytest.approx(volume[corner], abs=1e-5)
    labels = rng.integers(0, 3, (9, 20, 5)).astype(np.uint8)
    assert set(np.unique(resample_to_cube(labels, size=16, order=0))) <= {0.0, 1.0, 2.0}


LANDMARKS = {  # RAS index of a blob at the patient's right / anterior / superior side
    "right": (slice(8, 10), slice(5, 7), slice(6, 8)),
    "anterior": (slice(4, 6), slice(10, 12), slice(6, 8)),
    "superior": (slice(4, 6), slice(5, 7), slice(12, 14)),
}


def _scan_with_landmark(axcodes: str, landmark: str) -> Scan:
    """One blob (bright FLAIR, mask 1) at a landmark, stored with the given axis codes."""
    shape = (10, 12, 14)
    mask = np.zeros(shape, np.uint8)
    mask[LANDMARKS[landmark]] = 1
    reference = nib.Nifti1Image(mask * np.float32(5), oriented_affine("RAS", shape=shape))
    labels = nib.Nifti1Image(mask, reference.affine)
    change = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                             nib.orientations.axcodes2ornt(tuple(axcodes)))
    image = reference.as_reoriented(change)
    stored_mask = np.asarray(labels.as_reoriented(change).dataobj)
    geometry = Geometry.from_affine(image.shape, image.affine)
    record = ScanRecord(axcodes, None, None, None)
    return Scan(record, image.get_fdata(dtype=np.float32), stored_mask, geometry)


@pytest.mark.parametrize("landmark", ["right", "anterior", "superior"])
@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SPL", "IRA", "LAS"])
def test_cube_axes_are_right_anterior_superior(axcodes, landmark):
    """Axis 0 runs left -> right, so slabs are stacks of sagittal slices, whatever the storage."""
    scan = _scan_with_landmark(axcodes, landmark)
    flair_before, mask_before = scan.flair.copy(), scan.mask.copy()
    cube = preprocess_scan(scan, PipelineConfig(size=32))
    axis = list(LANDMARKS).index(landmark)
    for found in (np.argwhere(cube.mask), np.argwhere(cube.flair == cube.flair.max())):
        centroid = found.mean(axis=0)
        assert centroid[axis] > 24
        assert all(4 < centroid[other] < 24 for other in range(3) if other != axis)
    assert cube.flair.dtype == np.float32 and cube.flair.min() == -1 and cube.flair.max() == 1
    assert cube.mask.dtype == np.uint8 and set(np.unique(cube.mask)) == {0, 1}
    np.testing.assert_array_equal(scan.flair, flair_before)
    np.testing.assert_array_equal(scan.mask, mask_before)


def test_linear_mask_resampling_stays_binary():
    scan = _scan_with_landmark("LPS", "right")
    cube = preprocess_scan(scan, PipelineConfig(size=32, mask_order=1))
    assert cube.mask.dtype == np.uint8 and set(np.unique(cube.mask)) == {0, 1}

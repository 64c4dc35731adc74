"""Preprocessing into the working space: the paper's cube (axes, labels, corners) and the
spacing recipe (planar axis along the thickest, slices kept), on synthetic and real scans."""

import nibabel as nib
import numpy as np
import pytest
from msseg.config import PipelineConfig
from msseg.data.preprocess import preprocess_scan
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry
from msseg.recipes.paper import resample_to_cube
from msseg_helpers import oriented_affine


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
    cube = preprocess_scan(scan, PipelineConfig(volume_size=32))
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
    cube = preprocess_scan(scan, PipelineConfig(volume_size=32, mask_order=1))
    assert cube.mask.dtype == np.uint8 and set(np.unique(cube.mask)) == {0, 1}


def _anisotropic_scan(axcodes: str) -> Scan:
    """A 0.8 x 0.8 x 3 mm scan (10 thick axial slices) with a blob at the patient's right,
    stored with the given axis codes."""
    shape, voxel = (20, 24, 10), (0.8, 0.8, 3.0)
    flair = np.zeros(shape, np.float32)
    flair[14:17, 10:13, 4:6] = 5.0
    reference = nib.Nifti1Image(flair, oriented_affine("RAS", voxel, shape))
    change = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                             nib.orientations.axcodes2ornt(tuple(axcodes)))
    image = reference.as_reoriented(change)
    data = image.get_fdata(dtype=np.float32)
    return Scan(ScanRecord(axcodes, None, None, None), data, (data > 0).astype(np.uint8),
                Geometry.from_affine(image.shape, image.affine))


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SPL", "IRA"])
def test_the_spacing_recipe_slices_along_the_thickest_axis_and_keeps_its_slices(axcodes):
    scan = _anisotropic_scan(axcodes)
    working = preprocess_scan(scan, PipelineConfig(recipe="spacing", spacing_mm=0.8))
    assert working.flair.shape == (10, 20, 24)  # S (10 slices of 3 mm), then R, then A
    assert working.grid.axes == (2, 0, 1)
    blob = np.argwhere(working.mask).mean(axis=0)
    np.testing.assert_allclose(blob, [4.5, 15, 11])
    coarse = preprocess_scan(scan, PipelineConfig(recipe="spacing", spacing_mm=1.6))
    assert coarse.flair.shape == (10, 10, 12)  # slices never interpolated, planes halved
    finer = preprocess_scan(scan, PipelineConfig(recipe="spacing", spacing_mm=4.0))
    assert finer.flair.shape[0] == 8  # slices finer than the target (3 < 4 mm) are resampled


def test_an_isotropic_scan_keeps_the_papers_sagittal_axis_first():
    scan = _scan_with_landmark("LPS", "right")
    working = preprocess_scan(scan, PipelineConfig(recipe="spacing", spacing_mm=1.0))
    assert working.grid.axes == (0, 1, 2) and working.flair.shape == (10, 12, 14)
    np.testing.assert_array_equal(working.mask, scan.geometry.to_canonical(scan.mask))

"""Back to native space: round-trip Dice per centre geometry (property 2), storage-order
invariance (property 3), and the arrays that get written."""

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from msseg.config import PAPER_THRESHOLD, PipelineConfig
from msseg.data.native import prediction_to_native, probability_to_native, to_native
from msseg.data.preprocess import preprocess_scan, resample_to_cube
from msseg.data.slabs import make_slabs
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan, save_nifti
from msseg.io.orientation import Geometry
from msseg.phantom.anatomy import sample_head
from msseg.phantom.generate import CENTRES, make_patient, scaled_grid
from msseg.phantom.grid import VoxelGrid
from msseg.phantom.lesions import add_lesions
from msseg_helpers import blob_scan, oriented_affine, save
from nibabel.orientations import axcodes2ornt, ornt_transform


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * float(np.sum(a & b)) / float(a.sum() + b.sum())


def round_trip(mask: np.ndarray, geometry: Geometry, size: int) -> tuple[float, float]:
    """Dice after native -> cube -> native for (probability-map, binary-decision) predictions.

    The probability map is the mask resampled linearly into the cube (what an ideal model
    predicts: soft at boundaries); the binary decision is the cube mask of the pipeline
    (order 0, the training target), sent back as a bool map.
    """
    canonical = geometry.to_canonical(mask)
    soft = resample_to_cube(canonical.astype(np.float32), size=size, order=1)
    hard = resample_to_cube(canonical, size=size, order=0) >= 0.5
    from_soft = prediction_to_native(soft, geometry, threshold=0.5)
    from_hard = prediction_to_native(hard, geometry)
    return dice(from_soft, mask), dice(from_hard, mask)


def cropped_centre(code: str, seed: int = 0):
    """A centre's voxel size, orientation and obliquity on a quarter of its field of view,
    around the ventricles, with phantom lesions at their real size (in mm)."""
    spec = CENTRES[code]
    shape = tuple(round(n / 4) for n in spec.shape)
    spec = dataclasses.replace(spec, shape=shape, fov_centre_mm=(0.0, 0.0, 5.0))
    shape, affine = scaled_grid(spec, 1.0)
    rng = np.random.default_rng(seed)
    grid = VoxelGrid(shape, affine)
    mask = add_lesions(np.zeros(shape, np.float32), np.ones(shape, np.float32), grid,
                       sample_head(rng), rng, ratio=0.01)
    return mask, Geometry.from_affine(shape, affine)


@pytest.mark.parametrize("code", sorted(CENTRES))
def test_property_2_round_trip_dice_per_centre_geometry(code):
    """Quarter field of view and S = 64 keep each centre's native/cube ratios and voxel size."""
    mask, geometry = cropped_centre(code)
    soft, hard = round_trip(mask, geometry, size=64)
    assert soft >= 0.95
    assert hard >= 0.90  # a binary cube has half the in-plane resolution of centre 01


@pytest.mark.slow
@pytest.mark.parametrize("patient", ["01016SACH", "07001MOEL", "08002CHJE"])
def test_property_2_round_trip_dice_full_size_phantom(patient):
    _, mask, geometry = make_patient(patient, scale=1.0)
    assert 0.001 <= mask.mean() <= 0.003
    soft, hard = round_trip(mask, geometry, size=256)
    assert soft >= 0.95
    assert hard >= 0.90


@pytest.fixture
def stored_variants(tmp_path):
    """One scan written in four storage orders: RAS, LPS, and two axis permutations."""
    flair, mask = blob_scan(shape=(11, 14, 9), seed=3)
    reference = nib.Nifti1Image(flair, oriented_affine("RAS", (1.0, 0.8, 1.3), flair.shape))
    reference_mask = nib.Nifti1Image(mask, reference.affine)
    records = {}
    for codes in ("RAS", "LPS", "SPL", "AIR"):
        change = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))
        image, labels = reference.as_reoriented(change), reference_mask.as_reoriented(change)
        assert "".join(nib.aff2axcodes(image.affine)) == codes
        folder = tmp_path / codes
        records[codes] = ScanRecord(
            codes, None,
            save(folder / "flair.nii.gz", image.get_fdata(dtype=np.float32), image.affine),
            save(folder / "mask.nii.gz", np.asarray(labels.dataobj), image.affine),
        )
    return records


def test_property_3_storage_order_changes_nothing(stored_variants, tmp_path):
    config = PipelineConfig(size=16)
    cubes = {c: preprocess_scan(load_scan(r), config) for c, r in stored_variants.items()}
    reference = cubes["RAS"]
    prediction = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    world = {}
    for codes, cube in cubes.items():
        np.testing.assert_array_equal(cube.flair, reference.flair)
        np.testing.assert_array_equal(cube.mask, reference.mask)
        np.testing.assert_array_equal(make_slabs(cube.flair, slab=4, step=2),
                                      make_slabs(reference.flair, slab=4, step=2))
        path = save_nifti(prediction_to_native(prediction, cube.geometry), cube.geometry,
                          tmp_path / "out" / f"{codes}.nii.gz")
        written = nib.load(path)
        voxels = np.argwhere(np.asarray(written.dataobj) > 0)
        world[codes] = {tuple(p) for p in np.round(nib.affines.apply_affine(written.affine,
                                                                             voxels), 6)}
        np.testing.assert_array_equal(
            cube.geometry.to_canonical(np.asarray(written.dataobj)),
            reference.geometry.to_canonical(prediction_to_native(prediction, reference.geometry)),
        )
    assert len(world["RAS"]) > 100
    assert world["LPS"] == world["RAS"] == world["SPL"] == world["AIR"]


def test_written_mask_overlays_the_flair(msseg_root, tmp_path):
    record = ScanRecord("07001MOEL", "07", msseg_root / "07001MOEL" / "3DFLAIR.nii.gz",
                        msseg_root / "07001MOEL" / "Consensus.nii.gz")
    scan = load_scan(record)
    cube = preprocess_scan(scan, PipelineConfig(size=32))
    out = save_nifti(prediction_to_native(cube.mask.astype(bool), cube.geometry), cube.geometry,
                     tmp_path / "p" / "m.nii.gz")
    written, flair = nib.load(out), nib.load(record.flair)
    assert written.shape == flair.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, flair.affine)
    for name in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                 "qoffset_x", "srow_x", "srow_y", "srow_z", "pixdim"):
        np.testing.assert_array_equal(written.header[name], flair.header[name])
    assert dice(np.asarray(written.dataobj), scan.mask) == 1.0


def test_probability_map_and_mask_in_native_space(msseg_root):
    record = ScanRecord("01016SACH", "01", msseg_root / "01016SACH" / "3DFLAIR.nii.gz", None)
    geometry = load_scan(record).geometry
    prediction = to_native(np.full((16, 16, 16), 0.25, np.float32), geometry)
    assert prediction.probability.shape == geometry.shape
    assert prediction.probability.dtype == np.float32 and prediction.mask.dtype == np.uint8
    np.testing.assert_allclose(prediction.probability, 0.25, atol=1e-6)
    assert prediction.mask.min() == 1  # 0.25 >= 16/256
    assert to_native(np.full((16, 16, 16), 0.25, np.float32), geometry,
                     threshold=0.5).mask.max() == 0
    with pytest.raises(ValueError, match="needs a float probability map"):
        to_native(np.ones((16, 16, 16), bool), geometry)


def test_threshold_is_applied_after_resampling():
    geometry = Geometry.from_affine((4, 1, 1), np.diag([1.0, 1.0, 1.0, 1.0]))
    cube = np.zeros((3, 3, 3), np.float32)
    cube[1], cube[2] = 0.5, 1.0  # native x = 0, 1, 2, 3 sits at cube x = 0, 2/3, 4/3, 2
    native = probability_to_native(cube, geometry)
    np.testing.assert_allclose(native[:, 0, 0], [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    assert prediction_to_native(cube, geometry)[:, 0, 0].tolist() == [0, 1, 1, 1]
    assert prediction_to_native(cube, geometry, threshold=0.5)[:, 0, 0].tolist() == [0, 0, 1, 1]
    assert prediction_to_native(cube > 0.25, geometry)[:, 0, 0].tolist() == [0, 1, 1, 1]
    assert PAPER_THRESHOLD == 0.0625


@pytest.mark.parametrize(
    ("prediction", "threshold", "message"),
    [
        (np.zeros((4, 4, 4), bool), 0.5, "already a decision"),
        (np.zeros((4, 4, 4), np.uint8), None, "dtype uint8 is ambiguous"),
        (np.zeros((4, 4, 4), np.float32), 1.5, r"threshold must be in \(0, 1\]; found 1.5"),
        (np.zeros((4, 4, 5), np.float32), None, r"expected a cube prediction \(S, S, S\)"),
        (np.full((4, 4, 4), np.nan, np.float32), None, "NaN"),
    ],
)
def test_bad_predictions_are_rejected(prediction, threshold, message):
    geometry = Geometry.from_affine((5, 5, 5), np.eye(4))
    with pytest.raises(ValueError, match=message):
        prediction_to_native(prediction, geometry, threshold=threshold)

"""The synthetic MSSEG phantom: layout, centre geometries, lesion load, tissue contrast."""

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
from msseg.io.discovery import MSSEG_PATIENTS, find_msseg_scans
from msseg.io.nifti import load_scan
from msseg.phantom.anatomy import TISSUE, render_head, sample_head
from msseg.phantom.generate import CENTRES, make_patient, scaled_grid, write_phantom
from msseg.phantom.grid import VoxelGrid
from msseg.phantom.lesions import sample_lesion


def test_layout_has_the_15_msseg_patients(phantom_dir):
    records = find_msseg_scans(phantom_dir)
    assert tuple(r.patient_id for r in records) == MSSEG_PATIENTS
    assert sorted(p.name for p in phantom_dir.iterdir()) == sorted([*MSSEG_PATIENTS,
                                                                     "phantom.json"])
    for patient in MSSEG_PATIENTS:
        assert sorted(p.name for p in (phantom_dir / patient).iterdir()) == [
            "3DFLAIR.nii.gz", "Consensus.nii.gz"]
    assert json.loads((phantom_dir / "phantom.json").read_text())["scale"] == 0.2


@pytest.mark.parametrize(
    ("centre", "shape", "voxel", "axcodes", "dtype"),
    [
        ("01", (29, 102, 102), (5.96, 2.51, 2.51), "LAS", np.int16),
        ("07", (26, 45, 51), (5.91, 4.48, 4.52), "IRA", np.uint16),
        ("08", (52, 67, 67), (3.51, 3.51, 3.51), "SPL", np.float32),
    ],
)
def test_centre_geometry_and_storage(phantom_dir, centre, shape, voxel, axcodes, dtype):
    for record in find_msseg_scans(phantom_dir):
        if record.centre != centre:
            continue
        image = nib.load(record.flair)
        assert image.shape == shape and image.get_data_dtype() == dtype
        np.testing.assert_allclose(image.header.get_zooms(), voxel, atol=0.01)
        assert "".join(nib.aff2axcodes(image.affine)) == axcodes
        scan = load_scan(record)  # passes every validation
        ratio = scan.mask.mean()
        assert 0.001 <= ratio <= 0.003


def test_full_size_grids_are_the_table_sizes():
    fov = {}
    for code, spec in CENTRES.items():
        shape, affine = scaled_grid(spec, 1.0)
        assert shape == spec.shape
        fov[code] = np.array(shape) * np.linalg.norm(affine[:3, :3], axis=0)
    assert (scaled_grid(CENTRES["01"], 0.25)[0], scaled_grid(CENTRES["08"], 0.25)[0]) == (
        (36, 128, 128), (65, 84, 84))
    np.testing.assert_allclose(fov["01"], [172.8, 256, 256])
    with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
        scaled_grid(CENTRES["07"], 1.5)


def test_lesion_load_per_centre(phantom_dir):
    ratios = {}
    for record in find_msseg_scans(phantom_dir):
        ratios.setdefault(record.centre, []).append(load_scan(record).mask.mean())
    assert 0.0022 < np.mean(ratios["01"]) < 0.003
    assert 0.0011 < np.mean(ratios["07"]) < 0.0018
    assert 0.0011 < np.mean(ratios["08"]) < 0.0018


def test_patients_are_reproducible_and_seeded():
    first = make_patient("07003SATH", scale=0.15, seed=4)
    again = make_patient("07003SATH", scale=0.15, seed=4)
    other = make_patient("07003SATH", scale=0.15, seed=5)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    with pytest.raises(ValueError, match="no phantom centre '09'"):
        make_patient("09001XXXX")


def _value_at(head, point):
    """Noiseless intensity at one head-frame point (a 1-voxel grid of 1 mm)."""
    affine = np.eye(4)
    affine[:3, 3] = point
    image, _ = render_head(VoxelGrid((1, 1, 1), affine), head)
    return float(image[0, 0, 0])


def test_tissue_contrast_is_flair_like():
    head = sample_head(np.random.default_rng(0))
    head = dataclasses.replace(head, shape_waves=np.zeros((1, 4)))  # smooth shells
    top = head.cerebrum.centre[2] + head.cerebrum.semi_axes[2]
    assert _value_at(head, (0, 0, top + 10.5)) == pytest.approx(TISSUE["fat"])
    assert _value_at(head, (0, 0, top + 5.5)) == pytest.approx(TISSUE["diploe"])
    assert _value_at(head, (0, 0, top + 3.5)) == pytest.approx(TISSUE["bone"])
    assert _value_at(head, (0, 0, top + 1.2)) == pytest.approx(TISSUE["csf"])
    assert _value_at(head, (0, 0, 200)) == 0.0
    assert _value_at(head, head.lateral_ventricles[1].centre) == pytest.approx(TISSUE["csf"])
    deep_white = head.cerebrum.semi_axes * [0.53, -0.12, 0.44]
    assert _value_at(head, deep_white) == pytest.approx(TISSUE["wm"], abs=0.02)
    assert TISSUE["csf"] < TISSUE["wm"] < TISSUE["gm"] < TISSUE["fat"]


def test_lesions_are_mostly_periventricular_or_juxtacortical():
    rng = np.random.default_rng(1)
    head = sample_head(rng)
    near_ventricle = near_cortex = 0
    for _ in range(1000):
        centre = sample_lesion(rng, head, min_semi_axis=0.5).shape.centre.astype(np.float32)
        if min(float(v.distance(*centre)) for v in head.ventricles) < 8:
            near_ventricle += 1
        elif float(head.cerebrum.distance(*centre)) > -12:
            near_cortex += 1
    assert near_ventricle > 450 and near_cortex > 200


def test_bright_distractors_outnumber_lesions(phantom_dir):
    """Scalp fat and flow artefacts: many more non-lesion voxels are as bright as lesions."""
    for record in find_msseg_scans(phantom_dir)[::5]:
        scan = load_scan(record)
        lesion = scan.mask.astype(bool)
        median = np.median(scan.flair[lesion])
        assert np.sum(scan.flair[~lesion] >= median) > 10 * np.sum(lesion)


def test_writing_is_atomic(tmp_path, monkeypatch):
    from msseg.phantom import generate as phantom

    def failing(*args, **kwargs):
        raise RuntimeError("generator crashed")

    monkeypatch.setattr(phantom, "make_patient", failing)
    with pytest.raises(RuntimeError):
        write_phantom(tmp_path / "out", scale=0.1, progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.gz"))

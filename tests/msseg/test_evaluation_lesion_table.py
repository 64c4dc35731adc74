"""The lesion table: lesions by the metrics' labelling rule, numbered from the largest, with
volumes in mL on the scan's own grid (isotropic, anisotropic, oblique), centroids in scanner mm,
boxes and probabilities, on synthetic masks whose answers are known."""

import csv
import io
import math
from dataclasses import replace

import numpy as np
import pytest
from msseg.evaluation.lesion_table import (
    ScanSummary,
    analyse_lesions,
    lesion_table_csv,
    read_lesion_table,
    read_summary,
    summary_csv,
    voxel_ml,
)
from msseg.evaluation.lesions import label_lesions
from msseg.io.orientation import Geometry


def _rotation(degrees_about_z: float, degrees_about_x: float) -> np.ndarray:
    a, b = np.radians(degrees_about_z), np.radians(degrees_about_x)
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return about_z @ about_x


def _grid(shape, voxel_mm, rotation=None, origin=(0.0, 0.0, 0.0)) -> Geometry:
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3) if rotation is None else rotation) @ np.diag(voxel_mm)
    affine[:3, 3] = origin
    return Geometry.from_affine(shape, affine)


def _ball(geometry: Geometry, centre_mm, radius_mm) -> np.ndarray:
    """The voxels of `geometry` whose centres lie within `radius_mm` of a world point."""
    index = np.indices(geometry.shape).reshape(3, -1)
    world = geometry.affine[:3, :3] @ index + geometry.affine[:3, 3:4]
    inside = np.linalg.norm(world - np.asarray(centre_mm, float)[:, None], axis=0) <= radius_mm
    return inside.reshape(geometry.shape)


def test_lesions_are_numbered_from_the_largest_and_follow_the_connectivity():
    geometry = _grid((9, 9, 9), (1.0, 1.0, 1.0))
    mask = np.zeros(geometry.shape, np.uint8)
    mask[0, 0, 0:4] = 1  # 4 voxels, first in the array
    mask[2:4, 2:4, 2:4] = 1  # 8 voxels
    mask[5, 5, 5:8] = mask[6, 6, 7] = 1  # 3 voxels, and 1 joined to them by an edge only
    mask[8, 0, 0:4] = 1  # 4 voxels, last in the array
    analysis = analyse_lesions(mask, geometry, min_lesion_mm3=0)
    assert [lesion.voxels for lesion in analysis.lesions] == [8, 4, 4, 3, 1]
    labels = analysis.labels
    assert (labels[2, 2, 2], labels[0, 0, 0], labels[8, 0, 0], labels[5, 5, 5]) == (1, 2, 3, 4)
    assert analysis.connectivity == 6  # the metrics' rule: faces only
    assert [lesion.voxels for lesion in analyse_lesions(
        mask, geometry, min_lesion_mm3=0, connectivity=18).lesions] == [8, 4, 4, 4]
    assert analyse_lesions(mask, geometry).count == 3  # 3 mm³ or less: not a lesion
    with pytest.raises(ValueError, match="connectivity must be one of"):
        analyse_lesions(mask, geometry, connectivity=8)


def test_the_table_labels_what_the_evaluation_labels():
    """predict and evaluate agree: the lesion map holds the lesions of the one labelling rule,
    with its defaults."""
    geometry = _grid((12, 12, 12), (1.0, 1.0, 2.0))
    rng = np.random.default_rng(3)
    mask = rng.random(geometry.shape) > 0.8
    analysis = analyse_lesions(mask, geometry)
    labels, count = label_lesions(mask, voxel_mm3=2.0)
    assert analysis.count == count > 3
    assert np.array_equal(analysis.labels > 0, labels > 0)
    assert sorted(lesion.voxels for lesion in analysis.lesions) == sorted(
        np.bincount(labels.ravel())[1:].tolist())


@pytest.mark.parametrize("voxel, rotation", [
    ((1.0, 1.0, 1.0), np.eye(3)),
    ((0.45, 0.45, 3.0), np.eye(3)),  # a thick-slice clinical grid
    ((0.7, 0.9, 1.6), _rotation(26.0, 14.0)),  # anisotropic and oblique
])
def test_volumes_come_from_the_scans_own_grid(voxel, rotation):
    """A 10 mm ball (4.189 mL) and a 6 mm one (0.905 mL), sampled on each grid, measure their
    true volume within the sampling error; the voxel volume is the affine's determinant."""
    geometry = _grid((90, 90, 36) if voxel[2] > 2 else (60, 60, 60), voxel, rotation,
                     origin=(-30.0, -25.0, -20.0))
    centre = geometry.affine[:3, :3] @ (np.array(geometry.shape) / 2) + geometry.affine[:3, 3]
    big, small = centre + rotation @ (-12.0, 0.0, 0.0), centre + rotation @ (13.0, 4.0, 0.0)
    mask = _ball(geometry, big, 10.0) | _ball(geometry, small, 6.0)
    analysis = analyse_lesions(mask, geometry)
    assert analysis.voxel_ml == pytest.approx(np.prod(voxel) / 1000)
    assert analysis.count == 2
    first, second = analysis.lesions
    assert first.volume_ml == pytest.approx(4 / 3 * math.pi * 10**3 / 1000, rel=0.05)
    assert second.volume_ml == pytest.approx(4 / 3 * math.pi * 6**3 / 1000, rel=0.12)
    assert first.volume_ml == pytest.approx(first.voxels * np.prod(voxel) / 1000, rel=1e-12)
    assert analysis.total_ml == pytest.approx(first.volume_ml + second.volume_ml)
    # the centroid in scanner mm is the ball's centre, whatever the grid
    assert (first.x_mm, first.y_mm, first.z_mm) == pytest.approx(tuple(big), abs=0.25)
    assert (second.x_mm, second.y_mm, second.z_mm) == pytest.approx(tuple(small), abs=0.25)


def test_centroid_box_and_probabilities_of_one_lesion():
    geometry = _grid((10, 12, 8), (2.0, 1.0, 3.0), origin=(100.0, -50.0, 7.0))
    mask = np.zeros(geometry.shape, np.uint8)
    mask[2:5, 3:5, 1:3] = 1  # 3 x 2 x 2 = 12 voxels of 6 mm³
    probability = np.zeros(geometry.shape, np.float32)
    probability[2:5, 3:5, 1:3] = np.linspace(0.5, 0.9, 12, dtype=np.float32).reshape(3, 2, 2)
    (lesion,) = analyse_lesions(mask, geometry, probability=probability).lesions
    assert (lesion.voxels, lesion.volume_ml) == (12, pytest.approx(0.072))
    assert (lesion.i, lesion.j, lesion.k) == pytest.approx((3.0, 3.5, 1.5))
    assert (lesion.x_mm, lesion.y_mm, lesion.z_mm) == pytest.approx((106.0, -46.5, 11.5))
    assert (lesion.i_first, lesion.i_last, lesion.j_first, lesion.j_last, lesion.k_first,
            lesion.k_last) == (2, 4, 3, 4, 1, 2)
    assert lesion.mean_probability == pytest.approx(0.7, abs=1e-6)
    assert lesion.max_probability == pytest.approx(0.9, abs=1e-6)


def test_the_table_and_the_summary_as_csv():
    geometry = _grid((8, 8, 8), (1.0, 1.0, 2.0))
    mask = np.zeros(geometry.shape, np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[5, 5, 5:7] = 1
    analysis = analyse_lesions(mask, geometry)
    rows = list(csv.DictReader(io.StringIO(lesion_table_csv(analysis.lesions))))
    assert [(r["label"], r["voxels"], r["volume_ml"]) for r in rows] == [
        ("1", "8", "0.0160"), ("2", "2", "0.0040")]
    assert rows[0]["mean_probability"] == "nan"  # no probability map given
    assert read_lesion_table(lesion_table_csv(analysis.lesions))[0] == replace(
        analysis.lesions[0], volume_ml=0.016, mean_probability=pytest.approx(math.nan,
                                                                              nan_ok=True),
        max_probability=pytest.approx(math.nan, nan_ok=True))
    summary = ScanSummary.of("01016SACH", "in/a.nii.gz", analysis, geometry, model="best.pt",
                             recipe="spacing, 1 mm in-plane", warnings=("oblique", "dim"))
    text = summary_csv([summary])
    (row,) = csv.DictReader(io.StringIO(text))
    assert row == {"patient_id": "01016SACH", "flair": "in/a.nii.gz", "lesions": "2",
                   "total_volume_ml": "0.0200", "shape": "8x8x8", "voxel_mm": "1x1x2",
                   "connectivity": "6", "min_lesion_mm3": "3", "model": "best.pt",
                   "recipe": "spacing, 1 mm in-plane", "warnings": "oblique | dim"}
    assert read_summary(text) == [replace(summary, total_volume_ml=0.02)]
    with pytest.raises(ValueError, match=r"not a summary\.csv"):
        read_summary("a,b\n1,2\n")


def test_an_empty_mask_has_no_lesion_and_arrays_are_not_changed():
    geometry = _grid((6, 6, 6), (1.0, 1.0, 1.0))
    mask = np.zeros(geometry.shape, np.uint8)
    probability = np.full(geometry.shape, 0.01, np.float32)
    analysis = analyse_lesions(mask, geometry, probability=probability)
    assert (analysis.count, analysis.total_ml, analysis.labels.any()) == (0, 0.0, False)
    assert lesion_table_csv(analysis.lesions).count("\n") == 1
    assert not mask.any() and (probability == 0.01).all()
    assert analysis.map_array().dtype == np.uint8
    with pytest.raises(ValueError, match="scan's grid"):
        analyse_lesions(np.zeros((5, 6, 6)), geometry)


def test_voxel_volume_of_an_oblique_affine_is_its_determinant():
    affine = np.eye(4)
    affine[:3, :3] = _rotation(40.0, -25.0) @ np.diag((0.5, 0.5, 4.0))
    assert voxel_ml(affine) == pytest.approx(0.001)

"""Canonical frame from the affine and its exact inverse."""

import itertools

import nibabel as nib
import numpy as np
import pytest
from msseg.io.orientation import Geometry, canonical_ornt
from msseg_helpers import oriented_affine

ALL_AXCODES = [
    "".join(pair[sign] for pair, sign in zip(pairs, signs, strict=True))
    for pairs in itertools.permutations([("R", "L"), ("A", "P"), ("S", "I")])
    for signs in itertools.product((0, 1), repeat=3)
]


def test_there_are_48_storage_orientations():
    assert len(set(ALL_AXCODES)) == 48


@pytest.mark.parametrize("axcodes", ALL_AXCODES)
def test_canonical_is_nibabel_closest_canonical_and_inverse_is_exact(axcodes):
    shape = (3, 4, 5)
    volume = np.random.default_rng(0).random(shape).astype(np.float32)
    affine = oriented_affine(axcodes, voxel_mm=(1.1, 0.9, 1.3), shape=shape)
    geometry = Geometry.from_affine(shape, affine)
    canonical = geometry.to_canonical(volume)
    reference = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))
    np.testing.assert_array_equal(canonical, reference.get_fdata(dtype=np.float32))
    assert nib.aff2axcodes(reference.affine) == ("R", "A", "S")
    assert canonical.shape == geometry.canonical_shape
    back = geometry.from_canonical(canonical)
    np.testing.assert_array_equal(back, volume)
    assert back.flags.c_contiguous and not np.shares_memory(back, canonical)


def test_oblique_affine_goes_to_the_closest_axes():
    tilt = np.radians(20)
    rotation = np.array([[np.cos(tilt), -np.sin(tilt), 0], [np.sin(tilt), np.cos(tilt), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ oriented_affine("SPL")[:3, :3]
    ornt = canonical_ornt(affine)
    np.testing.assert_array_equal(ornt, [[2, 1], [1, -1], [0, -1]])


def test_to_canonical_does_not_alias_or_modify_input():
    volume = np.arange(24.0).reshape(2, 3, 4)
    geometry = Geometry.from_affine((2, 3, 4), np.eye(4))
    out = geometry.to_canonical(volume)
    out[:] = -1
    assert volume[1, 2, 3] == 23


def test_geometry_json_round_trip_is_exact():
    affine = oriented_affine("IRA", voxel_mm=(1.2, 0.9, 0.9), shape=(5, 6, 7))
    qform = affine.copy()
    qform[0, 3] += 0.25
    geometry = Geometry((5, 6, 7), affine, qform, 2, affine, 1)
    restored = Geometry.from_json(geometry.to_json())
    assert restored.same_as(geometry)
    assert restored.canonical_shape == (6, 7, 5)
    assert not restored.same_as(Geometry.from_affine((5, 6, 7), affine))


@pytest.mark.parametrize(
    ("affine", "message"),
    [
        (np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
        (np.full((4, 4), np.nan), "finite"),
        (np.eye(3), r"shape \(3, 3\)"),
    ],
)
def test_unusable_affines_are_rejected(affine, message):
    with pytest.raises(ValueError, match=message):
        canonical_ornt(affine)


def test_shape_mismatch_is_rejected():
    geometry = Geometry.from_affine((2, 3, 4), oriented_affine("SPL"))
    with pytest.raises(ValueError, match=r"canonical-frame array of shape \(4, 3, 2\)"):
        geometry.from_canonical(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"stored-frame array of shape \(2, 3, 4\)"):
        geometry.to_canonical(np.zeros((4, 3, 2)))

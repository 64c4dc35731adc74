"""Lesions as connected components, and the MSSEG-2016 detection rule (Commowick et al., Sci Rep
2018): a lesion counts as detected only by components that cover enough of it and do not mostly
lie outside the other mask. The blob, the split lesion and the merged lesions, by hand."""

import numpy as np
import pytest
from msseg.evaluation.lesions import (
    LESION_CONNECTIVITY,
    MAX_OUTSIDE,
    MIN_LESION_MM3,
    MIN_OVERLAP,
    MODERATOR,
    detect_lesions,
    label_lesions,
    min_lesion_voxels,
    voxel_mm3,
)

SHAPE = (20, 20, 20)


def _boxes(*boxes):
    mask = np.zeros(SHAPE, bool)
    for box in boxes:
        mask[tuple(slice(a, b) for a, b in box)] = True
    return mask


CUBE_A = ((2, 5), (2, 5), (2, 5))  # 27 voxels
CUBE_B = ((7, 10), (2, 5), (2, 5))  # 27 voxels, 2 voxels from A along axis 0
CUBE_C = ((12, 15), (12, 15), (12, 15))


def _counts(pred, truth, **options):
    counts = detect_lesions(pred, truth, **options)
    return (counts.true_lesions, counts.predicted_lesions, counts.detected, counts.false)


def test_the_rules_parameters_are_the_challenge_tools_defaults():
    assert (MIN_OVERLAP, MAX_OUTSIDE, MODERATOR, MIN_LESION_MM3) == (0.1, 0.7, 0.65, 3.0)
    assert LESION_CONNECTIVITY == 1  # face neighbours only: 6 in 3D


def test_a_blob_over_every_lesion_detects_none_and_is_one_false_lesion():
    truth = _boxes(CUBE_A, CUBE_B, CUBE_C)
    blob = _boxes(((1, 19), (1, 19), (1, 19)))  # 5,832 voxels, 81 of them lesion
    assert _counts(blob, truth) == (3, 1, 0, 1)


def test_a_lesion_split_in_two_is_detected_and_both_parts_are_true():
    truth = _boxes(((2, 8), (2, 5), (2, 5)))  # one lesion of 54 voxels
    halves = _boxes(((2, 4), (2, 5), (2, 5)), ((5, 8), (2, 5), (2, 5)))  # a gap at 4
    assert _counts(halves, truth) == (1, 2, 1, 0)


def test_lesions_merged_by_one_component_are_both_detected():
    truth = _boxes(CUBE_A, CUBE_B)
    merged = _boxes(((2, 10), (2, 5), (2, 5)))  # both cubes and the 18 voxels between them
    assert _counts(merged, truth) == (2, 1, 2, 0)


def test_a_component_mostly_outside_the_lesion_does_not_detect_it():
    truth = _boxes(CUBE_A)
    spill = _boxes(((2, 5), (2, 5), (2, 5)), ((5, 19), (2, 5), (2, 5)))  # 27 in, 126 out: 82 %
    assert _counts(spill, truth) == (1, 1, 0, 0)  # the lesion lies inside it: a true component
    inside = _boxes(((2, 5), (2, 5), (2, 5)), ((5, 11), (2, 5), (2, 5)))  # 54 out of 81: 67 %
    assert _counts(inside, truth) == (1, 1, 1, 0)


def test_covering_a_tenth_of_a_lesion_is_no_detection_and_the_rule_is_symmetric():
    """A component inside a large lesion covers 10 % of it (no detection) or 20 % (detected);
    either way 80 % or more of the lesion lies outside the component, so by the same rule with
    the roles swapped the component is a false lesion."""
    truth = _boxes(((2, 12), (2, 5), (2, 5)))  # 90 voxels
    assert _counts(_boxes(((2, 3), (2, 5), (2, 5))), truth) == (1, 1, 0, 1)  # 9 voxels: 10 %
    assert _counts(_boxes(((2, 4), (2, 5), (2, 5))), truth) == (1, 1, 1, 1)  # 18: 20 %


def test_the_largest_covering_components_decide():
    """The components covering a lesion are checked from the largest overlap down until they
    make up `MODERATOR` of the covered voxels: a small stray one does not spoil a detection,
    a large one does."""
    truth = _boxes(((2, 12), (2, 5), (2, 5)))  # 90 voxels along axis 0
    good = ((2, 9), (2, 5), (2, 5))  # 63 voxels, inside
    stray = ((10, 12), (2, 5), (2, 5)), ((12, 19), (2, 5), (2, 5))  # 18 inside, 63 outside
    assert _counts(_boxes(good, *stray), truth) == (1, 2, 1, 0)
    small_good = ((2, 4), (2, 5), (2, 5))  # 18 voxels inside
    large_stray = ((5, 12), (2, 5), (2, 5)), ((12, 19), (2, 5), (0, 20))  # 63 in, 420 out
    assert _counts(_boxes(small_good, *large_stray), truth) == (1, 2, 0, 0)


def test_corner_contact_is_two_lesions_face_contact_one():
    corner = np.zeros(SHAPE, bool)
    corner[5:7, 5:7, 5:7] = corner[7:9, 7:9, 7:9] = True
    assert label_lesions(corner, voxel_mm3=1.0, min_mm3=0.0)[1] == 2
    face = np.zeros(SHAPE, bool)
    face[5:7, 5:7, 5:7] = face[7:9, 5:7, 5:7] = True
    labels, count = label_lesions(face, voxel_mm3=1.0, min_mm3=0.0)
    assert count == 1 and labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1}


def test_lesions_of_at_most_the_minimum_volume_are_ignored():
    mask = np.zeros(SHAPE, bool)
    mask[1, 1, 1:4] = True  # 3 voxels = 3 mm³ at 1 mm: ignored (the tool keeps larger ones)
    mask[5, 5, 1:5] = True  # 4 voxels: kept
    labels, count = label_lesions(mask, voxel_mm3=1.0)
    assert count == 1 and labels[5, 5, 1] == 1 and labels[1, 1, 1] == 0
    assert label_lesions(mask, voxel_mm3=0.5)[1] == 0  # 1.5 and 2 mm³
    assert label_lesions(mask, voxel_mm3=2.0)[1] == 2  # 6 and 8 mm³
    assert min_lesion_voxels(1.0, 3.0) == 4 and min_lesion_voxels(0.3, 3.0) == 11
    assert min_lesion_voxels(8.0, 3.0) == 1 and min_lesion_voxels(1.0, 0.0) == 1
    assert voxel_mm3(np.diag([-1.2, 0.5, 0.5, 1.0])) == pytest.approx(0.3)


def test_no_lesion_on_either_side():
    empty = np.zeros(SHAPE, bool)
    assert _counts(empty, empty) == (0, 0, 0, 0)
    assert _counts(_boxes(CUBE_A), empty) == (0, 1, 0, 1)
    assert _counts(empty, _boxes(CUBE_A)) == (1, 0, 0, 0)


@pytest.mark.parametrize("name", ["min_overlap", "max_outside", "moderator"])
def test_fractions_outside_zero_to_one_are_refused(name):
    with pytest.raises(ValueError, match=f"{name} must be"):
        detect_lesions(_boxes(CUBE_A), _boxes(CUBE_A), **{name: 1.5})

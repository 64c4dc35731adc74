"""Slabs along the sagittal axis, their tiling rule and their recomposition (paper Eq. 1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msseg.recipes.paper import make_slabs, recompose_slabs
from msseg.slab_geometry import SlabGeometry


def test_paper_geometry_gives_31_slabs():
    assert SlabGeometry(256, slab=16, step=8).count == 31
    assert SlabGeometry(256, slab=16, step=8).starts[-1] == 240
    assert make_slabs(np.zeros((256, 2, 3)), slab=16, step=8).shape == (31, 16, 2, 3)


def test_paper_recomposition_follows_equation_1():
    """S_out = B1[1,12] + B2[5,12] + ... + B30[5,12] + B31[5,16] (1-based, inclusive)."""
    slab_id = np.arange(31)[:, None] * np.ones((1, 16), int)
    local = np.ones((31, 1), int) * np.arange(16)[None, :]
    out = recompose_slabs(np.stack([slab_id, local], axis=-1), step=8, method="paper")
    expected = [(0, j) for j in range(0, 12)]
    expected += [(b, j) for b in range(1, 30) for j in range(4, 12)]
    expected += [(30, j) for j in range(4, 16)]
    assert out.shape == (256, 2)
    assert [tuple(row) for row in out.tolist()] == expected


def test_average_recomposition_is_the_mean_of_overlapping_slabs():
    slabs = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    out = recompose_slabs(slabs, step=2, method="average")  # S = 4 + 4 * 2 = 12
    expected = [0, 0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 4, 4]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_general_paper_margins_for_odd_overlap():
    """slab 5, step 2: margin (5 - 2) // 2 = 1; first keeps [0, 3), middle [1, 3), last [1, 5)."""
    slabs = np.arange(4)[:, None] * np.ones((1, 5), int)  # S = 5 + 3 * 2 = 11
    out = recompose_slabs(slabs, step=2, method="paper")
    assert out.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]


@st.composite
def _tiling(draw):
    slab = draw(st.integers(1, 12))
    step = draw(st.integers(1, slab))
    count = draw(st.integers(1, 6))
    size = slab + (count - 1) * step
    trailing = draw(st.sampled_from([(), (3,), (2, 3)]))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int64]))
    volume = (np.random.default_rng(seed).random((size, *trailing)) * 200).astype(dtype)
    return volume, slab, step


@settings(max_examples=300, deadline=None)
@given(_tiling(), st.sampled_from(["paper", "average"]))
def test_property_1_slabs_then_recompose_is_identity(case, method):
    volume, slab, step = case
    before = volume.copy()
    slabs = make_slabs(volume, slab=slab, step=step)
    count = SlabGeometry(volume.shape[0], slab, step).count
    assert slabs.shape == (count, slab, *volume.shape[1:])
    out = recompose_slabs(slabs, step=step, method=method)
    np.testing.assert_array_equal(volume, before)  # input untouched
    if method == "paper":
        assert out.dtype == volume.dtype
        np.testing.assert_array_equal(out, volume)
    else:
        np.testing.assert_allclose(out, volume, rtol=1e-12, atol=0)


def test_slabs_are_copies():
    volume = np.zeros((24, 2, 2), np.float32)
    slabs = make_slabs(volume, slab=16, step=8)
    slabs[:] = 7
    assert volume.max() == 0


@pytest.mark.parametrize(
    ("size", "slab", "step", "needles"),
    [
        (250, 16, 8, ["size=250", "250 - 16 = 234", "234 % 8 = 2", "size=248 or 256"]),
        (64, 16, 20, ["step=20 is larger than slab=16"]),
        (8, 16, 8, ["slab=16 is larger than the volume (size=8)"]),
        (64, 0, 8, ["slab must be a positive integer; found 0"]),
        (64, 16, 2.5, ["step must be a positive integer; found 2.5"]),
    ],
)
def test_invalid_combinations_name_the_numbers(size, slab, step, needles):
    with pytest.raises(ValueError) as info:
        SlabGeometry(size, slab, step)
    for needle in needles:
        assert needle in str(info.value)


def test_invalid_combination_suggests_valid_steps():
    with pytest.raises(ValueError, match=r"step in \[13, 9, 6, 3\]"):
        make_slabs(np.zeros((250, 1)), slab=16, step=8)


def test_recompose_rejects_bad_inputs():
    with pytest.raises(ValueError, match="method must be one of"):
        recompose_slabs(np.zeros((3, 4)), step=2, method="max")
    with pytest.raises(ValueError, match=r"step=5 is larger than slab=4"):
        recompose_slabs(np.zeros((3, 4)), step=5)
    with pytest.raises(ValueError, match=r"found shape \(3,\)"):
        recompose_slabs(np.zeros(3), step=1)

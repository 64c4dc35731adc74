"""Kernel mappings: shapes, values and the identities they are chosen for."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from planar3d import center_kernel, inflate_kernel, kernel_to_2d, planar_kernel

axes = st.sampled_from(["D", "H", "W"])
kernels = st.tuples(
    st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)
).map(lambda s: torch.randn(*s, generator=torch.Generator().manual_seed(sum(s))))


@given(kernels, axes)
def test_planar_inserts_a_size_one_dim_at_the_axis(w, axis):
    out = planar_kernel(w, axis=axis)
    dim = {"D": 2, "H": 3, "W": 4}[axis]
    assert out.shape[dim] == 1
    assert torch.equal(out.squeeze(dim), w)
    assert torch.equal(kernel_to_2d(out, axis=axis), w)


@given(kernels, axes, st.sampled_from([1, 3, 5]))
def test_center_holds_the_kernel_in_the_middle_plane_only(w, axis, depth):
    out = center_kernel(w, depth=depth, axis=axis)
    dim = {"D": 2, "H": 3, "W": 4}[axis]
    assert out.shape[dim] == depth
    for i in range(depth):
        plane = out.select(dim, i)
        assert torch.equal(plane, w if i == depth // 2 else torch.zeros_like(w))


@given(kernels, axes, st.integers(1, 5))
def test_inflate_sums_back_to_the_2d_kernel(w, axis, depth):
    out = inflate_kernel(w, depth=depth, axis=axis)
    dim = {"D": 2, "H": 3, "W": 4}[axis]
    assert out.shape[dim] == depth
    torch.testing.assert_close(out.sum(dim), w)


def test_inflate_reproduces_2d_response_on_depth_constant_input():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 3, 3, generator=g)
    image = torch.randn(2, 3, 8, 8, generator=g)
    vol = image.unsqueeze(2).expand(2, 3, 7, 8, 8)
    out = F.conv3d(vol, inflate_kernel(w, depth=3), padding=(1, 1, 1))
    want = F.conv2d(image, w, padding=1)
    for d in range(1, 6):  # away from the depth border
        torch.testing.assert_close(out[:, :, d], want, rtol=1e-5, atol=1e-5)


def test_center_rejects_even_depth_with_the_fix():
    with pytest.raises(ValueError, match=r"odd kernel depth.*use 5 or 3"):
        center_kernel(torch.zeros(1, 1, 3, 3), depth=4)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 3), torch.zeros(1, 1, 1, 3, 3), "w"])
def test_non_2d_kernels_are_rejected(bad):
    with pytest.raises(ValueError, match=r"\(O, I, kh, kw\)"):
        planar_kernel(bad)


def test_invalid_axis_names_the_choices():
    with pytest.raises(ValueError, match="'D', 'H' or 'W'"):
        planar_kernel(torch.zeros(1, 1, 3, 3), axis="T")

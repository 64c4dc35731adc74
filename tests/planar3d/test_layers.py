"""Planar layers against their 2D layer applied slice by slice (hypothesis properties)."""

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from p3d_helpers import assert_close, slices
from torch import nn

import planar3d
from planar3d import (
    HeadAdaptiveAvgPool2d,
    HeadAdaptiveMaxPool2d,
    PlanarAdaptiveAvgPool3d,
    PlanarAdaptiveMaxPool3d,
    PlanarAvgPool3d,
    PlanarConv3d,
    PlanarConvTranspose3d,
    PlanarMaxPool3d,
)

AXES = {"D": 2, "H": 3, "W": 4}


def _volume(data, channels: int, axis: int, min_plane: int) -> torch.Tensor:
    shape = [data.draw(st.integers(1, 2), label="n"), channels]
    for dim in (2, 3, 4):
        if dim == axis:
            shape.append(data.draw(st.integers(1, 3), label="slices"))
        else:
            shape.append(data.draw(st.integers(min_plane, min_plane + 4), label=f"size{dim}"))
    seed = data.draw(st.integers(0, 2**16), label="seed")
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _check_slicewise(layer2d: nn.Module, layer3d: nn.Module, x: torch.Tensor, axis: int):
    out = layer3d(x)
    assert out.dim() == 5
    for i, image in enumerate(slices(x, axis)):
        assert_close(out.select(axis, i), layer2d(image), rtol=1e-9)


@given(data=st.data())
def test_planar_conv_equals_conv2d_on_every_slice(data):
    groups = data.draw(st.integers(1, 3), label="groups")
    cin = groups * data.draw(st.integers(1, 2), label="cin/g")
    cout = groups * data.draw(st.integers(1, 2), label="cout/g")
    k = (data.draw(st.integers(1, 4), label="kh"), data.draw(st.integers(1, 4), label="kw"))
    stride = data.draw(st.sampled_from([1, 2, (1, 2), (3, 1)]), label="stride")
    dilation = data.draw(st.sampled_from([1, 2, (2, 1)]), label="dilation")
    padding_choices = [0, 1, (2, 0), "valid"] + (["same"] if stride == 1 else [])
    padding = data.draw(st.sampled_from(padding_choices), label="padding")
    mode = data.draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]), label="mode")
    bias = data.draw(st.booleans(), label="bias")
    axis_name = data.draw(st.sampled_from(list(AXES)), label="axis")
    axis = AXES[axis_name]
    conv2d = _randomize(nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias, mode,
                                  dtype=torch.float64), data.draw(st.integers(0, 99)))
    reach = max(d * (kk - 1) + 1 for d, kk in zip(nn.modules.utils._pair(dilation), k))
    x = _volume(data, cin, axis, min_plane=reach + 2)
    conv3d = PlanarConv3d.from_2d(conv2d, axis=axis_name)
    assert isinstance(conv3d, nn.Conv3d)
    assert conv3d.weight.shape[axis] == 1 and conv3d.kernel_size[axis - 2] == 1
    _check_slicewise(conv2d, conv3d, x, axis)
    if mode == "zeros":  # it is a genuine Conv3d: torch's own 3D forward agrees
        assert_close(conv3d(x), nn.Conv3d.forward(conv3d, x), rtol=1e-9)


@given(data=st.data())
def test_planar_conv_transpose_equals_conv_transpose2d_on_every_slice(data):
    groups = data.draw(st.integers(1, 2), label="groups")
    cin, cout = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    k = data.draw(st.integers(1, 4), label="k")
    stride = data.draw(st.integers(1, 3), label="stride")
    dilation = data.draw(st.integers(1, 2), label="dilation")
    padding = data.draw(st.integers(0, (dilation * (k - 1)) // 2), label="padding")
    output_padding = data.draw(st.integers(0, max(stride, dilation) - 1), label="output_padding")
    axis_name = data.draw(st.sampled_from(list(AXES)), label="axis")
    axis = AXES[axis_name]
    conv2d = _randomize(nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding, groups,
                                           True, dilation, dtype=torch.float64), 3)
    x = _volume(data, cin, axis, min_plane=2)
    conv3d = PlanarConvTranspose3d.from_2d(conv2d, axis=axis_name)
    _check_slicewise(conv2d, conv3d, x, axis)


def test_conv_transpose_honours_output_size():
    conv2d = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    conv3d = PlanarConvTranspose3d.from_2d(conv2d)
    x = torch.randn(1, 2, 3, 5, 5)
    out = conv3d(x, output_size=[3, 10, 10])
    assert out.shape == (1, 3, 3, 10, 10)
    assert_close(out[:, :, 1], conv2d(x[:, :, 1], output_size=[10, 10]))


@given(data=st.data())
def test_planar_max_pool_equals_max_pool2d_on_every_slice(data):
    k = data.draw(st.integers(1, 4), label="k")
    stride = data.draw(st.sampled_from([None, 1, 2, 3]), label="stride")
    padding = data.draw(st.integers(0, k // 2), label="padding")
    dilation = data.draw(st.integers(1, 2), label="dilation")
    assume(padding <= (dilation * (k - 1) + 1) // 2)
    ceil_mode = data.draw(st.booleans(), label="ceil")
    axis_name = data.draw(st.sampled_from(list(AXES)), label="axis")
    pool2d = nn.MaxPool2d(k, stride, padding, dilation, ceil_mode=ceil_mode)
    x = _volume(data, 2, AXES[axis_name], min_plane=dilation * (k - 1) + 1)
    _check_slicewise(pool2d, PlanarMaxPool3d.from_2d(pool2d, axis=axis_name), x, AXES[axis_name])


@given(data=st.data())
def test_planar_avg_pool_equals_avg_pool2d_on_every_slice(data):
    k = data.draw(st.integers(1, 4), label="k")
    stride = data.draw(st.sampled_from([None, 1, 2]), label="stride")
    padding = data.draw(st.integers(0, k // 2), label="padding")
    ceil_mode, include_pad = data.draw(st.booleans()), data.draw(st.booleans())
    divisor = data.draw(st.sampled_from([None, 3]), label="divisor")
    axis_name = data.draw(st.sampled_from(list(AXES)), label="axis")
    pool2d = nn.AvgPool2d(k, stride, padding, ceil_mode, include_pad, divisor)
    x = _volume(data, 2, AXES[axis_name], min_plane=k)
    _check_slicewise(pool2d, PlanarAvgPool3d.from_2d(pool2d, axis=axis_name), x, AXES[axis_name])


@given(data=st.data())
def test_adaptive_pools_per_slice_and_at_the_head(data):
    size = data.draw(st.sampled_from([1, 2, (3, 1), (None, 2)]), label="output_size")
    axis_name = data.draw(st.sampled_from(list(AXES)), label="axis")
    axis = AXES[axis_name]
    x = _volume(data, 3, axis, min_plane=3)
    for pool2d, planar_cls, head_cls, reduce in (
        (nn.AdaptiveAvgPool2d(size), PlanarAdaptiveAvgPool3d, HeadAdaptiveAvgPool2d, "mean"),
        (nn.AdaptiveMaxPool2d(size), PlanarAdaptiveMaxPool3d, HeadAdaptiveMaxPool2d, "amax"),
    ):
        _check_slicewise(pool2d, planar_cls.from_2d(pool2d, axis=axis_name), x, axis)
        head = head_cls.from_2d(pool2d, axis=axis_name)
        # head pool = the 2D pool applied to the slices pooled together (docs/design.md P1, head)
        merged = getattr(x, reduce)(axis)
        assert_close(head(x), pool2d(merged), rtol=1e-9)
        assert_close(head(merged), pool2d(merged), rtol=0)  # already pooled: the 2D pool


@pytest.mark.parametrize("training", [False, True])
def test_batchnorm_statistics_over_n_d_h_w_equal_2d_over_folded_slices(training):
    bn2d = nn.BatchNorm2d(4)
    _randomize(bn2d, 0)
    bn2d.running_mean.normal_()
    bn2d.running_var.uniform_(0.5, 2)
    bn3d = planar3d.convert(bn2d, example_input=torch.randn(2, 4, 5, 5)).train(training)
    bn2d.train(training)
    assert isinstance(bn3d, nn.BatchNorm3d)
    x = torch.randn(2, 4, 3, 5, 5)
    folded = x.transpose(1, 2).reshape(6, 4, 5, 5)
    out3d = bn3d(x)
    out2d = bn2d(folded).reshape(2, 3, 4, 5, 5).transpose(1, 2)
    assert_close(out3d, out2d)
    assert_close(bn3d.running_mean, bn2d.running_mean)
    assert_close(bn3d.running_var, bn2d.running_var)

"""Modes center / inflate / acs, thickening and input-channel adaptation (docs/design.md P2-P4)."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from p3d_helpers import SqueezeExcite, assert_close, randomize, volume
from torch import nn

import planar3d
from planar3d import ACSConv3d, PlanarConv3d, ThickConv3d, UnsupportedModuleError, acs_split

AXES = {"D": 2, "H": 3, "W": 4}


def _conv(data, *, same_padding: bool, stride1: bool = True) -> nn.Conv2d:
    groups = data.draw(st.sampled_from([1, 2, 3]), label="groups")
    depthwise = data.draw(st.booleans(), label="depthwise")
    cin = groups * data.draw(st.integers(1, 3), label="cin/g")
    cout = cin if depthwise else groups * data.draw(st.integers(1, 3), label="cout/g")
    groups = cin if depthwise else groups
    k = data.draw(st.sampled_from([1, 3, 5]), label="k")
    dilation = data.draw(st.sampled_from([1, 2]), label="dilation")
    padding = dilation * (k - 1) // 2 if same_padding else data.draw(st.integers(0, 2))
    stride = 1 if stride1 else data.draw(st.sampled_from([1, 2]), label="stride")
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups,
                     bias=data.draw(st.booleans()), dtype=torch.float64)
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return conv


def _x(data, conv: nn.Conv2d) -> torch.Tensor:
    reach = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
    shape = (1, conv.in_channels, *[data.draw(st.integers(reach, reach + 4)) for _ in range(3)])
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@given(data=st.data())
def test_p3_center_conv_equals_planar_conv(data):
    conv = _conv(data, same_padding=data.draw(st.booleans()), stride1=False)
    axis = data.draw(st.sampled_from(list(AXES)), label="axis")
    depth = data.draw(st.sampled_from([1, 3, 5]), label="depth")
    x = _x(data, conv)
    thick = ThickConv3d.from_2d(conv, init="center", depth=depth, axis=axis)
    assert thick.weight.shape[AXES[axis]] == depth
    assert_close(thick(x), PlanarConv3d.from_2d(conv, axis=axis)(x), rtol=1e-10)


@given(data=st.data())
def test_p2_inflate_on_depth_constant_volume_away_from_the_border(data):
    conv = _conv(data, same_padding=data.draw(st.booleans()), stride1=False)
    depth = data.draw(st.sampled_from([2, 3, 4, 5]), label="depth")
    image = _x(data, conv)[:, :, 0]
    slices = 2 * depth + 1
    x = image.unsqueeze(2).expand(*image.shape[:2], slices, *image.shape[2:])
    out = ThickConv3d.from_2d(conv, init="inflate", depth=depth)(x)
    assert out.shape[2] == slices  # depth preserved, even kernel depths included
    want = conv(image)
    for d in range(depth, slices - depth):
        assert_close(out[:, :, d], want, rtol=1e-10)


@given(data=st.data())
def test_p4_acs_part_g_equals_planar_conversion_along_axis_g(data):
    conv = _conv(data, same_padding=True)
    x = _x(data, conv)
    out = ACSConv3d.from_2d(conv)(x)
    sizes = conv.out_channels // conv.groups
    split = ([g * sizes for g in acs_split(conv.groups)] if conv.groups > 1
             else acs_split(conv.out_channels))
    start = 0
    for axis, size in zip(("D", "H", "W"), split):
        if size:
            planar = PlanarConv3d.from_2d(conv, axis=axis)(x)
            assert_close(out[:, start:start + size], planar[:, start:start + size], rtol=1e-10)
        start += size
    assert start == conv.out_channels


def test_acs_split_rule_gives_remainders_to_the_first_parts():
    assert acs_split(64) == [22, 21, 21]
    assert acs_split(65) == [22, 22, 21]
    assert acs_split(3) == [1, 1, 1]
    assert acs_split(2) == [1, 1, 0]


def test_acs_strided_parts_line_up_and_odd_padding_stays_planar():
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
    assert ACSConv3d.from_2d(conv)(torch.randn(1, 3, 5, 16, 16)).shape == (1, 6, 5, 8, 8)
    patchify = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4))
    model = planar3d.convert(patchify, mode="acs", example_input=torch.randn(2, 3, 16, 16))
    assert type(model[0]) is PlanarConv3d
    report = planar3d.conversion_report(model)
    assert "stays planar" in report.by_action("swapped")[0].detail


def test_acs_has_no_planar_axis_to_choose():
    with pytest.raises(UnsupportedModuleError, match="axis='D'"):
        planar3d.convert(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)), mode="acs", axis="H",
                         example_input=torch.randn(2, 3, 8, 8))


class NHWCBlock(nn.Module):
    """ConvNeXt-like: depthwise conv, then permute to NHWC around LayerNorm/Linear, layer scale."""

    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc = nn.Linear(c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc(self.norm(y)).permute(0, 3, 1, 2)
        return x + y * self.gamma.reshape(1, -1, 1, 1)


def mixed_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SqueezeExcite(8), NHWCBlock(8),
                         nn.BatchNorm2d(8), nn.ReLU())


EXAMPLE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["center", "inflate", "acs"])
def test_functional_code_is_per_slice_and_spatial_kernels_take_the_mode(mode):
    model = randomize(mixed_model()).eval()
    model3d = planar3d.convert(model, mode=mode, example_input=EXAMPLE)
    report = planar3d.conversion_report(model3d)
    actions = {e.path: e.action for e in report.entries}
    assert actions["1"] == "folded"  # SE: 1x1 kernels only, per-slice squeeze
    assert actions["2"] == "rewritten"  # NHWC code rewritten so the 5x5 depthwise can thicken
    expected = ACSConv3d if mode == "acs" else ThickConv3d
    assert type(model3d[0]) is expected and type(model3d[2].dw) is expected
    out = model3d(volume(1, 3, 4, 16, 16))
    assert out.shape == (1, 8, 4, 16, 16) and torch.isfinite(out).all()


def test_p3_center_model_equals_planar_model_on_distinct_slices():
    model = randomize(mixed_model()).eval()
    x = volume(2, 3, 5, 16, 16)
    planar = planar3d.convert(model, example_input=EXAMPLE)
    center = planar3d.convert(model, mode="center", kernel_depth=5, example_input=EXAMPLE)
    assert_close(center(x), planar(x))


def test_p2_center_and_inflate_models_on_depth_constant_volumes():
    model = randomize(mixed_model()).eval()
    image = volume(1, 3, 1, 16, 16)[:, :, 0]
    x = image.unsqueeze(2).expand(1, 3, 9, 16, 16)
    want = model(image)
    for mode in ("center", "inflate"):
        out = planar3d.convert(model, mode=mode, example_input=EXAMPLE)(x)
        assert_close(out[:, :, 4], want)  # 3 thick layers: slices 3..5 are interior


def test_thicken_center_keeps_outputs_inflate_changes_them():
    model = randomize(torchvision.models.resnet18()).eval()
    planar = planar3d.convert(model, example_input=torch.randn(2, 3, 64, 64))
    x = volume(1, 3, 4, 32, 32)
    center = planar3d.thicken(planar, init="center", kernel_depth=3)
    assert type(center.conv1) is ThickConv3d and center.conv1.kernel_size == (3, 7, 7)
    assert type(planar.conv1) is PlanarConv3d  # not in place
    assert_close(center(x), planar(x))
    inflated = planar3d.thicken(planar, init="inflate")
    assert not torch.allclose(inflated(x), planar(x))
    assert list(center.state_dict()) == list(planar.state_dict())


def test_thicken_reaches_rewritten_modules_and_lists_folded_ones():
    model = randomize(mixed_model()).eval()
    planar = planar3d.convert(model, example_input=EXAMPLE)
    thick = planar3d.thicken(planar, init="center")
    assert type(thick[2].dw) is ThickConv3d
    assert_close(thick(volume(1, 3, 3, 16, 16)), planar(volume(1, 3, 3, 16, 16)))
    with pytest.raises(ValueError, match="odd"):
        planar3d.thicken(planar, init="center", kernel_depth=4)


@pytest.mark.parametrize("mode", ["planar", "center", "inflate", "acs"])
def test_single_channel_input_sum_equals_repeat(mode):
    model = randomize(torchvision.models.resnet18()).eval()
    model3d = planar3d.convert(model, mode=mode, example_input=torch.randn(2, 3, 64, 64))
    summed = planar3d.adapt_input_channels(planar3d.thicken(model3d, init="center")
                                           if mode == "planar" else model3d, 1, method="sum")
    x = volume(1, 1, 3, 32, 32)
    assert summed.conv1.weight.shape[1] == 1
    repeated = planar3d.convert(model, mode=mode, example_input=torch.randn(2, 3, 64, 64))
    if mode == "planar":
        repeated = planar3d.thicken(repeated, init="center")
    planar3d.adapt_input_channels(repeated, 1, method="repeat")
    assert_close(summed(x), repeated(x))
    with pytest.raises(ValueError, match="1 input channel"):
        repeated(volume(1, 3, 3, 32, 32))


def test_depth_policy_per_kind_of_layer_in_every_mode():
    vgg_like = randomize(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU())).eval()
    x = volume(1, 3, 8, 16, 16)
    for mode in ("planar", "center", "inflate", "acs"):
        keep = planar3d.convert(vgg_like, mode=mode, example_input=EXAMPLE)
        pool = planar3d.convert(vgg_like, mode=mode, depth="pool", example_input=EXAMPLE)
        every = planar3d.convert(vgg_like, mode=mode, depth="all", example_input=EXAMPLE)
        assert keep(x).shape == (1, 4, 8, 4, 4)  # in-plane stride 2 twice, depth kept
        assert pool(x).shape == (1, 4, 4, 4, 4)
        assert every(x).shape == (1, 4, 2, 4, 4)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["planar", "center", "inflate", "acs"])
@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_deep_networks_run_on_thin_anisotropic_volumes(name, mode):
    """Clinical scans are a few thick slices of large planes: depth must survive every stride."""
    model = getattr(torchvision.models, name)().eval()
    model3d = planar3d.convert(model, mode=mode, example_input=torch.randn(2, 3, 64, 64))
    with torch.no_grad():
        out = model3d(torch.randn(1, 3, 8, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()

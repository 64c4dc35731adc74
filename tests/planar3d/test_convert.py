"""planar3d.convert: what it preserves, how it treats custom code, and how it fails."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from p3d_helpers import SqueezeExcite, assert_close, randomize, slices, volume
from p3d_oracle import fold_volume, slice_mismatches
from torch import nn

import planar3d
from planar3d import UnsupportedModuleError


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.GELU(),
    )


EXAMPLE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def convert(model, **kw):
    kw.setdefault("example_input", EXAMPLE)
    return planar3d.convert(model, **kw)


class ChannelsLastNorm(nn.Module):
    """ConvNeXt-style: permute to NHWC around a LayerNorm (errors on 5-D input)."""

    def __init__(self, c):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Residual(nn.Module):
    """Dimension-agnostic forward: kept as it is, with its children converted."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv(x))


class FlattenHead(nn.Module):
    """Flattens a feature map with no pooling: no planar meaning; must be refused."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, stride=4)
        self.fc = nn.Linear(c * 16, 5)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


# -- names, weights, flags --------------------------------------------------------------------

def test_parameter_and_buffer_names_equal_the_2d_model():
    model = randomize(torchvision.models.resnet18())
    model3d = convert(model)
    assert list(model3d.state_dict()) == list(model.state_dict())
    assert [n for n, _ in model3d.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_loading_a_2d_state_dict_equals_converting_the_loaded_model():
    model_a = randomize(torchvision.models.resnet18(), seed=0).eval()
    model_b = randomize(torchvision.models.resnet18(), seed=1).eval()
    converted_a = convert(model_a)
    result = planar3d.load_2d_state_dict(converted_a, model_b.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = volume(1, 3, 2, 32, 32)
    assert_close(converted_a(x), convert(model_b)(x))


def test_a_checkpoint_of_another_network_is_refused_with_the_key():
    model3d = convert(small_cnn())
    state = small_cnn().state_dict()
    state["0.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(ValueError, match=r"0\.weight.*\(8, 3, 5, 5\)"):
        planar3d.load_2d_state_dict(model3d, state)


def test_train_eval_flags_and_requires_grad_are_preserved():
    model = small_cnn().train()
    model[1].eval()
    for p in model[0].parameters():
        p.requires_grad_(False)
    model3d = convert(model)
    assert [m.training for m in model3d.modules()] == [m.training for m in model.modules()]
    assert [p.requires_grad for p in model3d.parameters()] == [
        p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_is_preserved_and_slices_match(dtype):
    model = randomize(small_cnn()).to(dtype).eval()
    model3d = convert(model, example_input=EXAMPLE.to(dtype))
    assert {p.dtype for p in model3d.parameters()} == {dtype}
    x = volume(2, 3, 3, 16, 16, dtype=dtype)
    out = model3d(x)
    assert out.dtype == dtype
    for d, image in enumerate(slices(x, 2)):
        assert_close(out[:, :, d], model(image), rtol=3e-2 if dtype == torch.bfloat16 else 1e-12)


def test_parameters_stay_on_their_device_and_are_not_copied_needlessly():
    model = small_cnn()
    model3d = convert(model)
    assert {p.device for p in model3d.parameters()} == {p.device for p in model.parameters()}


def test_original_model_is_untouched_unless_inplace():
    model = small_cnn()
    before = copy.deepcopy(model.state_dict())
    types = [type(m) for m in model.modules()]
    model3d = convert(model)
    assert model3d is not model
    assert [type(m) for m in model.modules()] == types
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    same = convert(model, inplace=True)
    assert isinstance(model[0], planar3d.PlanarConv3d) and same is model


def test_hooks_on_swapped_layers_keep_firing():
    model = small_cnn()
    seen = []
    model[0].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    model3d = convert(model)
    seen.clear()
    model3d(volume(1, 3, 2, 16, 16))
    assert seen == [torch.Size([1, 8, 2, 16, 16])]


def test_converted_model_survives_pickle_and_deepcopy():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SqueezeExcite(4), ChannelsLastNorm(4))
    model3d = convert(randomize(model).eval())
    x = volume(1, 3, 2, 16, 16)
    for clone in (copy.deepcopy(model3d), pickle.loads(pickle.dumps(model3d))):
        assert_close(clone(x), model3d(x), rtol=0)


class SpatialSqueezeExcite(nn.Module):
    """SE over a spatial convolution: its `x.mean((2, 3))` is rewritten per slice, not folded."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x * self.conv(x).mean((2, 3), keepdim=True).sigmoid()


def test_what_planar3d_keeps_on_a_module_is_one_record_that_copies_keep():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SpatialSqueezeExcite(4), ChannelsLastNorm(4))
    model3d = convert(randomize(model).eval(), mode="center")
    report = planar3d.conversion_report(model3d)
    assert {e.path: e.action for e in report.entries if e.path in ("1", "2")} == {
        "1": "rewritten", "2": "folded"}
    x = volume(1, 3, 3, 16, 16)
    for net in (model3d, copy.deepcopy(model3d), pickle.loads(pickle.dumps(model3d))):
        kept = {name: sorted(k for k in vars(m) if k.startswith("_planar3d"))
                for name, m in net.named_modules()}
        assert kept[""] == kept["1"] == kept["2"] == ["_planar3d"]
        assert all(keys in ([], ["_planar3d"]) for keys in kept.values())
        assert planar3d.conversion_report(net).counts() == report.counts()
        assert_close(net(x), model3d(x), rtol=0)


# -- custom code in forward ---------------------------------------------------------------------

def test_silently_wrong_functional_code_is_folded_not_kept():
    model = randomize(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SqueezeExcite(4))).eval()
    # run as it is on a volume, SqueezeExcite averages over D and H and still broadcasts
    model3d = convert(model)
    report = planar3d.conversion_report(model3d)
    assert [e.action for e in report.entries if e.path == "1"] == ["folded"]
    assert planar3d.is_folded(model3d[1])
    assert slice_mismatches(model, model3d, volume(2, 3, 3, 16, 16)) == []


def test_dimension_agnostic_custom_forward_is_kept_with_3d_children():
    model = randomize(nn.Sequential(Residual(3), ChannelsLastNorm(3))).eval()
    model3d = convert(model)
    assert type(model3d[0]) is Residual and isinstance(model3d[0].conv, planar3d.PlanarConv3d)
    assert planar3d.is_folded(model3d[1])  # permute(0, 2, 3, 1) has no 5-D meaning: folded
    assert slice_mismatches(model, model3d, volume(2, 3, 3, 16, 16)) == []


def test_head_without_pooling_is_refused_with_path_type_and_fix():
    with pytest.raises(UnsupportedModuleError) as info:
        convert(FlattenHead(4))
    error = info.value
    assert error.path == "" and error.module_type == "FlattenHead"
    assert "register a converter" in error.fix
    assert "flatten" in str(error)


def test_exact_type_lookup_keeps_subclass_behaviour():
    class DoubledConv(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    model = randomize(nn.Sequential(DoubledConv(3, 4, 3))).eval()
    model3d = convert(model)
    x = volume(1, 3, 2, 16, 16)
    assert_close(model3d(x)[:, :, 1], model(x[:, :, 1]))


def test_pixel_shuffle_and_group_norm_run_slice_by_slice():
    model = randomize(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.PixelShuffle(2),
        nn.Upsample(scale_factor=0.5, mode="bilinear"), nn.InstanceNorm2d(2, affine=True),
    )).eval()
    assert slice_mismatches(model, convert(model), volume(2, 3, 3, 16, 16)) == []


# -- registry -----------------------------------------------------------------------------------

class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        return x.flatten(2).mul(self.gain).view_as(x)  # 4-D only


def test_user_converter_for_one_call_is_used_and_checked():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), Scale())
    model3d = convert(model, converters={Scale: planar3d.keep})
    assert type(model3d[1]) is Scale  # flatten(2).view_as works on volumes too
    wrong = {Scale: lambda m, ctx: nn.Identity()}
    with pytest.raises(UnsupportedModuleError, match="converter registered for it"):
        convert(model, converters=wrong)


def test_register_converter_rejects_duplicates_and_defaults_are_copies():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    planar3d.register_converter(Custom, planar3d.keep)
    with pytest.raises(ValueError, match="replace=True"):
        planar3d.register_converter(Custom, planar3d.fold)
    planar3d.register_converter(Custom, planar3d.fold, replace=True)
    table = planar3d.default_converters()
    assert table[Custom] is planar3d.fold and table[nn.Conv2d] is not None
    table.clear()
    assert nn.Conv2d in planar3d.default_converters()
    with pytest.raises(TypeError):
        planar3d.register_converter(int, planar3d.keep)


# -- options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis, dim", [("H", 3), ("W", 4)])
def test_planar_axis_h_and_w(axis, dim):
    model = randomize(torchvision.models.resnet18()).eval()
    model3d = convert(model, axis=axis, example_input=torch.randn(2, 3, 64, 64))
    assert model3d.conv1.weight.shape[dim] == 1
    x = volume(1, 3, 32, 32, 32)
    feats3d = nn.Sequential(*list(model3d.children())[:-2])(x)
    feats2d = nn.Sequential(*list(model.children())[:-2])
    for i, image in enumerate(slices(x, dim)):
        assert_close(feats3d.select(dim, i), feats2d(image), rtol=1e-4)


def vgg_like():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, stride=2), nn.ReLU(), nn.AvgPool2d(2),
    )


def test_depth_policy_pool_pools_depth_like_the_paper():
    model = randomize(vgg_like()).eval()
    model3d = convert(model, depth="pool")
    assert type(model3d[2]) is nn.MaxPool3d and model3d[2].kernel_size == 2
    assert model3d[3].stride == (1, 2, 2)
    x = volume(1, 3, 8, 16, 16)
    assert model3d(x).shape == (1, 4, 2, 2, 2)
    constant = x[:, :, :1].expand(1, 3, 8, 16, 16)  # P2: equal slices give the 2D output
    out = model3d(constant)
    for d in range(out.shape[2]):
        assert_close(out[:, :, d], model(x[:, :, 0]))


def test_depth_policy_all_also_strides_convolutions_along_depth():
    model = randomize(vgg_like()).eval()
    model3d = convert(model, depth="all")
    assert model3d[3].stride == (2, 2, 2)
    x = volume(1, 3, 16, 16, 16)
    assert model3d(x).shape == (1, 4, 2, 2, 2)  # 16 -> pool 8 -> conv 4 -> pool 2
    assert convert(model, depth="pool")(x).shape == (1, 4, 4, 2, 2)


def test_depth_policy_refuses_pools_hidden_in_folded_code():
    class PoolBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            return self.pool(x).permute(0, 1, 3, 2)

    with pytest.raises(UnsupportedModuleError, match="depth policy 'pool'"):
        convert(nn.Sequential(nn.Conv2d(3, 2, 1), PoolBlock()), depth="pool")


# -- bad input ----------------------------------------------------------------------------------

def test_a_4d_tensor_gets_an_error_naming_the_expected_layout():
    model3d = convert(small_cnn())
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\).*unsqueeze\(2\)"):
        model3d(torch.randn(2, 3, 16, 16))


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError, match=r"nn\.Module"):
        planar3d.convert(lambda x: x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="cubic"), "mode must be one of"),
    (dict(depth="deep"), "depth must be one of"),
    (dict(axis="T"), "'D', 'H' or 'W'"),
    (dict(example_input=torch.randn(1, 3, 16, 16)), "at least 2 images"),
    (dict(example_input=torch.randn(2, 3, 2, 16, 16)), r"\(B, C, H, W\)"),
])
def test_invalid_options_say_what_is_valid(kwargs, match):
    kwargs.setdefault("example_input", EXAMPLE)
    with pytest.raises(ValueError, match=match):
        planar3d.convert(small_cnn(), **kwargs)


def test_an_example_the_2d_model_rejects_is_reported():
    with pytest.raises(RuntimeError, match="does not run on the example batch"):
        planar3d.convert(small_cnn(), example_input=torch.randn(2, 5, 16, 16))


def test_converting_twice_is_refused():
    with pytest.raises(ValueError, match="already converted"):
        convert(convert(small_cnn()))


# -- report -------------------------------------------------------------------------------------

def test_report_lists_what_happened_to_each_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), SqueezeExcite(4), nn.ReLU())
    report = planar3d.conversion_report(convert(model))
    assert report.counts() == {"swapped": 1, "folded": 1, "kept": 1}
    text = str(report)
    assert "mode=planar" in text and "folded:" in text and "SqueezeExcite" in text
    with pytest.raises(ValueError, match=r"not produced by planar3d\.convert"):
        planar3d.conversion_report(model)


def test_2d_model_on_folded_batch_is_the_reference_of_the_whole_model():
    model = randomize(torchvision.models.mobilenet_v3_small()).eval()
    model3d = convert(model, example_input=torch.randn(2, 3, 96, 96))
    x = volume(2, 3, 3, 64, 64)
    assert slice_mismatches(model, model3d, x) == []
    logits = model3d(x)
    # avg-pool + affine-free-of-slices head: the classifier sees the slices' mean features
    assert logits.shape == (2, 1000)
    assert model(fold_volume(x)).shape == (6, 1000)


class TrainOnlySqueeze(nn.Module):
    """2D-only code on the train-mode path only: an eval-mode probe alone cannot see it."""

    def forward(self, x):
        if self.training:
            return x * x.mean((2, 3), keepdim=True).sigmoid()
        return x


def test_forward_paths_taken_only_in_train_mode_are_probed_too():
    model = randomize(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), TrainOnlySqueeze()))
    model3d = convert(model)
    assert planar3d.is_folded(model3d[1])
    model.train()
    model3d.train()
    assert slice_mismatches(model, model3d, volume(2, 3, 3, 16, 16)) == []


class GatedContext(nn.Module):
    """A global context that a saturated gate silences on small inputs (timm FocalNet's shape):
    on a volume, `x.mean((2, 3))` averages D and H, which the values on the example cannot show
    because relu(mean - 3) is 0 there either way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y + F.relu(y.mean((2, 3), keepdim=True) - 3.0)


def test_a_wrong_reduction_hidden_by_the_example_values_is_not_accepted_as_it_is():
    torch.manual_seed(0)
    model = nn.Sequential(GatedContext()).eval()
    with torch.no_grad():
        model[0].conv.bias.fill_(0.0)
    model3d = planar3d.convert(model, example_input=torch.randn(2, 4, 8, 8))
    actions = {e.path: e.action for e in planar3d.conversion_report(model3d).entries}
    assert actions["0"] in ("rewritten", "folded")
    x = volume(2, 4, 3, 8, 8) + 10.0  # large mean: the gate opens
    with torch.no_grad():
        model[0].conv.bias.fill_(5.0)
        model3d[0].conv.bias.fill_(5.0)
        got = model3d(x)
        for d, image in enumerate(slices(x, 2)):
            assert_close(got[:, :, d], model(image))


def test_records_keep_one_copy_of_a_tensor_passed_on_unchanged():
    # conversion memory: a block's output is the next block's input and the parent's input its
    # first child's; the records clone such a tensor once, and again only after an in-place change
    from planar3d._record import record_calls

    class AddInPlace(nn.Module):
        def forward(self, x):
            x += 1.0
            return x

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Identity(), AddInPlace(),
                        nn.ReLU(inplace=True))
    example = torch.randn(2, 3, 8, 8)
    records = {r.path: r for r in record_calls(net, example).values()}
    conv, identity, add, relu = (records[str(i)] for i in range(4))
    assert records[""].args[0] is conv.args[0]  # the parent's input is its first child's
    assert conv.output is identity.args[0] is identity.output is add.args[0]
    # changed in place by AddInPlace: its output (and ReLU's input) is a new copy, and the
    # records taken before the change still hold the values as they were then
    assert add.output is not add.args[0] and add.output is relu.args[0]
    torch.testing.assert_close(add.output, conv.output + 1.0)
    torch.testing.assert_close(conv.output, net[0](example))


def test_running_a_module_on_its_record_never_changes_the_records():
    from planar3d._record import record_calls

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
    records = {r.path: r for r in record_calls(net, torch.randn(2, 3, 8, 8)).values()}
    before = records["0"].output.clone()
    args, kwargs = records["1"].inputs()
    net[1](*args, **kwargs)  # in place, on a private copy
    torch.testing.assert_close(records["0"].output, before)
    torch.testing.assert_close(records["1"].args[0], before)
    # and the whole conversion of such a network stays exact
    x = torch.randn(2, 3, 5, 8, 8)
    model3d = planar3d.convert(net, example_input=torch.randn(4, 3, 8, 8))
    slices = x.permute(0, 2, 1, 3, 4).reshape(10, 3, 8, 8)
    want = net(slices).reshape(2, 5, 4, 8, 8).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(model3d(x), want)

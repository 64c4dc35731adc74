"""The reference semantics (docs/design.md, P0) for what a probe cannot decide alone.

- random layers draw one mask per slice, decided by what the layer is;
- batch-coupled layers see the N·D slices as one batch;
- the end-to-end check ending every conversion names the first module that differs, and
  folds a body module whose own code mixes slices where no probe could see it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from p3d_helpers import assert_close, volume
from p3d_oracle import fold_volume
from torch import nn

import planar3d
from planar3d import UnsupportedModuleError


def _unfold(y: torch.Tensor, n: int) -> torch.Tensor:
    return y.reshape(n, -1, *y.shape[1:]).transpose(1, 2)


class FunctionalDropPath(nn.Module):
    """Research-code drop path: a (B, 1, 1, 1) mask built in the module's own code, around a
    convolution (so that conversion first tries to keep the module and rewrite its code)."""

    def __init__(self, p: float):
        super().__init__()
        self.conv = _positive(nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"))
        self.p = p

    def forward(self, x):
        y = self.conv(x)
        if not self.training:
            return y
        keep = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) >= self.p
        return y * keep / (1 - self.p)


def _positive(conv: nn.Conv2d) -> nn.Conv2d:
    """Constant positive weights: a constant input gives a constant, positive output."""
    with torch.no_grad():
        conv.weight.fill_(0.1)
        conv.bias.zero_()
    return conv


def _drop_path_models():
    import timm.layers

    stem = _positive(nn.Conv2d(4, 4, 1))
    yield "Dropout2d", nn.Sequential(stem, nn.Dropout2d(0.5))
    yield "timm DropPath", nn.Sequential(stem, timm.layers.DropPath(0.5))
    yield "torchvision StochasticDepth", nn.Sequential(
        stem, torchvision.ops.StochasticDepth(0.5, "row"))
    yield "functional drop path", nn.Sequential(stem, FunctionalDropPath(0.5))


@pytest.mark.parametrize("name", [n for n, _ in _drop_path_models()])
def test_structured_random_layers_draw_one_mask_per_slice(name):
    model = dict(_drop_path_models())[name].eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 4, 8, 8)).train()
    torch.manual_seed(0)
    slices = 64
    with torch.no_grad():
        out = model3d(torch.ones(2, 4, slices, 8, 8) + 1)
    out2d = model.train()(torch.ones(2, 4, 8, 8) + 1)
    # a slice (or, for Dropout2d, a channel of a slice) is dropped or kept as a whole
    plane_means = out.flatten(3).std(3)
    assert bool((plane_means < 1e-5).all()), "a mask varies inside a slice's plane"
    kept = (out.flatten(3).abs().amax(3) > out.flatten(3).abs().amax().item() * 0.1)
    if name != "Dropout2d":  # a per-sample mask: the same for every channel of a slice
        kept = kept.any(1)
    rate = kept.float().mean().item()
    assert 0.35 < rate < 0.65, f"keep rate {rate} over {kept.numel()} draws, expected 0.5"
    # one draw per slice: slices of one volume differ, as independent draws do
    per_volume = kept.reshape(2, -1, slices) if name == "Dropout2d" else kept.reshape(2, slices)
    assert bool((per_volume.float().std(-1) > 0.3).all()), "slices of a volume share one mask"
    assert out2d.shape == (2, 4, 8, 8)


def test_a_random_layer_is_decided_by_what_it_is_not_by_a_draw():
    import timm.layers

    model = nn.Sequential(nn.Conv2d(3, 4, 3), timm.layers.DropPath(0.5)).eval()
    actions = set()
    for seed in range(4):
        torch.manual_seed(seed)
        report = planar3d.conversion_report(planar3d.convert(model))
        actions.add(next(e.action for e in report.entries if e.path == "1"))
    assert actions == {"folded"}


class MinibatchStd(nn.Module):
    """GAN discriminators' minibatch statistics: the batch's standard deviation as a channel."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        std = y.std(0, keepdim=True).mean(1, keepdim=True).expand(y.shape[0], 1, *y.shape[2:])
        return torch.cat([y, std], 1)


@pytest.mark.parametrize("build", [
    MinibatchStd,
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)),
], ids=["minibatch std", "BatchNorm without running statistics"])
def test_batch_coupled_layers_see_the_slices_as_one_batch(build):
    model = build().eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 16, 16))
    x = volume(3, 3, 5, 16, 16)
    with torch.no_grad():
        assert_close(model3d(x), _unfold(model(fold_volume(x)), 3))


class Concat(nn.Module):
    """Joins weighted maps along H: in 2D `dim=2` is H, on a volume it would be D. Its inputs
    are not all feature maps (the weights), so no probe runs it alone."""

    def forward(self, maps, weights):
        return torch.cat([m * w for m, w in zip(maps, weights)], dim=2)


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.join = Concat()
        self.mix = nn.Parameter(torch.tensor([0.5, 2.0]))
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.out(self.join([self.a(x), self.b(x)], self.mix))


def test_a_module_no_probe_could_check_alone_is_found_and_folded():
    model = TwoBranches().eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 16, 16))
    x = volume(2, 3, 3, 16, 16)
    with torch.no_grad():
        assert_close(model3d(x), _unfold(model(fold_volume(x)), 2))
    actions = {e.path: e.action for e in planar3d.conversion_report(model3d).entries}
    # only the culprit runs per slice; its parent keeps its own forward and 3D children
    assert actions["join"] == "folded"
    assert actions[""] == "verified" and actions["a"] == "swapped"


class Embedder(nn.Module):
    """Returns a feature map and an embedding its own code computes with 2D-only reshapes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape[0], y.shape[1], y.shape[-2], y.shape[-1]
        return y, y.reshape(b, c, h * w)[:, :, :: h * w // 4].flatten(1)


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Embedder()

    def forward(self, x):
        return self.inner(x)


def test_the_end_to_end_check_names_the_first_module_that_differs():
    with pytest.raises(UnsupportedModuleError) as error:
        planar3d.convert(Outer().eval(), example_input=torch.randn(4, 3, 16, 16))
    assert error.value.path == "inner"
    assert "first to differ" in error.value.reason


def test_train_mode_outputs_are_checked_too():
    class TrainOnlyMix(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            if self.training:  # only in train mode: mixes the batch's images
                return y + y.flip(0)
            return y

    model = TrainOnlyMix().eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 16, 16))
    x = volume(2, 3, 3, 16, 16)
    with torch.no_grad():
        assert_close(model3d.train()(x), _unfold(model.train()(fold_volume(x)), 2))


def test_a_scripted_module_is_refused_with_the_fix():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    with pytest.raises(UnsupportedModuleError, match="convert the eager model"):
        planar3d.convert(scripted)


def test_global_pools_in_code_pool_the_planar_axis():
    class GeM(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.tensor(3.0))

        def forward(self, x):
            pooled = F.avg_pool2d(x.clamp(min=1e-6).pow(self.p), (x.size(-2), x.size(-1)))
            return pooled.pow(1.0 / self.p)

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), GeM(), nn.Flatten()).eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 16, 16))
    x = volume(2, 3, 3, 16, 16)
    features = model[:2](fold_volume(x))  # (N*D, C, h, w)
    pooled = _unfold(features, 2).clamp(min=1e-6).pow(3).mean((2, 3, 4)).pow(1 / 3)
    with torch.no_grad():
        assert_close(model3d(x), pooled)


SEEN: list[tuple] = []


def _record_shape(module, args, output):
    SEEN.append(tuple(output.shape))


def test_hooks_survive_conversion_deepcopy_and_pickle_and_their_handles_still_remove_them():
    import copy
    import pickle

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    handle = model[0].register_forward_hook(_record_shape)
    model3d = planar3d.convert(model, inplace=True, example_input=torch.randn(4, 3, 8, 8))
    for copied in (model3d, copy.deepcopy(model3d), pickle.loads(pickle.dumps(model3d))):
        SEEN.clear()
        copied(volume(1, 3, 2, 8, 8))
        assert SEEN == [(1, 4, 2, 6, 6)]
    handle.remove()  # a handle taken before the (in-place) conversion
    SEEN.clear()
    model3d(volume(1, 3, 2, 8, 8))
    assert SEEN == []


def test_timm_features_only_at_the_expansion_convert_deepcopy_and_pickle():
    import copy
    import pickle

    import timm

    model = timm.create_model("efficientnet_b0", features_only=True,
                              feature_location="expansion").eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 64, 64))
    x = volume(1, 3, 2, 64, 64)
    with torch.no_grad():
        want = model3d(x)
        for copied in (copy.deepcopy(model3d), pickle.loads(pickle.dumps(model3d))):
            for a, b in zip(copied(x), want):
                assert_close(a, b)


def test_a_one_channel_timm_model_converts_without_an_example():
    import timm

    model = timm.create_model("resnet10t", in_chans=1, num_classes=3).eval()
    model3d = planar3d.convert(model)
    assert model3d(volume(1, 1, 2, 64, 64)).shape == (1, 3)


class CountsCalls(nn.Module):
    """Updates a buffer in every forward, in eval mode too (a call counter, an EMA)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.conv(x)


def test_conversion_leaves_the_buffers_of_the_model_and_the_result_as_they_were():
    model = CountsCalls().eval()
    model3d = planar3d.convert(model, example_input=torch.randn(4, 3, 8, 8))
    assert model.calls.item() == 0 and model3d.calls.item() == 0


class LateStem(nn.Module):
    """Defines a deeper convolution before its stem (module order is not call order)."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Conv2d(8, 8, 3, padding=1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.deep(self.stem(x))


def test_the_default_example_finds_the_channels_the_network_takes():
    model3d = planar3d.convert(LateStem().eval())
    assert planar3d.conversion_report(model3d).example_shape[1] == 3
    assert model3d(volume(1, 3, 2, 16, 16)).shape == (1, 8, 2, 16, 16)

"""Slice code and head pools over all slices, on timm vision transformers assembled by hand.

The oracle for a ViT head (independent of planar3d): the 2D `forward_head` applied to one token
sequence holding the slice-averaged prefix tokens followed by the patch tokens of every slice.
For class-token heads that is the class token averaged over the slices; for mean, max and
attention-pooling (MAP) heads, the pool over the tokens of all slices.
"""

import copy
import io
import warnings

import pytest
import torch
from p3d_helpers import assert_close
from torch import nn

import planar3d
from planar3d import PlanarConv3d
from planar3d._judge.pools import merge_slices, slice_pool_kind
from planar3d.layers.all_slices import all_slices_module, slices_end_to_end
from planar3d.layers.slice_code import is_slice_code, slice_code_module
from planar3d.tokens import (
    DepthAttention,
    DepthPosition,
    tubelet_conv,
    with_depth_attention,
    with_depth_position,
)

timm = pytest.importorskip("timm")

SIZE = 32


def _vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model("vit_tiny_patch16_224", img_size=SIZE, depth=2, **kwargs)
    with torch.no_grad():  # informative class/register tokens and layer norms
        for name, p in model.named_parameters():
            if p.dim() <= 1 or "token" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval().double()


def _volume(n=2, depth=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, depth, SIZE, SIZE, generator=g, dtype=torch.float64)


def _per_slice(fn, x):
    return [fn(x[:, :, d]) for d in range(x.shape[2])]


def _head_oracle(model2d, x):
    with torch.no_grad():
        feats = torch.stack(_per_slice(model2d.forward_features, x), 1)  # (N, D, L, C)
        p = model2d.num_prefix_tokens
        prefix = feats[:, :, :p].mean(1)
        patches = feats[:, :, p:].reshape(x.shape[0], -1, feats.shape[-1])
        return model2d.forward_head(torch.cat([prefix, patches], 1))


def _planar(model2d, *, pool_head=False):
    """Slice code at the root, every child 2D (the attention pool, if any, over all slices)."""
    model = copy.deepcopy(model2d)
    lifted = set()
    if pool_head:
        all_slices_module(model.attn_pool)
        lifted.add("attn_pool")
    return slice_code_module(model, head=True, lifted=lifted, image_size=(SIZE, SIZE))


HEADS = {
    "class token": {},
    "mean": {"global_pool": "avg"},
    "max": {"global_pool": "max"},
    "mean and max, registers": {"global_pool": "avgmax", "reg_tokens": 2},
    "attention pool (MAP)": {"global_pool": "map"},
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_vit_head_pools_the_tokens_of_all_slices(head):
    kwargs = HEADS[head]
    model2d = _vit(**kwargs)
    model3d = _planar(model2d, pool_head=kwargs.get("global_pool") == "map")
    x = _volume()
    with torch.no_grad():
        out = model3d(x)
    assert out.shape == (2, 1000)
    assert_close(out, _head_oracle(model2d, x), rtol=1e-10)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_vit_head_gives_the_2d_output_on_equal_slices(head):
    kwargs = HEADS[head]
    model2d = _vit(**kwargs)
    model3d = _planar(model2d, pool_head=kwargs.get("global_pool") == "map")
    image = _volume(depth=1)[:, :, 0]
    constant = image.unsqueeze(2).expand(2, 3, 4, SIZE, SIZE)
    with torch.no_grad():
        assert_close(model3d(constant), model2d(image), rtol=1e-10)


def test_a_distilled_vit_averages_both_prefix_tokens():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model2d = timm.create_model("deit_tiny_distilled_patch16_224", img_size=SIZE,
                                    depth=2).eval().double()
    x = _volume()
    with torch.no_grad():
        feats = torch.stack(_per_slice(model2d.forward_features, x), 1).mean(1)
        assert_close(_planar(model2d)(x), model2d.forward_head(feats), rtol=1e-10)


def test_features_and_intermediates_are_the_2d_ones_slice_by_slice():
    model2d = _vit(reg_tokens=1)
    model3d = _planar(model2d)
    x = _volume()
    with torch.no_grad():
        tokens = model3d.forward_features(x)
        maps = model3d.forward_intermediates(x, indices=2, intermediates_only=True)
        want_tokens = _per_slice(model2d.forward_features, x)
        want_maps = _per_slice(lambda image: model2d.forward_intermediates(
            image, indices=2, intermediates_only=True), x)
    assert tokens.shape == (2, 3, 6, 192)  # (N, D, L, C): 2 prefix and 2x2 patch tokens
    for d in range(3):
        assert_close(tokens[:, d], want_tokens[d], rtol=1e-10)
        for got, want in zip(maps, want_maps[d]):
            assert got.shape == (2, 192, 3, 2, 2)  # maps: (N, C, D, h, w)
            assert_close(got[:, :, d], want, rtol=1e-10)


def test_slices_of_another_size_name_the_size_and_the_timm_option():
    model3d = _planar(_vit())
    with pytest.raises(ValueError, match=r"48x48.*converted on 32x32.*dynamic_img_size=True"):
        model3d(torch.zeros(1, 3, 2, 48, 48, dtype=torch.float64))


def test_train_mode_gradients_are_the_2d_ones():
    model2d = _vit(global_pool="avg")
    model3d = _planar(model2d).train()
    x = _volume(n=1, depth=2)
    model3d(x).square().sum().backward()
    reference = copy.deepcopy(model2d).train()
    images = x.transpose(1, 2).reshape(2, 3, SIZE, SIZE)
    tokens = reference.forward_features(images)
    pooled = tokens[:, 1:].mean(1).mean(0, keepdim=True)  # mean over the tokens of all slices
    reference.head(reference.fc_norm(pooled)).square().sum().backward()
    for got, want in zip(model3d.parameters(), reference.parameters()):
        assert_close(got.grad, want.grad, rtol=1e-9)


def test_a_merged_result_is_not_merged_again():
    """Three merged logits stacked are (3, 1, K): as many rows as the slices of one volume of 3
    slices, yet no longer per slice."""

    class ThreeHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList(nn.Linear(4, 5) for _ in range(3))

        def forward(self, x):  # x: (B, L, 4) tokens
            return torch.stack([head(x.mean(1)) for head in self.heads]).sum(0)

    model2d = ThreeHeads().double()
    model3d = slice_code_module(copy.deepcopy(model2d), head=True)
    tokens = torch.randn(1, 3, 7, 4, dtype=torch.float64)  # one volume of 3 slices
    with torch.no_grad():
        want = model2d(tokens.reshape(1, 21, 4))  # the mean over all tokens, then the heads
        assert_close(model3d(tokens), want, rtol=1e-12)


def test_max_with_indices_counts_the_positions_of_all_slices():
    x = torch.randn(6, 5, 4, dtype=torch.float64)  # 2 volumes of 3 slices, 5 tokens
    kind = slice_pool_kind(torch.Tensor.max, (x, 1), {}, None)
    merged = merge_slices(x.max(1), 3, kind, x=x, dim=1)
    joined = x.reshape(2, 15, 4)
    assert torch.equal(merged.values, joined.max(1).values)
    assert torch.equal(merged.indices, joined.max(1).indices)


@pytest.mark.parametrize(("call", "kind"), [
    (lambda x: (torch.Tensor.mean, (x, 1), {}), "mean"),
    (lambda x: (torch.Tensor.__getitem__, (x, (slice(None), 0)), {}), "select"),
    (lambda x: (torch.Tensor.amax, (x,), {"dim": -2}), "amax"),
    (lambda x: (torch.Tensor.mean, (x, -1), {}), "mean"),  # channels-first tokens (B, C, L)
    (lambda x: (torch.Tensor.__getitem__, (x, (slice(None), slice(1, None))), {}), None),
    (lambda x: (torch.Tensor.mean, (x,), {}), None),  # over every dim, the batch too
    (lambda x: (torch.Tensor.sum, (x, 0), {}), None),
])
def test_which_ops_pool_the_positions_of_tokens(call, kind):
    func, args, kwargs = call(torch.zeros(6, 5, 4))
    assert slice_pool_kind(func, args, kwargs, None) == kind


def test_maps_laid_end_to_end_along_a_position_dim():
    maps = torch.randn(2, 4, 3, 5, 6)  # (N, C, D, H, W)
    joined = slices_end_to_end(maps, axis=2, position_dim=2)
    assert joined.shape == (2, 4, 15, 6)
    assert torch.equal(joined[:, :, 5:10], maps[:, :, 1])


# -- children on volumes: tubelets, depth position, divided depth attention ----------------------

def _lifted(model2d, *, tubelet=None, position=False, attention=False):
    """Patch embedding and blocks on volumes; the root's code and the attention's on slices."""
    model = copy.deepcopy(model2d)
    embed = model.patch_embed
    embed.proj = (PlanarConv3d.from_2d(embed.proj) if tubelet is None
                  else tubelet_conv(embed.proj, **tubelet))
    slice_code_module(embed, lifted={"proj"})
    if position:
        with_depth_position(embed, DepthPosition(192, max_depth=8).double())
    for block in model.blocks:
        slice_code_module(block.attn)
        if attention:
            with_depth_attention(block.attn, DepthAttention.from_qkv(
                block.attn.qkv, num_heads=block.attn.num_heads))
    return slice_code_module(model, head=True, lifted={"patch_embed", "blocks"},
                             image_size=(SIZE, SIZE))


OPTIONS = {
    "planar": {},
    "center": {"tubelet": {"init": "center", "depth": 3, "pool": False}},
    "depth position": {"position": True},
    "depth attention": {"attention": True},
    "all": {"tubelet": {"init": "center", "depth": 3, "pool": False}, "position": True,
            "attention": True},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_depth_option_equals_planar_at_initialisation(option):
    model2d = _vit(global_pool="avg")
    model3d = _lifted(model2d, **OPTIONS[option])
    x = _volume()
    with torch.no_grad():
        assert_close(model3d(x), _head_oracle(model2d, x), rtol=1e-10)
        tokens = model3d.forward_features(x)
        for d, want in enumerate(_per_slice(model2d.forward_features, x)):
            assert_close(tokens[:, d], want, rtol=1e-10)


def test_center_tubelets_equal_planar_on_their_middle_slices():
    model2d = _vit(global_pool="avg")
    model3d = _lifted(model2d, tubelet={"init": "center", "depth": 3, "pool": True})
    x = _volume(depth=7)
    with torch.no_grad():
        assert model3d.forward_features(x).shape[1] == 2
        assert_close(model3d(x), _head_oracle(model2d, x[:, :, 1:6:3]), rtol=1e-10)


def test_inflate_tubelets_give_the_2d_output_on_equal_slices():
    model2d = _vit(global_pool="avg")
    model3d = _lifted(model2d, tubelet={"init": "inflate", "depth": 2, "pool": True})
    image = _volume(depth=1)[:, :, 0]
    with torch.no_grad():
        out = model3d(image.unsqueeze(2).expand(2, 3, 4, SIZE, SIZE))
        assert_close(out, model2d(image), rtol=1e-10)


def test_own_code_that_counts_slices_from_its_input_fails_after_tubelets():
    model3d = _lifted(_vit(), tubelet={"init": "center", "depth": 3, "pool": True})
    with pytest.raises(RuntimeError, match="pooled depth"):
        model3d.forward_intermediates(_volume(depth=6), indices=1, intermediates_only=True)


@pytest.mark.parametrize("option", ["depth position", "depth attention", "all"])
def test_depth_layers_learn_from_a_volume_whose_slices_differ(option):
    model2d = _vit(global_pool="avg")
    model3d = _lifted(model2d, **OPTIONS[option]).train()
    x = _volume()
    before = model3d(x).detach()
    added = {n: p for n, p in model3d.named_parameters() if "depth_" in n}
    optimizer = torch.optim.SGD(model3d.parameters(), lr=1.0)
    model3d(x).square().mean().backward()
    for name, p in added.items():
        if name.endswith(("proj.weight", "proj.bias", "table")):
            assert p.grad is not None and p.grad.abs().max() > 0, name
    optimizer.step()
    with torch.no_grad():
        assert (model3d(x) - before).abs().max() > 1e-6


def test_slice_code_models_copy_and_pickle():
    model3d = _lifted(_vit(global_pool="avg"), position=True, attention=True)
    x = _volume()
    buffer = io.BytesIO()
    torch.save(model3d, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(model3d), torch.load(buffer, weights_only=False)):
        assert is_slice_code(other) and is_slice_code(other.patch_embed)
        with torch.no_grad():
            assert torch.equal(other(x), model3d(x))


def test_a_feature_extractor_calling_a_method_of_its_vit_lifts_what_it_calls():
    """timm's features_only ViT calls `self.model.forward_intermediates(x)`: no hook fires for
    that call, its code runs as the extractor's own, and the modules it calls are lifted."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor2d = timm.create_model("vit_tiny_patch16_224", img_size=SIZE, depth=2,
                                        features_only=True, out_indices=(0, 1)).eval().double()
    extractor = copy.deepcopy(extractor2d)
    vit = extractor.model
    vit.patch_embed.proj = tubelet_conv(vit.patch_embed.proj, init="center", depth=3, pool=False)
    slice_code_module(vit.patch_embed, lifted={"proj"})
    slice_code_module(vit, lifted={"patch_embed"})
    slice_code_module(extractor, lifted={"model"})
    x = _volume()
    with torch.no_grad():
        maps = extractor(x)
        want = _per_slice(extractor2d, x)
    for i, got in enumerate(maps):
        assert got.shape == (2, 192, 3, 2, 2)
        for d in range(3):
            assert_close(got[:, :, d], want[d][i], rtol=1e-10)


class _ZeroHeadNet(nn.Module):
    """A patch stem, a position embedding resized to the map and a mean over the tokens, then a
    classifier initialised to zero (as timm initialises some heads): its output is zero whatever
    the order of its rows, but not once the classifier is trained. Its own code unpacks a
    map's four sizes, so it cannot run on a volume as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 8, 4, 4))
        self.fc = nn.Linear(8, 5)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        t = self.stem(x)
        b, c, h, w = t.shape
        t = t + nn.functional.interpolate(self.pos, size=(h, w), mode="bilinear")
        return self.fc(t.reshape(b, c, h * w).transpose(1, 2).mean(1))


def test_a_zero_initialised_head_does_not_make_its_network_order_free():
    # order-freeness is a property of the code, judged for weights that make the output depend
    # on the input: the network converted at initialisation must stay exact once trained
    torch.manual_seed(0)
    model = _ZeroHeadNet().eval()
    model3d = planar3d.convert(model, example_input=torch.randn(2, 3, 16, 16))
    actions = {e.path: e.action for e in planar3d.conversion_report(model3d).entries}
    assert actions.get("") != "all slices"
    with torch.no_grad():
        for m in (model, model3d):
            m.fc.weight.copy_(torch.linspace(-1, 1, 40).reshape(5, 8))
    x = torch.randn(2, 3, 3, 16, 16)
    with torch.no_grad():
        t = model.stem(x.transpose(1, 2).reshape(6, 3, 16, 16)) + model.pos
        want = model.fc(t.flatten(2).transpose(1, 2).reshape(2, 3 * 16, 8).mean(1))
        assert_close(model3d(x), want)

"""Token models through `planar3d.convert`: the layout, the heads, fixed sizes, the depth options.

Float64 throughout: "equals planar at initialisation" is checked to rounding. The head oracle
(independent of planar3d) is the 2D `forward_head` on one token sequence: the slice-averaged
prefix tokens, then the patch tokens of every slice.
"""

import copy
import io
import warnings

import pytest
import torch
from p3d_helpers import assert_close

import planar3d
from planar3d import UnsupportedModuleError

timm = pytest.importorskip("timm")

SIZE = 32


def _vit(name="vit_tiny_patch16_224", **kwargs):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, img_size=SIZE, depth=2, **kwargs)
    with torch.no_grad():  # informative class tokens, norms and biases
        for pname, p in model.named_parameters():
            if p.dim() <= 1 or "token" in pname:
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval().double()


def _example():
    return torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def _convert(model, **kwargs):
    return planar3d.convert(model, example_input=_example(), **kwargs)


def _volume(n=2, depth=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, depth, SIZE, SIZE, generator=g, dtype=torch.float64)


def _per_slice(fn, x):
    with torch.no_grad():
        return [fn(x[:, :, d]) for d in range(x.shape[2])]


def _head_oracle(model2d, x):
    feats = torch.stack(_per_slice(model2d.forward_features, x), 1)  # (N, D, L, C)
    p = model2d.num_prefix_tokens
    tokens = torch.cat([feats[:, :, :p].mean(1), feats[:, :, p:].flatten(1, 2)], 1)
    with torch.no_grad():
        return model2d.forward_head(tokens)


HEADS = {"class token": {}, "mean": {"global_pool": "avg"}, "max": {"global_pool": "max"},
         "mean and max, registers": {"global_pool": "avgmax", "reg_tokens": 2},
         "attention pool (MAP)": {"global_pool": "map"}}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_converted_vit_pools_the_tokens_of_all_slices(head):
    model2d = _vit(**HEADS[head])
    model3d = _convert(model2d)
    x = _volume()
    with torch.no_grad():
        assert_close(model3d(x), _head_oracle(model2d, x), rtol=1e-10)
        image = x[:, :, 0]  # P2: a volume of equal slices gives the 2D output
        assert_close(model3d(image.unsqueeze(2).expand(2, 3, 4, SIZE, SIZE)), model2d(image),
                     rtol=1e-10)


def test_the_report_names_the_slice_code_and_the_head_run_on_all_slices():
    report = planar3d.conversion_report(_convert(_vit(global_pool="map")))
    actions = {e.path: e.action for e in report.entries}
    assert actions[""] == "slice code" and actions["patch_embed"] == "slice code"
    assert actions["attn_pool"] == "all slices"
    assert actions["blocks.0"] == "verified" and actions["blocks.0.attn"] == "folded"


def test_tokens_lay_out_as_n_d_l_c_and_maps_as_n_c_d_h_w():
    model2d = _vit(reg_tokens=1)
    model3d = _convert(model2d)
    x = _volume()
    with torch.no_grad():
        tokens = model3d.forward_features(x)
        maps = model3d.forward_intermediates(x, indices=2, intermediates_only=True)
    assert tokens.shape == (2, 3, 6, 192)
    for d, (want_tokens, want_maps) in enumerate(zip(
            _per_slice(model2d.forward_features, x),
            _per_slice(lambda i: model2d.forward_intermediates(i, indices=2,
                                                                intermediates_only=True), x))):
        assert_close(tokens[:, d], want_tokens, rtol=1e-10)
        for got, want in zip(maps, want_maps):
            assert got.shape == (2, 192, 3, 2, 2)
            assert_close(got[:, :, d], want, rtol=1e-10)


def test_slices_of_another_size_say_so_and_name_dynamic_img_size():
    model3d = _convert(_vit())
    with pytest.raises(ValueError, match=r"48x48.*32x32.*dynamic_img_size=True"):
        model3d(torch.zeros(1, 3, 2, 48, 48, dtype=torch.float64))


# -- depth options ------------------------------------------------------------------------------

OPTIONS = {
    "center": {"mode": "center"},
    "depth position": {"depth_layers": ("position",)},
    "depth attention": {"depth_layers": ("attention",)},
    "center, position and attention": {"mode": "center",
                                       "depth_layers": ("position", "attention")},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_depth_option_equals_planar_at_initialisation(option):
    model2d = _vit(global_pool="avg")
    planar, model3d = _convert(model2d), _convert(model2d, **OPTIONS[option])
    x = _volume()
    with torch.no_grad():
        assert_close(model3d(x), planar(x), rtol=1e-12)


def test_center_tubelets_equal_planar_on_their_middle_slices():
    model2d = _vit(global_pool="avg")
    planar = _convert(model2d)
    tubelets = _convert(model2d, mode="center", depth="pool", kernel_depth=3)
    x = _volume(depth=7)
    with torch.no_grad():
        assert tubelets.forward_features(x).shape[1] == 2  # 7 slices: 2 tubelets of 3
        assert_close(tubelets(x), planar(x[:, :, 1:6:3]), rtol=1e-12)


@pytest.mark.parametrize("pool", [False, True])
def test_inflate_gives_the_2d_output_on_equal_slices(pool):
    model2d = _vit(global_pool="avg")
    model3d = _convert(model2d, mode="inflate", kernel_depth=2 if pool else 3,
                       depth="pool" if pool else "keep")
    image = _volume(depth=1)[:, :, 0]
    with torch.no_grad():  # equal slices; without tubelets the middle tokens see no border
        out = model3d(image.unsqueeze(2).expand(2, 3, 4, SIZE, SIZE))
    if pool:
        assert_close(out, model2d(image), rtol=1e-10)
    else:
        tokens = model3d.forward_features(image.unsqueeze(2).expand(2, 3, 3, SIZE, SIZE))
        assert_close(tokens[:, 1], model2d.forward_features(image), rtol=1e-10)


@pytest.mark.parametrize("option", ["depth position", "depth attention",
                                    "center, position and attention"])
def test_one_step_on_differing_slices_trains_the_new_parameters_and_departs_from_planar(option):
    model2d = _vit(global_pool="avg")
    planar, model3d = _convert(model2d), _convert(model2d, **OPTIONS[option])
    model3d.train()
    x = _volume()
    optimizer = torch.optim.SGD(model3d.parameters(), lr=0.5)
    model3d(x).square().mean().backward()
    added = {n: p.grad for n, p in model3d.named_parameters()
             if n.endswith(("depth_position.table", "depth_attention.proj.weight"))}
    assert added and all(g is not None and g.abs().max() > 0 for g in added.values())
    optimizer.step()
    with torch.no_grad():
        assert (model3d.eval()(x) - planar(x)).abs().max() > 1e-6


def test_without_depth_kernels_every_slice_keeps_its_tokens_under_depth_pool():
    model2d = _vit(global_pool="avg")
    x = _volume(depth=4)
    with torch.no_grad():
        assert_close(_convert(model2d, depth="pool")(x), _convert(model2d)(x), rtol=1e-12)


def test_the_report_lists_the_added_depth_layers():
    report = planar3d.conversion_report(
        _convert(_vit(), mode="center", depth="pool", depth_layers=("position", "attention")))
    added = {e.path: e.detail for e in report.entries if e.action == "depth layer"}
    assert set(added) == {"patch_embed.proj.depth_position", "blocks.0.attn.depth_attention",
                          "blocks.1.attn.depth_attention"}
    assert "q/k/v copied from blocks.0.attn.qkv" in added["blocks.0.attn.depth_attention"]
    tubelet = next(e for e in report.entries if e.path == "patch_embed.proj")
    assert "tubelets of 3 slices" in tubelet.detail


def test_thickening_a_planar_vit_keeps_its_outputs_and_can_add_depth_layers():
    model3d = _convert(_vit(global_pool="avg"))
    thick = planar3d.thicken(model3d, init="center", depth_layers=("position", "attention"))
    x = _volume()
    with torch.no_grad():
        assert_close(thick(x), model3d(x), rtol=1e-12)
    assert isinstance(thick.patch_embed.proj, planar3d.ThickConv3d)
    assert hasattr(thick.blocks[0].attn, "depth_attention")


def test_a_2d_checkpoint_loads_into_a_vit_with_depth_layers():
    model_a, model_b = _vit(global_pool="avg"), _vit(global_pool="avg")
    with torch.no_grad():
        for p in model_b.parameters():
            p.add_(0.1)
    model3d = _convert(model_a, mode="center", depth_layers=("position", "attention"))
    result = planar3d.load_2d_state_dict(model3d, model_b.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = _volume()
    with torch.no_grad():
        assert_close(model3d(x), _convert(model_b)(x), rtol=1e-10)


def test_converted_vits_with_depth_layers_copy_and_pickle():
    model3d = _convert(_vit(), mode="center", depth_layers=("position", "attention"))
    buffer = io.BytesIO()
    torch.save(model3d, buffer)
    buffer.seek(0)
    x = _volume()
    for other in (copy.deepcopy(model3d), torch.load(buffer, weights_only=False)):
        with torch.no_grad():
            assert torch.equal(other(x), model3d(x))


def test_options_without_a_site_are_refused_with_the_reason():
    torch.manual_seed(0)  # token mixing by MLPs: no attention to divide
    mixer = timm.models.mlp_mixer.MlpMixer(img_size=SIZE, num_blocks=2, embed_dim=64)
    mixer = mixer.eval().double()
    with pytest.raises(UnsupportedModuleError, match="divided depth attention"):
        _convert(mixer, depth_layers=("attention",))
    linear_patches = timm.models.gemma4_vit.Gemma4VitClassifier(
        img_size=SIZE, embed_dim=64, depth=1, num_heads=2, head_dim=32, intermediate_size=64)
    with pytest.raises(UnsupportedModuleError, match="no patch embedding convolution"):
        _convert(linear_patches.eval().double(), mode="center", depth="pool")
    with pytest.raises(ValueError, match="depth_layers must be"):
        _convert(_vit(), depth_layers=("time",))


@pytest.mark.parametrize("method", ["sum", "repeat"])
def test_a_converted_vit_takes_single_channel_volumes(method):
    model3d = _convert(_vit())
    adapted = planar3d.adapt_input_channels(copy.deepcopy(model3d), 1, method=method)
    x = _volume()[:, :1]
    with torch.no_grad():
        assert_close(adapted(x), model3d(x.expand(2, 3, 3, SIZE, SIZE)), rtol=1e-10)
    if method == "sum":
        assert adapted.patch_embed.proj.weight.shape[1] == 1

"""Exact or loud: one fast regression test per way a converted network went wrong in practice.

The promise (docs/design.md §1): `convert` returns a network that computes exactly the reference, or
raises UnsupportedModuleError naming the module, the reason and the fix; never a silent wrong
answer, never a network that converts and then crashes. The reference is P0: the 2D network on
the N·D slices stacked as one batch, with a global head pool pooling over D, H and W. Outputs are
compared in float64 (converted in float32 as users do, then `.double()`), on N=2 volumes of D=3
distinct slices and on a depth-constant volume, so only float rounding may separate them; the
comparisons are the network sweep's (network_check.py).
"""

import copy

import pytest
import timm
import torch
import torchvision
from network_check import check_copies, check_eval, check_train_step, volumes
from p3d_helpers import randomize
from p3d_oracle import fold_volume, stacked_reference
from research_blocks import (
    DropConnect,
    GeM,
    RollMix,
    ZeroMeanKernel,
    conv_bn,
    scale_output,
    shift_input,
)
from research_nets import (
    BranchWithEmbedding,
    DictFeatures,
    ItemScaledHead,
    ItemScaledWithEmbedding,
    ListScaledWithEmbedding,
    MeanGatedClassifier,
    MeanGatedEmbedding,
    MeanGatedRoot,
    MinibatchStdDiscriminator,
    SmallUNet,
)
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from zoo import random_sites, set_random_rates

import planar3d
from planar3d import UnsupportedModuleError


def _model(build) -> nn.Module:
    torch.manual_seed(0)
    return randomize(build()).eval()


def _example(channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


def assert_exact(model2d, model3d, *, channels=3, size=32, head=None, train=True, xs=None,
                 batch_coupled=False) -> None:
    """P0 in eval mode on distinct and depth-constant volumes, then one train step (loss, every
    gradient, every buffer); both models end up in float64."""
    xs = xs or volumes(channels, size)
    model2d, model3d = model2d.double(), model3d.double()
    check_eval(model2d, model3d, xs, head, batch_coupled=batch_coupled)
    if train:
        check_train_step(model2d, model3d, xs["distinct"], head)


def assert_exact_or_refused(build, *, names, channels=3, size=32, **kwargs) -> None:
    """Either `convert` raises UnsupportedModuleError naming a module of a type in `names`, or
    the converted network is exact."""
    model = _model(build)
    try:
        model3d = planar3d.convert(model, example_input=_example(channels, size))
    except UnsupportedModuleError as error:
        assert error.module_type in names, f"names {error.module_type}, not one of {names}"
        assert error.fix, "a refusal must say how to fix it"
        return
    assert_exact(model, model3d, channels=channels, size=size, **kwargs)


# 1. Nothing leaves convert unverified ---------------------------------------------------------
def test_fx_feature_extractor_embedding_pools_the_whole_volume():
    model = _model(lambda: create_feature_extractor(torchvision.models.resnet18(),
                                                    {"layer4": "feat", "flatten": "emb"}))
    model3d = planar3d.convert(model, example_input=_example(size=64))
    assert_exact(model, model3d, head="avgpool")


def test_fx_feature_extractor_returning_the_classifier_runs_exactly():
    model = _model(lambda: create_feature_extractor(torchvision.models.resnet18(),
                                                    {"layer2": "c2", "fc": "logits"}))
    model3d = planar3d.convert(model, example_input=_example(size=64))
    assert_exact(model, model3d, head="avgpool")


def test_conversion_keeps_the_eval_flag_of_a_torchvision_feature_extractor():
    # its deepcopy comes back in train mode; the converted network must still be in eval mode
    model = _model(lambda: create_feature_extractor(torchvision.models.resnet18(),
                                                    {"layer4": "feat", "flatten": "emb"}))
    model3d = planar3d.convert(model, example_input=_example(size=64))
    assert [n for n, m in model3d.named_modules() if m.training] == []


def test_gem_pooling_then_flatten_pools_the_whole_volume():
    model = _model(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), GeM(),
                                         nn.Flatten()))
    model3d = planar3d.convert(model, example_input=_example())
    assert_exact(model, model3d, head="2")


def test_flatten_without_a_global_pool_is_refused():
    model = _model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Flatten(1),
                                         nn.Linear(4 * 16 * 16, 5)))
    with pytest.raises(UnsupportedModuleError) as info:
        planar3d.convert(model, example_input=_example())
    assert info.value.module_type in ("Flatten", "Linear"), str(info.value)


def test_dict_of_feature_maps_and_embedding():
    model = _model(DictFeatures)
    model3d = planar3d.convert(model, example_input=_example())
    assert_exact(model, model3d, head="")


def test_segmentation_model_with_an_auxiliary_classifier():
    import segmentation_models_pytorch as smp

    model = _model(lambda: smp.Unet("resnet18", encoder_weights=None, encoder_depth=3,
                                    decoder_channels=(16, 8, 8), classes=2,
                                    aux_params={"classes": 3}))
    model3d = planar3d.convert(model, example_input=_example())
    assert_exact(model, model3d, head="classification_head.0")


def test_deep_supervision_outputs_in_train_mode():
    import monai.networks.nets as monai_nets

    model = _model(lambda: monai_nets.DynUNet(
        2, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
        filters=[4, 8, 8], deep_supervision=True, deep_supr_num=1))
    model3d = planar3d.convert(model, example_input=_example(1))
    assert_exact(model, model3d, channels=1)


# 2. Decisions the probe cannot see ------------------------------------------------------------
def _decisive_volumes() -> dict[str, torch.Tensor]:
    """The first slice of volume 0 has a positive mean, volume 0 as a whole a negative one: a
    decision on 'the first image' differs between the stacked slices and the volumes."""
    xs = volumes(3, 32)
    x = xs["distinct"].clone()
    x[0, :, 0] += 2.0
    x[0, :, 1:] -= 2.0
    return {"distinct": x, "constant": xs["constant"]}


@pytest.mark.parametrize("build, head", [
    (ItemScaledHead, ("", "pool")), (ItemScaledWithEmbedding, "pool"),
    (ListScaledWithEmbedding, "pool"), (BranchWithEmbedding, "pool"),
], ids=["item_in_a_head", "item_with_embedding", "tolist_with_embedding",
        "branch_with_embedding"])
def test_data_dependent_control_flow_is_exact_or_refused(build, head):
    assert_exact_or_refused(build, names=(build.__name__,), head=head, xs=_decisive_volumes())


@pytest.mark.parametrize("dim", [1, -1, -2, 2, 3])
def test_glu_over_a_dim(dim):
    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GLU(dim=dim),
                             nn.Conv2d(4 if dim == 1 else 8, 2, 1))

    if dim in (1, -1, -2):  # channels, W, H: the same dim of a volume, kept as it is
        model = _model(build)
        assert_exact(model, planar3d.convert(model, example_input=_example()))
    else:
        assert_exact_or_refused(build, names=("GLU",))


# 3. Random layers: one draw per slice, decided by what the layer is ---------------------------
RANDOM = {  # the layer at p=0.1, and the unit it drops: an element, a channel, a whole image
    "dropout": (lambda: nn.Dropout(0.1), "element"),
    "dropout2d": (lambda: nn.Dropout2d(0.1), "channel"),
    "drop_path_timm": (lambda: timm.layers.DropPath(0.1), "image"),
    "stochastic_depth_torchvision": (lambda: torchvision.ops.StochasticDepth(0.1, "row"),
                                     "image"),
    "drop_block_torchvision": (lambda: torchvision.ops.DropBlock2d(0.1, 3), "element"),
    "drop_connect_monai": (lambda: DropConnect(0.1), "image"),
}


def _dropped(out: torch.Tensor, unit: str) -> torch.Tensor:
    """(N, C, D, H, W) output of positive values -> (N, D, units) masks of dropped units."""
    zero = (out == 0).movedim(2, 1)
    if unit == "image":
        return zero.flatten(2).all(2, keepdim=True)
    if unit == "channel":
        return zero.flatten(3).all(3)
    return zero.flatten(2)


@pytest.mark.parametrize("kind", sorted(RANDOM))
def test_random_layer_draws_independent_masks_per_slice(kind):
    layer, unit = RANDOM[kind]
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), layer()).eval()
    # 16 volumes of 64 identical slices: any difference between slices is a random draw
    image = torch.randn(16, 3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    x = image.expand(-1, -1, 64, -1, -1).contiguous()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(100)
        want = _dropped(stacked_reference(model.train(), x, None), unit).float()
    model.eval()
    for seed in range(3):  # the conversion's own random draws must not decide
        torch.manual_seed(seed)
        model3d = planar3d.convert(model, example_input=_example(size=6)).train()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(100)
            got = _dropped(model3d(x), unit)
        # one draw per slice: a volume whose 64 slices all share a mask has odds below 0.002
        same = sum(not bool((got[n] != got[n, :1]).any()) for n in range(got.shape[0]))
        assert same <= 2, (f"conversion seed {seed}: in {same} of 16 volumes every slice got "
                           "the same mask (one draw per volume, not per slice)")
        # the rate per slice: two binomial estimates agree within 5 standard deviations
        rate, expected = got.float().mean().item(), want.mean().item()
        spread = 5 * (2 * expected * (1 - expected) / got.numel()) ** 0.5 + 0.005
        assert abs(rate - expected) <= spread, (
            f"conversion seed {seed}: drops {rate:.3f} of the {unit}s, the 2D network on the "
            f"stacked slices {expected:.3f}")


def test_convnext_drop_path_draws_per_slice_in_every_stage():
    model = _model(lambda: timm.create_model("convnext_atto", features_only=True,
                                             drop_path_rate=0.1))
    # 2 volumes of 16 identical slices: a drop path at 0.5 leaves them all equal with odds 2^-31
    x = torch.randn(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    x = x.expand(-1, -1, 16, -1, -1).contiguous()
    for seed in range(2):
        torch.manual_seed(seed)
        model3d = planar3d.convert(model, example_input=_example())
        set_random_rates(model3d, 0.0)
        set_random_rates(model3d, 0.5, [s for s in random_sites(model3d) if "drop_path" in s[0]])
        with torch.no_grad():
            stages = model3d.train()(x)
        equal = [i for i, s in enumerate(stages) if bool((s == s[:, :, :1]).all())]
        assert not equal, (f"conversion seed {seed}: stages {equal} give equal slices on a "
                           "depth-constant volume in train mode (one drop-path draw per volume)")


# 4. Batch-coupled layers see the N·D slices as one batch --------------------------------------
@pytest.mark.parametrize("build", [
    lambda: nn.Sequential(conv_bn(3, 8), nn.Conv2d(8, 8, 3, padding=1),
                          nn.BatchNorm2d(8, track_running_stats=False), nn.Conv2d(8, 2, 1)),
    MinibatchStdDiscriminator,
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), RollMix(), nn.Conv2d(8, 2, 1)),
], ids=["batchnorm_without_running_stats", "minibatch_stddev", "batch_roll"])
def test_batch_coupled_layers_see_the_stacked_slices(build):
    model = _model(build)
    model3d = planar3d.convert(model, example_input=_example())
    assert_exact(model, model3d, batch_coupled=True)


# 5. Parametrisations and hooks ----------------------------------------------------------------
PARAMETRISATIONS = {
    "weight_norm": nn.utils.parametrizations.weight_norm,
    "spectral_norm": nn.utils.parametrizations.spectral_norm,
    "old_spectral_norm": nn.utils.spectral_norm,
    "register_parametrization": lambda conv: nn.utils.parametrize.register_parametrization(
        conv, "weight", ZeroMeanKernel()),
}


@pytest.mark.parametrize("kind", sorted(PARAMETRISATIONS))
def test_parametrised_conv_forward_and_backward(kind):
    model = _model(lambda: nn.Sequential(
        conv_bn(3, 8), PARAMETRISATIONS[kind](nn.Conv2d(8, 8, 3, padding=1)), nn.ReLU()))
    model3d = planar3d.convert(model, example_input=_example())
    assert_exact(model, model3d)


def test_old_weight_norm_is_exact_or_refused():
    # torch cannot deep-copy it (its weight is not a leaf): convert must still be loud
    assert_exact_or_refused(lambda: nn.Sequential(
        conv_bn(3, 8), nn.utils.weight_norm(nn.Conv2d(8, 8, 3, padding=1))),
        names=("Conv2d", "Sequential"))


@pytest.mark.parametrize("inplace", [False, True])
def test_a_hook_handle_from_before_conversion_still_removes_the_hook(inplace):
    """A RemovableHandle acts on the model its hook was registered on, as after
    `copy.deepcopy`: converted in place, that model is the converted network, and
    handle.remove() removes the hook from it; converted as a copy, the copy keeps its own copy
    of the hook and handle.remove() removes the hook from the 2D model only."""
    def build():
        return _model(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                            nn.Conv2d(8, 2, 1)))

    model = build()
    handles = [model[0].register_forward_hook(scale_output),
               model.register_forward_pre_hook(shift_input)]
    hooked = copy.deepcopy(model).double()
    model3d = planar3d.convert(model, example_input=_example(), inplace=inplace).double()
    xs = volumes(3, 32)
    check_eval(hooked, model3d, xs, None)
    for handle in handles:
        handle.remove()
    check_eval(build().double() if inplace else hooked, model3d, xs, None)
    assert scale_output not in model[0]._forward_hooks.values()
    assert shift_input not in model._forward_pre_hooks.values()


def test_timm_expansion_features_copy_and_pickle_with_their_hooks():
    model = _model(lambda: timm.create_model("mobilenetv3_small_050", features_only=True,
                                             feature_location="expansion", out_indices=(1, 2)))
    model3d = planar3d.convert(model, example_input=_example())
    _, skipped = check_copies(model.double(), model3d.double(), volumes(3, 32)["distinct"],
                              None)
    assert skipped == []


# 6. Inputs convert should understand ----------------------------------------------------------
def test_timm_in_chans_1_converts_without_an_example_input():
    model = _model(lambda: timm.create_model("resnet18", in_chans=1, num_classes=4))
    model3d = planar3d.convert(model)
    assert_exact(model, model3d, channels=1, size=64, head="global_pool.pool", train=False)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_modules_are_refused_with_the_fix(how):
    eager = _model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
    compiled = torch.jit.script(eager) if how == "script" else torch.jit.trace(eager, _example())
    with pytest.raises(UnsupportedModuleError, match=r"(?i)script") as info:
        planar3d.convert(compiled, example_input=_example())
    assert "eager" in str(info.value), str(info.value)


@pytest.mark.parametrize("build, size", [
    (lambda: create_feature_extractor(torchvision.models.mobilenet_v3_small(),
                                      {"features.3": "c3", "features.8": "c8"}), 64),
    (lambda: torch.fx.symbolic_trace(SmallUNet()), 32),
], ids=["feature_extractor", "symbolic_trace"])
def test_fx_graph_modules_convert_exactly_and_copy(build, size):
    model = _model(build)
    model3d = planar3d.convert(model, example_input=_example(size=size))
    xs = volumes(3, size)
    check_copies(model.double(), model3d.double(), xs["distinct"], None)
    assert_exact(model, model3d, size=size, xs=xs)


# 7. Tolerance: nothing beyond float rounding is accepted --------------------------------------
@pytest.mark.parametrize("build, head", [
    (MeanGatedClassifier, ("", "pool")), (MeanGatedRoot, None), (MeanGatedEmbedding, ""),
], ids=["classifier", "feature_maps", "embedding"])
def test_mean_gated_output_is_exact_or_refused(build, head):
    assert_exact_or_refused(build, names=(build.__name__,), head=head)


def test_the_reference_of_a_batch_coupled_network_is_the_stacked_batch():
    """The oracle itself: P0 of a network that couples the batch is the 2D network on the N·D
    stacked slices, laid out as volumes."""
    model = _model(MinibatchStdDiscriminator).double()
    x = volumes(3, 32)["distinct"]
    with torch.no_grad():
        want = model(fold_volume(x)).reshape(2, 3, 1, 8, 8).movedim(1, 2)
    assert torch.equal(stacked_reference(model, x, None), want)

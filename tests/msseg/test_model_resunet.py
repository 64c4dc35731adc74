"""The planar res-u-net: the paper's architecture and parameter counts, freezing, other encoders."""

import pytest
import timm
import torch
import torch.nn.functional as F
from msseg.config import preset
from msseg.model.encoder import RandomEncoderWarning
from msseg.model.resunet import DecoderLevel, build_model
from msseg.model.summary import parameter_counts, summary
from torch import nn

import planar3d


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return build_model(preset("paper"))


def test_paper_parameter_counts_equal_the_public_code(paper_model):
    counts = parameter_counts(paper_model)
    assert counts["encoder"].total == 7_635_264
    assert counts["bottleneck"].total == 4_719_616
    assert counts["decoder"].total == 10_516_001
    assert counts["total"].total == 22_870_881
    assert counts["total"].trainable == 10_516_001
    assert counts["total"].frozen == 12_354_880
    text = summary(paper_model)
    assert "22,870,881" in text and "10,516,001" in text and "12,354,880" in text


def test_paper_architecture_matches_design(paper_model):
    m = paper_model
    assert m.reductions == [(1, 1, 1), (2, 2, 2), (4, 4, 4), (8, 8, 8), (16, 16, 16)]
    convs = [x for x in m.encoder.modules() if isinstance(x, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128] + [256] * 3 + [512] * 3
    assert all(isinstance(c, planar3d.PlanarConv3d) and c.kernel_size == (1, 3, 3)
               for c in convs)
    pools = [x for x in m.encoder.modules() if isinstance(x, nn.MaxPool3d)]
    assert len(pools) == 4 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert [c.kernel_size for c in m.bottleneck if isinstance(c, nn.Conv3d)] == [(1, 3, 3)] * 2
    assert not any(isinstance(x, (nn.BatchNorm3d, nn.Dropout)) for x in m.modules())
    for level, f, depth in zip(m.decoder, (256, 128, 64, 32), (2, 3, 3, 3)):
        assert (level.up.out_channels, level.up.kernel_size, level.up.stride) == (
            f, (2, 2, 2), (2, 2, 2))
        assert level.conv_a.kernel_size == level.conv_b.kernel_size == (depth, 3, 3)
        assert level.conv_a.dilation == (1, 2, 2) and level.conv_b.dilation == (1, 1, 1)
    assert [level.out_channels for level in m.decoder] == [1024, 512, 256, 128]
    assert m.head.kernel_size == (1, 1, 1) and m.head_up is None
    assert "1024x1x16x16" in summary(m)  # bottleneck concat at the paper's 1x16x16


def test_encoder_is_the_2d_vgg_on_every_slice(paper_model):
    features = timm.create_model("vgg16", features_only=True, out_indices=(0, 1, 2, 3))
    planar = paper_model.encoder.features.state_dict()
    features.load_state_dict({k: v.squeeze(2) if v.dim() == 5 else v for k, v in planar.items()})
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        first_skip = paper_model.encoder(x)[0]
        for d in (0, 7, 15):
            torch.testing.assert_close(first_skip[:, :, d], features(x[:, :, d])[0],
                                       rtol=1e-5, atol=1e-5)


def test_forward_gives_logits_of_the_input_size(paper_model):
    torch.manual_seed(2)
    with torch.no_grad():
        y = paper_model(torch.randn(1, 3, 16, 32, 32))
    assert y.shape == (1, 1, 16, 32, 32) and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="divisible by"):
        paper_model(torch.randn(1, 3, 16, 40, 40))


def test_freezing_options_and_frozen_parts_stay_in_eval_mode(paper_model):
    model = paper_model
    try:
        model.set_trainable(encoder=False, bottleneck=True)
        assert parameter_counts(model)["total"].trainable == 10_516_001 + 4_719_616
        model.set_trainable(encoder=True, bottleneck=True)
        assert parameter_counts(model)["total"].trainable == 22_870_881
        model.set_trainable(encoder=False, bottleneck=False)
        model.train()
        assert not model.encoder.training and not model.bottleneck.training
        assert model.decoder.training and model.training
    finally:
        model.set_trainable(encoder=False, bottleneck=False)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_level_with_even_depth_kernel_pads_like_keras_same():
    torch.manual_seed(0)
    level = DecoderLevel(8, 4, 6, factor=(2, 2, 2), kernel_depth=2)
    conv_a = nn.Conv3d(10, 6, (2, 3, 3), padding="same", dilation=(1, 2, 2))
    conv_b = nn.Conv3d(6, 6, (2, 3, 3), padding="same")  # pads 0 before, 1 after (TF rule)
    conv_a.load_state_dict(level.conv_a.state_dict())
    conv_b.load_state_dict(level.conv_b.state_dict())
    x, skip = torch.randn(1, 8, 1, 4, 4), torch.randn(1, 4, 2, 8, 8)
    joined = torch.cat([level.up(x), skip], 1)
    expected = torch.cat([joined, F.relu(conv_b(F.relu(conv_a(joined))))], 1)
    torch.testing.assert_close(level(x, skip), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet34", "mobilenetv2_100"])
def test_other_encoders_adapt_the_decoder(name):
    torch.manual_seed(0)
    config = preset("paper", encoder=name, bottleneck_filters=16, decoder_filters=(16, 8, 8, 8),
                    train_bottleneck=True)
    model = build_model(config)
    assert model.reductions[0] == (1, 2, 2) and model.head_up.stride == (1, 2, 2)
    x = torch.randn(2, 3, 16, 32, 32)
    y = model(x)
    assert y.shape == (2, 1, 16, 32, 32)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.decoder[-1].conv_b.weight.grad.abs().sum() > 0


def test_depth_keep_policy_upsamples_in_plane_only():
    torch.manual_seed(0)
    model = build_model(preset("paper", depth_policy="keep", decoder_filters=(8, 8, 8, 8),
                               bottleneck_filters=8))
    assert all(r[0] == 1 for r in model.reductions)
    assert all(level.up.kernel_size == (1, 2, 2) for level in model.decoder)
    assert model(torch.randn(1, 3, 4, 16, 16)).shape == (1, 1, 4, 16, 16)


def test_slab_that_depth_pooling_cannot_take_is_refused():
    config = preset("paper", encoder="test_resnet", encoder_stages=2, decoder_filters=(8, 8),
                    slab=1, volume_size=32, slab_step=1)
    with pytest.raises(ValueError, match="slab divisible"):
        build_model(config)


def test_random_encoder_warns():
    with pytest.warns(RandomEncoderWarning, match="RANDOM"):
        build_model(preset("paper", encoder="test_resnet", encoder_stages=2,
                           decoder_filters=(8, 8), bottleneck_filters=8))

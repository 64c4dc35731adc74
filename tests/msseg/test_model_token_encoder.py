"""A vision transformer as msseg's encoder: the multi-scale adapter, its planar conversion,
its freezing."""

import warnings

import pytest
import timm
import torch
from msseg.config import preset
from msseg.model.encoder import build_encoder
from msseg.model.resunet import build_model
from msseg.model.summary import parameter_counts, summary
from msseg.model.token_encoder import TokenEncoder2d, columnar_indices, is_columnar


def test_columnar_taps_are_evenly_spaced_and_end_at_the_last_block():
    assert columnar_indices(12, 4) == (2, 5, 8, 11)
    assert columnar_indices(4, 4) == (0, 1, 2, 3)
    assert columnar_indices(6, 1) == (5,)
    with pytest.raises(ValueError, match="3 blocks cannot give 4 stages"):
        columnar_indices(3, 4)


def test_a_vit_is_columnar_and_a_cnn_is_not():
    assert is_columnar([16, 16, 16]) and not is_columnar([2, 4, 8, 16]) and not is_columnar([16])


def _vit_features(depth=12, stages=4):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model("vit_tiny_patch16_224", depth=depth, features_only=True,
                                 out_indices=columnar_indices(depth, stages),
                                 dynamic_img_size=True)


def test_the_adapter_gives_unetr_skips_and_the_last_block_as_bottom():
    encoder = TokenEncoder2d(_vit_features(depth=4)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = encoder(x)
        taps = encoder.features(x)
    assert encoder.reductions == [1, 2, 4, 8, 16]
    assert [t.shape[1] for t in outputs] == encoder.widths == [16, 16, 24, 48, 192]
    assert [64 // t.shape[-1] for t in outputs] == encoder.reductions
    # the full-resolution skip is the stem's; block 1 is upsampled 8x, block 3 2x; block 4 is
    # the bottom as it is
    assert torch.equal(outputs[0], encoder.stem(x))
    assert torch.equal(outputs[3], encoder.up[2](taps[2]))
    assert torch.equal(outputs[4], taps[-1])


def test_the_adapter_refuses_a_pyramid():
    cnn = timm.create_model("resnet18", features_only=True, out_indices=(1, 2))
    with pytest.raises(ValueError, match="one reduction"):
        TokenEncoder2d(cnn)


def test_a_vit_encoder_is_the_2d_adapter_on_every_slice():
    """The planar encoder of a vision transformer: slice d of every output is the 2D encoder's
    output on slice d; no layer of it pools depth, whatever the depth policy."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = build_encoder("vit_tiny_patch16_224", depth_policy="pool", slab=4)
    assert encoder.channels == [16, 16, 24, 48, 192]
    assert encoder.new_layers == ("stem", "up")
    assert encoder.reductions == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8), (1, 16, 16)]
    encoder2d = encoder.module  # the converted TokenEncoder2d; its 2D twin from its own weights
    x = torch.randn(1, 3, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = encoder2d.eval()(x)
    twin = TokenEncoder2d(_vit_features()).eval()
    twin.load_state_dict(_state_2d(encoder2d))
    with torch.no_grad():
        for d in range(4):
            for got, want in zip(outputs, twin(x[:, :, d])):
                torch.testing.assert_close(got[:, :, d], want, rtol=1e-4, atol=1e-5)


def _state_2d(encoder: torch.nn.Module) -> dict:
    """The converted encoder's weights as 2D tensors (planar kernels squeezed)."""
    return {k: v.squeeze(2) if v.dim() == 5 and v.shape[2] == 1 else v
            for k, v in encoder.state_dict().items()}


def test_a_frozen_vit_encoder_trains_its_upsampling():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(preset("demo", encoder="vit_tiny_patch16_224"))
    assert not any(p.requires_grad for p in model.encoder.features.parameters())
    new = [*model.encoder.stem.parameters(), *model.encoder.up.parameters()]
    assert all(p.requires_grad for p in new)
    model.train()
    assert not model.encoder.features.training and model.encoder.up.training
    counts = parameter_counts(model)
    assert counts["encoder"].trainable == sum(p.numel() for p in new)
    x = torch.randn(1, 3, 16, 64, 64)
    assert model(x).shape == (1, 1, 16, 64, 64)
    assert "VisionTransformer" in summary(model)

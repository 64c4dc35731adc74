"""The columnar (vision transformer) encoder's multi-scale adapter, in 2D."""

import warnings

import pytest
import timm
import torch
from msseg.model.token_encoder import TokenEncoder2d, columnar_indices, is_columnar


def test_columnar_taps_are_evenly_spaced_and_end_at_the_last_block():
    assert columnar_indices(12, 4) == (2, 5, 8, 11)
    assert columnar_indices(4, 4) == (0, 1, 2, 3)
    assert columnar_indices(6, 1) == (5,)
    with pytest.raises(ValueError, match="3 blocks cannot give 4 stages"):
        columnar_indices(3, 4)


def test_a_vit_is_columnar_and_a_cnn_is_not():
    assert is_columnar([16, 16, 16]) and not is_columnar([2, 4, 8, 16]) and not is_columnar([16])


def _vit_features(stages=4):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model("vit_tiny_patch16_224", depth=4, features_only=True,
                                 out_indices=columnar_indices(4, stages), dynamic_img_size=True)


def test_the_adapter_gives_a_skip_per_scale_and_a_pooled_bottom():
    encoder = TokenEncoder2d(_vit_features()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = encoder(x)
        taps = encoder.features(x)
    assert encoder.reductions == [2, 4, 8, 16, 32]
    assert [t.shape[1] for t in outputs] == encoder.widths == [16, 24, 48, 192, 192]
    assert [64 // t.shape[-1] for t in outputs] == encoder.reductions
    # the deepest skip is the transformer's last tap, the bottom that tap max-pooled
    assert torch.equal(outputs[3], taps[-1])
    assert torch.equal(outputs[4], torch.nn.functional.max_pool2d(taps[-1], 2))


def test_the_adapter_refuses_a_pyramid():
    cnn = timm.create_model("resnet18", features_only=True, out_indices=(1, 2))
    with pytest.raises(ValueError, match="one reduction"):
        TokenEncoder2d(cnn)

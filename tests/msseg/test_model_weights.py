"""Encoder weights: a local 2D checkpoint, the timm hub (unreachable here), or random."""

import pytest
import timm
import torch
from msseg.config import preset
from msseg.model.encoder import Encoder2d, build_encoder, create_encoder_2d
from msseg.model.resunet import build_model
from msseg_helpers import state_equal

import planar3d


def _converted(features):
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return planar3d.convert(Encoder2d(features), depth="pool", example_input=example)


def test_vgg_weights_file_in_torchvision_names_equals_converting_the_loaded_2d_model(tmp_path):
    torch.manual_seed(3)
    features = timm.create_model("vgg16", features_only=True, out_indices=(0, 1))
    # torchvision / timm classifier names ("features.0.weight"), plus tensors the encoder ignores
    state = {k.replace("features_", "features."): v for k, v in features.state_dict().items()}
    state["classifier.6.weight"] = torch.randn(10, 4096)
    path = tmp_path / "vgg16.pth"
    torch.save({"state_dict": state}, path)
    encoder = build_encoder("vgg16", stages=2, weights=path).module
    assert state_equal(encoder.state_dict(), _converted(features).state_dict())


def test_resnet_weights_file_in_timm_names(tmp_path):
    torch.manual_seed(4)
    full = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    features = timm.create_model("resnet18", features_only=True, out_indices=(0, 1, 2, 3))
    features.load_state_dict({k: v for k, v in full.state_dict().items()
                              if k in features.state_dict()})
    encoder = build_encoder("resnet18", weights=path).module
    assert state_equal(encoder.state_dict(), _converted(features).state_dict())
    model = build_model(preset("paper", encoder="resnet18", weights=str(path), volume_size=32,
                               decoder_filters=(8, 8, 8, 8), bottleneck_filters=8))
    assert state_equal(model.encoder.state_dict(), encoder.state_dict())


def test_weights_file_that_does_not_fit_is_refused(tmp_path):
    features = timm.create_model("resnet18", features_only=True, out_indices=(0, 1))
    state = features.state_dict()
    path = tmp_path / "bad.pth"
    torch.save({k: v for k, v in state.items() if k != "conv1.weight"}, path)
    with pytest.raises(ValueError, match=r"conv1.weight: missing"):
        create_encoder_2d("resnet18", stages=2, weights=path)
    torch.save(state | {"conv1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"shape \(64, 3, 3, 3\) in the file"):
        create_encoder_2d("resnet18", stages=2, weights=path)
    with pytest.raises(FileNotFoundError, match="not found"):
        create_encoder_2d("resnet18", stages=2, weights=tmp_path / "missing.pth")


def test_pretrained_without_a_reachable_hub_fails_at_once(monkeypatch):
    """No network: one ConnectionError saying to pass --weights FILE, before timm is asked
    (timm would retry the hub for about a minute)."""
    import socket

    import timm

    def unreachable(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr("msseg.model.hub._cached", lambda name: False)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("timm was asked"))
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConnectionError) as caught:
        create_encoder_2d("resnet18", stages=2, pretrained=True)
    assert str(caught.value) == (
        "--pretrained: timm's ImageNet weights for 'resnet18' are not on this machine and the "
        "model hub (huggingface.co) cannot be reached; download the 2D checkpoint where there "
        "is a network and pass it with --weights FILE (weights=FILE)")


def test_unknown_encoder_and_too_many_stages_are_refused():
    with pytest.raises(ValueError, match="unknown timm model"):
        create_encoder_2d("vgg17")
    with pytest.raises(ValueError, match="lower encoder_stages"):
        create_encoder_2d("test_resnet", stages=9)

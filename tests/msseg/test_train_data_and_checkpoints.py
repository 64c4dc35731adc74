"""SlabDataset, the config object, atomic checkpoints and RNG state, batched prediction."""

import os
import random

import numpy as np
import pytest
import torch
from msseg.config import PRESETS, TrainConfig, preset
from msseg.data.slab_dataset import SlabDataset
from msseg.inference.predict import predict_probabilities
from msseg.model.resunet import build_model
from msseg.training.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from train_helpers import quiet_build, single_thread, tiny_config


def test_slab_dataset_cuts_overlapping_slabs_and_copies_channels():
    image = np.linspace(-1, 1, 32 * 4 * 4, dtype=np.float32).reshape(32, 4, 4)
    mask = (image > 0.5).astype(np.uint8)
    data = SlabDataset([image, -image], [mask, mask], slab=16, step=8)
    assert len(data) == 2 * 3 and data.slabs_per_volume == 3
    x, y = data[4]  # volume 1, slab 1: slices 8..23
    assert x.shape == (3, 16, 4, 4) and y.shape == (1, 16, 4, 4)
    assert x.dtype == y.dtype == torch.float32
    np.testing.assert_array_equal(x[2].numpy(), -image[8:24])
    np.testing.assert_array_equal(y[0].numpy(), mask[8:24])
    np.testing.assert_array_equal(data[-1][0].numpy(), data[5][0].numpy())
    with pytest.raises(IndexError):
        data[6]


def test_slab_dataset_refuses_bad_volumes():
    cube = np.zeros((16, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        SlabDataset([cube + 3], [cube], slab=8, step=4)
    with pytest.raises(ValueError, match="0 or 1"):
        SlabDataset([cube], [cube + 0.5], slab=8, step=4)
    with pytest.raises(ValueError, match="tile"):
        SlabDataset([cube], [cube], slab=8, step=3)
    with pytest.raises(ValueError, match="share one shape"):
        SlabDataset([cube, cube[:8]], [cube, cube[:8]], slab=8, step=4)


def test_config_presets_round_trip_and_validation():
    paper = PRESETS["paper"]
    assert (paper.lr, paper.lr_decay, paper.batch_size, paper.epochs, paper.patience) == (
        5e-5, 1.99e-7, 2, 100, 40)
    assert (paper.slab, paper.slab_step, paper.slabs_per_volume) == (16, 8, 31)
    assert not paper.train_encoder and not paper.train_bottleneck
    assert TrainConfig.from_dict(paper.to_dict()) == paper
    demo = preset("demo", epochs=2)
    assert demo.epochs == 2 and demo.volume_size == 64
    with pytest.raises(TypeError, match="unknown TrainConfig field"):
        preset("paper", lr_rate=1.0)
    with pytest.raises(ValueError, match="one positive filter count per encoder stage"):
        preset("paper", decoder_filters=(8, 8))
    with pytest.raises(ValueError, match="tile a volume"):
        preset("paper", slab_step=7)
    with pytest.raises(ValueError, match="choose one"):
        preset("paper", pretrained=True, weights="w.pth")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fast")


def test_save_is_atomic_and_load_checks_the_format(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"format": 1, "x": torch.arange(3)})
    with pytest.raises(AttributeError):  # a failing write leaves the old file, no temporary
        save_checkpoint(path, {"format": 1, "bad": lambda: None})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    assert os.listdir(tmp_path) == ["c.pt"]
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an msseg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_state_round_trip(tmp_path):
    state = get_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"format": 1, "rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.filterwarnings("ignore::msseg.model.encoder.RandomEncoderWarning")
def test_predict_probabilities_in_batches_equals_one_forward(tmp_path):
    config = tiny_config(tmp_path)
    torch.manual_seed(0)
    with single_thread():
        model = quiet_build(build_model, config).eval()
        slabs = torch.rand(5, 8, 16, 16) * 2 - 1
        probs = predict_probabilities(model, slabs, batch_size=2)
        with torch.no_grad():
            expected = torch.sigmoid(model(slabs[:, None].expand(-1, 3, -1, -1, -1)))[:, 0]
    assert probs.shape == (5, 8, 16, 16) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)

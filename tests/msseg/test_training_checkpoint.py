"""Checkpoints: atomic saves, the format check, the RNG state round trip."""

import os
import random

import numpy as np
import pytest
import torch
from msseg.training.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)


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

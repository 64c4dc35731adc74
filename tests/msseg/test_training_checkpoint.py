"""Checkpoints: atomic saves, the format and checksum checks, the RNG state round trip, and the
epoch save order (last.pt, the commit point, before best.pt)."""

import os
import random

import numpy as np
import pytest
import torch
from msseg.training.checkpoint import (
    FORMAT,
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    save_epoch,
    set_rng_state,
)
from msseg.training.logbook import finish_best


def test_save_is_atomic_and_load_checks_the_format(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.arange(3)})
    with pytest.raises(TypeError):  # a failing write leaves the old file, no temporary
        save_checkpoint(path, {"bad": lambda: None})
    loaded = load_checkpoint(path, keys=("x",))
    assert torch.equal(loaded["x"], torch.arange(3)) and loaded["format"] == FORMAT
    assert os.listdir(tmp_path) == ["c.pt"]
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an msseg checkpoint of format 2"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"c.pt: checkpoint lacks \['model'\]"):
        load_checkpoint(path, keys=("x", "model"))


def test_a_changed_tensor_fails_the_checksum(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.full((64,), 0.05), "epoch": 3})
    checkpoint = torch.load(tmp_path / "c.pt", weights_only=True)
    checkpoint["w"][17] = 40158.0  # what flipped bits did to a weight
    torch.save(checkpoint, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt: checksum mismatch: the contents changed"):
        load_checkpoint(tmp_path / "c.pt", keys=())
    checkpoint["w"][17] = 0.05
    checkpoint["epoch"] = 4  # plain values count too
    torch.save(checkpoint, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path / "c.pt", keys=())


def test_an_old_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    torch.save({"format": 1, "x": torch.ones(2)}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="old.pt: written by an older msseg without a checksum"):
        assert torch.equal(load_checkpoint(tmp_path / "old.pt", keys=("x",))["x"], torch.ones(2))


def test_rng_state_round_trip(tmp_path):
    state = get_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt", keys=("rng",))["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_an_epoch_writes_last_then_best_with_the_same_bytes(tmp_path, monkeypatch):
    order = []
    real = os.replace
    monkeypatch.setattr("msseg.io.atomic.os.replace",
                        lambda a, b: (order.append(os.path.basename(b)), real(a, b)))
    save_epoch(tmp_path, {"epoch": 1, "best_epoch": 1}, improved=True)
    save_epoch(tmp_path, {"epoch": 2, "best_epoch": 1}, improved=False)
    assert order == ["last.pt", "best.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "best.pt", keys=())["epoch"] == 1
    assert load_checkpoint(tmp_path / "last.pt", keys=())["epoch"] == 2


def test_finish_best_completes_an_interrupted_save(tmp_path, msseg_log):
    save_epoch(tmp_path, {"epoch": 1, "best_epoch": 1}, improved=True)
    save_checkpoint(tmp_path / "last.pt", {"epoch": 2, "best_epoch": 2})  # killed before best.pt
    last = load_checkpoint(tmp_path / "last.pt", keys=())
    finish_best(tmp_path, last, tmp_path / "last.pt")
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    (tmp_path / "best.pt").unlink()
    save_checkpoint(tmp_path / "last.pt", {"epoch": 3, "best_epoch": 2})
    finish_best(tmp_path, load_checkpoint(tmp_path / "last.pt", keys=()), tmp_path / "last.pt")
    assert "best.pt: holds nothing readable, but the run's best epoch is 2" in msseg_log.text
    assert not (tmp_path / "best.pt").exists()

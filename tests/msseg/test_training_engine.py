"""The training engine: outputs, exact resume, early stopping, schedule, precision, evaluation."""

import csv
import math
import sys
import types

import numpy as np
import pytest
import torch
from msseg.config import TrainConfig
from msseg.data.slab_dataset import SlabDataset
from msseg.evaluation.metrics import dice as evaluation_dice
from msseg.model.losses import bce_dice_loss
from msseg.model.resunet import build_model
from msseg.training.checkpoint import load_checkpoint, load_model
from msseg.training.engine import keras_decay, make_optimizer, train, validate
from msseg.training.runtime import make_runtime
from msseg_helpers import state_equal, tiny_config, volumes
from torch.utils.data import DataLoader


@pytest.fixture(scope="module")
def data():
    images, masks = volumes(3)
    return (SlabDataset(images[:2], masks[:2], slab=8, step=4),
            SlabDataset(images[2:], masks[2:], slab=8, step=4))


def test_training_writes_history_checkpoints_and_curves(tmp_path, data):
    config = tiny_config(tmp_path, epochs=2)
    result = train(config, *data)
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [3, 6]
    assert [float(r["val_loss"]) for r in rows] == [h["val_loss"] for h in result.history]
    assert all(0.0 <= float(r["val_dice_working"]) <= 1.0 and float(r["seconds"]) > 0 for r in rows)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert not (tmp_path / "tensorboard").exists()  # tensorboard=False
    checkpoint = load_checkpoint(result.last_path)
    assert TrainConfig.from_dict(checkpoint["config"]) == config
    assert (checkpoint["epoch"], checkpoint["step"]) == (2, 6)
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "scaler", "rng",
                               "best_val_loss", "bad_epochs", "history"}
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.best_epoch == best["epoch"] and result.best_val_loss == best["val_loss"]
    assert load_checkpoint(result.best_path)["epoch"] == best["epoch"]
    model, loaded_config = load_model(result.last_path)
    assert loaded_config == config and not model.training
    assert state_equal(model.state_dict(), result.model.state_dict())


def test_tensorboard_scalars_when_tensorboard_is_importable(tmp_path, data, monkeypatch):
    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, key, value, step):
            calls.append((key, step, value))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=Writer))
    result = train(tiny_config(tmp_path, epochs=1, tensorboard=True), *data)
    assert calls[0] == ("dir", str(tmp_path / "tensorboard")) and calls[-1] == ("close",)
    assert ("val_dice_working", 1, result.history[0]["val_dice_working"]) in calls
    assert {c[0] for c in calls[1:-1]} == {"train_loss", "val_loss", "val_dice_working", "lr",
                                           "seconds"}


def test_resume_continues_bit_for_bit(tmp_path, data):
    straight = train(tiny_config(tmp_path / "straight", epochs=3), *data)
    train(tiny_config(tmp_path / "cut", epochs=1), *data)  # "interrupted" after epoch 1
    resumed = train(tiny_config(tmp_path / "cut", epochs=3), *data,
                    resume=tmp_path / "cut" / "last.pt")
    assert state_equal(straight.model.state_dict(), resumed.model.state_dict())
    keys = ("epoch", "step", "train_loss", "val_loss", "val_dice_working", "lr")
    assert [[h[k] for k in keys] for h in straight.history] == [
        [h[k] for k in keys] for h in resumed.history]
    with open(tmp_path / "cut" / "history.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3]


def test_resume_refuses_a_different_model(tmp_path, data):
    train(tiny_config(tmp_path, epochs=1), *data)
    with pytest.raises(ValueError, match="bottleneck_filters"):
        train(tiny_config(tmp_path, epochs=2, bottleneck_filters=4), *data,
              resume=tmp_path / "last.pt")


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, data):
    # lr 1e-30 cannot move float32 weights: the validation loss never improves after epoch 1
    result = train(tiny_config(tmp_path, epochs=10, patience=2, lr=1e-30), *data)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.stopped_early and result.best_epoch == 1
    assert len({h["val_loss"] for h in result.history}) == 1


def test_keras_decay_schedule(tmp_path):
    config = tiny_config(tmp_path, lr=1e-3, lr_decay=0.5)
    assert keras_decay(0.5)(4) == pytest.approx(1 / 3)
    layer = torch.nn.Conv3d(1, 1, 1)
    optimizer, scheduler = make_optimizer(layer, config)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / (1 + 0.5 * 4))
    assert optimizer.defaults["eps"] == 1e-7 and optimizer.defaults["betas"] == (0.9, 0.999)


def test_fp16_autocast_with_grad_scaler_resumes_exactly(tmp_path, data, monkeypatch):
    monkeypatch.setattr("msseg.device.SLOW_ON_CPU", ())  # the tiny model: fast enough in fp16
    straight = train(tiny_config(tmp_path / "a", epochs=2, precision="fp16"), *data)
    train(tiny_config(tmp_path / "b", epochs=1, precision="fp16"), *data)
    resumed = train(tiny_config(tmp_path / "b", epochs=2, precision="fp16"), *data,
                    resume=tmp_path / "b" / "last.pt")
    scaler = load_checkpoint(straight.last_path)["scaler"]
    assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == 6  # 6 finite steps
    assert all(math.isfinite(h["train_loss"]) for h in straight.history)
    assert state_equal(straight.model.state_dict(), resumed.model.state_dict())


def test_bf16_autocast_training_step_is_finite(tmp_path, data):
    result = train(tiny_config(tmp_path, epochs=1, precision="bf16"), *data)
    assert math.isfinite(result.history[0]["train_loss"])
    assert math.isfinite(result.history[0]["val_loss"])
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    runtime = make_runtime(tiny_config(tmp_path, precision="bf16"))
    with runtime.autocast():
        y = result.model(data[0][0][0][None])
    assert y.dtype == torch.bfloat16


def test_validate_matches_a_direct_computation(tmp_path, data):
    config = tiny_config(tmp_path, threshold=0.3)
    torch.manual_seed(0)
    model = build_model(config).eval()
    runtime = make_runtime(config)
    loss, dice = validate(model, DataLoader(data[0], batch_size=4), runtime, config)
    images = torch.stack([x for x, _ in data[0]])
    masks = torch.stack([y for _, y in data[0]])
    with torch.no_grad():
        logits = model(images)
    assert loss == pytest.approx(bce_dice_loss(logits, masks).item(), rel=1e-5)
    pred = torch.sigmoid(logits) >= 0.3
    expected = 2 * (pred & (masks > 0)).sum() / (pred.sum() + masks.sum())
    assert dice == pytest.approx(expected.item(), rel=1e-6)


def test_the_validation_dice_is_the_evaluation_dice_and_undefined_without_lesions(tmp_path):
    """One Dice everywhere: the validation Dice over the slabs is `evaluation.metrics.dice` of
    the same voxels, nan (not a perfect 1.0) when the validation slabs hold no lesion."""
    config = tiny_config(tmp_path, threshold=0.5)
    runtime = make_runtime(config)
    images, masks = volumes(2, seed=3)
    bright = _BrightIsLesion()
    loader = DataLoader(SlabDataset(images, masks, slab=8, step=4), batch_size=2)
    _, dice = validate(bright, loader, runtime, config)
    pred = [image > 0.75 for image in images]  # the stand-in's decision at threshold 0.5
    truth = [mask for mask in masks]
    slabs = [(s, s + 8) for s in (0, 4, 8)]  # each slab is counted once, overlaps twice
    stacked = (np.concatenate([p[a:b] for p in pred for a, b in slabs]),
               np.concatenate([t[a:b] for t in truth for a, b in slabs]))
    assert 0 < dice < 1 and dice == pytest.approx(evaluation_dice(*stacked), rel=1e-12)
    empty = DataLoader(SlabDataset(images, [np.zeros_like(m) for m in masks], slab=8, step=4),
                       batch_size=2)
    assert math.isnan(validate(bright, empty, runtime, config)[1])
    assert math.isnan(evaluation_dice(stacked[0], np.zeros_like(stacked[1])))


class _BrightIsLesion(torch.nn.Module):
    """A stand-in network: lesion (p >= 0.5) where the FLAIR is above 0.75, part of each of the
    lesions of `volumes` (0.5 to 1)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, :1] - 0.75) * 10


def test_invalid_runs_are_refused(tmp_path, data):
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(tiny_config(tmp_path, device="cuda:0"), *data)
    with pytest.raises(ValueError, match="nothing to train"):
        make_optimizer(torch.nn.Conv3d(1, 1, 1).requires_grad_(False), tiny_config(tmp_path))


def test_a_folder_with_a_run_is_trained_into_only_when_asked(tmp_path, data):
    train(tiny_config(tmp_path, epochs=1), *data)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError) as caught:
        train(tiny_config(tmp_path, epochs=2), *data)
    assert str(caught.value) == (
        f"{tmp_path}: holds a training run already (last.pt, best.pt, history.csv, curves.png); "
        f"pass --resume {tmp_path / 'last.pt'} to continue it, --overwrite to replace it, or "
        f"choose another --out")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    with pytest.raises(ValueError, match=r"--overwrite would delete .*last\.pt, the checkpoint"):
        train(tiny_config(tmp_path, epochs=2), *data, resume=tmp_path / "last.pt",
              overwrite=True)
    replaced = train(tiny_config(tmp_path, epochs=1, seed=8), *data, overwrite=True)
    assert load_checkpoint(tmp_path / "best.pt")["config"]["seed"] == 8
    assert load_checkpoint(tmp_path / "last.pt")["history"] == replaced.history
    with open(tmp_path / "history.csv") as handle:
        assert [float(r["val_loss"]) for r in csv.DictReader(handle)] == [
            replaced.history[0]["val_loss"]]


def test_resuming_a_run_that_stopped_early_trains_no_further_epoch(tmp_path, data):
    """A run killed after the save of the epoch that exhausted its patience (or a cv round whose
    predictions were interrupted) resumes to the same end: no epoch beyond the stop."""
    config = tiny_config(tmp_path, epochs=10, patience=2, lr=1e-30)
    stopped = train(config, *data)
    assert stopped.stopped_early and len(stopped.history) == 3
    again = train(config, *data, resume=tmp_path / "last.pt")
    assert again.history == stopped.history and again.stopped_early
    assert state_equal(again.model.state_dict(), stopped.model.state_dict())
    more_patience = train(config.replace(patience=3), *data, resume=tmp_path / "last.pt")
    assert len(more_patience.history) == 4  # asked for: one more epoch without improvement

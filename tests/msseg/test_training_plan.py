"""What an epoch holds and costs: a capped epoch draws a different part of the data each epoch,
the same on every rank count and after a resume; the plan and the first step's estimate are
logged before the run spends its time; without a terminal, progress is logged."""

import pytest
import torch
from msseg.training.checkpoint import load_checkpoint
from msseg.training.engine import train
from msseg.training.plan import EpochSampler, estimate_text, plan_text
from msseg_helpers import state_equal, tiny_config, tiny_datasets


def _drawn(count, world, epoch, size=12, seed=3):
    samplers = [EpochSampler(range(size), count=count, num_replicas=world, rank=rank, seed=seed)
                for rank in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


def test_a_capped_epoch_draws_a_fresh_part_of_one_shuffled_order():
    (one,) = _drawn(5, 1, epoch=0)
    assert len(one) == len(set(one)) == 5
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3)).tolist()
    assert one == order[:5]  # the first of the epoch's order: exactly reproducible
    (next_epoch,) = _drawn(5, 1, epoch=1)
    assert next_epoch != one
    ranks = _drawn(5, 2, epoch=0)  # two ranks share the first 6 (3 each) of the same order
    assert [len(r) for r in ranks] == [3, 3] and sorted(ranks[0] + ranks[1]) == sorted(order[:6])
    (everything,) = _drawn(20, 1, epoch=0)  # more than there are: the order, repeated
    assert everything == (order * 2)[:20]


def test_the_plan_and_the_estimate_say_what_an_epoch_costs(tmp_path):
    config = tiny_config(tmp_path, samples_per_epoch=3, batch_size=2)
    train_set, val_set = tiny_datasets()
    assert plan_text(config, train_set, val_set, steps=2, volumes=2) == (
        "plan: 3 training samples of 2 training volume(s) per epoch (of 6: --samples-per-epoch "
        "3), batch 2: 2 steps; 3 validation samples; at most 3 epochs (early stopping after 10 "
        "without improvement)")
    assert estimate_text(first_step_s=12.3, steps=421, epochs=100).startswith(
        "the first step took 12.30 s: an epoch of 421 steps takes about 86 min (plus "
        "validation), 100 epochs at most 143.8 h")


def test_training_on_a_capped_epoch_logs_its_plan_and_resumes_bit_for_bit(tmp_path, msseg_log):
    data = tiny_datasets()
    straight = train(tiny_config(tmp_path / "a", epochs=2, samples_per_epoch=3), *data)
    assert [row["step"] for row in straight.history] == [2, 4]  # 3 samples, batch 2: 2 steps
    text = msseg_log.text
    assert "plan: 3 training samples of 2 training volume(s) per epoch (of 6" in text
    assert "the first step took " in text
    train(tiny_config(tmp_path / "b", epochs=1, samples_per_epoch=3), *data)
    resumed = train(tiny_config(tmp_path / "b", epochs=2, samples_per_epoch=3), *data,
                    resume=tmp_path / "b" / "last.pt")
    assert state_equal(straight.model.state_dict(), resumed.model.state_dict())
    whole = load_checkpoint(tmp_path / "a" / "last.pt")
    assert whole["epoch"] == 2


def test_without_a_terminal_training_progress_is_logged(tmp_path, msseg_log):
    train(tiny_config(tmp_path, epochs=1, progress=True), *tiny_datasets())
    lines = [r.getMessage() for r in msseg_log.records if r.name == "msseg.progress"]
    assert lines and lines[0].startswith("epoch 1/1: step 1/3, loss ")
    assert " sample/s, " in lines[0] and lines[0].endswith(" left")


def test_a_cap_must_be_a_positive_number_of_samples(tmp_path):
    with pytest.raises(ValueError, match="samples_per_epoch must be a positive integer"):
        tiny_config(tmp_path, samples_per_epoch=0)

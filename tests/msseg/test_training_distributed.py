"""DDP with torchrun semantics: 2 gloo ranks on the CPU train like one process with the same
global batch (same data order, gradients averaged), equal up to float rounding, and stay
identical to each other; also when the slabs do not fill the last step (9 slabs, global batch 2:
the sampler repeats one, which must weigh nothing)."""

import math

import pytest
import torch
import torch.multiprocessing as mp
from msseg.training.engine import train
from msseg_helpers import ddp_worker, tiny_config, tiny_datasets


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("train_volumes", [2, 3], ids=["6-slabs", "9-slabs"])
def test_two_ranks_match_single_process_training(tmp_path, train_volumes):
    epochs = 2
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), epochs, train_volumes),
             nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0]["model"].items():  # ranks in sync, bit for bit
        assert torch.equal(value, ranks[1]["model"][key]), key

    single = train(tiny_config(tmp_path / "single", epochs=epochs), *tiny_datasets(train_volumes))
    reference = single.model.state_dict()
    changed = 0
    for key, value in ranks[0]["model"].items():
        torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-6, msg=key)
        changed += not torch.equal(value, tiny_init()[key])
    assert changed > 0  # training moved the weights, so the comparison means something
    for ddp_row, row in zip(ranks[0]["history"], single.history):
        assert ddp_row["step"] == row["step"] == math.ceil(3 * train_volumes / 2) * row["epoch"]
        for column in ("train_loss", "val_loss", "val_dice_working"):
            assert ddp_row[column] == pytest.approx(row[column], rel=1e-5, abs=1e-7)


def tiny_init():
    from msseg.model.resunet import build_model

    torch.manual_seed(tiny_config("unused").seed)
    return build_model(tiny_config("unused")).state_dict()

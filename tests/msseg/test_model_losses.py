"""BCE − soft Dice + 1 from logits: exact values, per-sample decomposition, empty masks."""

import math

import pytest
import torch
from msseg.model.losses import bce_dice_loss, soft_dice


def test_uninformed_prediction_gives_the_closed_form_value():
    target = torch.zeros(1, 1, 2, 2, 2)
    target[0, 0, 0, 0, :] = 1  # 2 of 8 voxels
    loss = bce_dice_loss(torch.zeros_like(target), target)
    dice = (2 * 0.5 * 2 + 1) / (0.5 * 8 + 2 + 1)  # (2 Σpy + 1) / (Σp + Σy + 1) = 3/7
    assert loss.item() == pytest.approx(math.log(2) - dice + 1, abs=1e-6)


def test_confident_correct_prediction_has_zero_loss_and_wrong_one_is_large():
    target = (torch.rand(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    right = (target * 2 - 1) * 50
    assert bce_dice_loss(right, target).item() == pytest.approx(0.0, abs=1e-6)
    assert bce_dice_loss(-right, target).item() == pytest.approx(50 + 1, rel=1e-2)


def test_empty_target_and_empty_prediction_is_a_perfect_dice():
    target = torch.zeros(1, 1, 2, 4, 4)
    assert soft_dice(torch.zeros_like(target), target).item() == 1.0
    assert soft_dice(torch.ones_like(target), target).item() == pytest.approx(1 / 33)


def test_batch_loss_is_the_mean_of_per_sample_losses():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 3, 5, 5, generator=g)
    target = (torch.rand(4, 1, 3, 5, 5, generator=g) > 0.8).float()
    per_sample = bce_dice_loss(logits, target, reduction="none")
    assert per_sample.shape == (4,)
    halves = [bce_dice_loss(logits[i:i + 2], target[i:i + 2]) for i in (0, 2)]
    torch.testing.assert_close(bce_dice_loss(logits, target), (halves[0] + halves[1]) / 2)
    torch.testing.assert_close(per_sample.mean(), bce_dice_loss(logits, target))


def test_extreme_logits_and_bf16_inputs_stay_finite():
    logits = torch.tensor([[-1e4, 1e4, 0.0, 30.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    loss = bce_dice_loss(logits.bfloat16(), target)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_mismatched_shapes_and_bad_reduction_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        bce_dice_loss(torch.zeros(2, 1, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        bce_dice_loss(torch.zeros(2, 4), torch.zeros(2, 4), reduction="sum")

"""The paper's loss: binary cross-entropy − soft Dice + 1 (Eq. 5), computed from logits.

The model returns logits; BCE is taken with `binary_cross_entropy_with_logits` (stable where
Keras clips probabilities at 1e-7) and the soft Dice on `sigmoid(logits)`, always in float32.

One deliberate difference from the public Keras code: Keras' `dice_coef` flattens the whole batch
into one Dice; here Dice is computed per sample and averaged, like the BCE. The loss of a batch is
then the mean of per-sample losses, so it does not depend on how a batch is split: DDP ranks with
one sample each reproduce single-process training with batch 2 exactly (up to float rounding),
and a validation loss does not depend on the validation batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bce_dice_loss", "soft_dice"]


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape or logits.dim() < 2:
        raise ValueError(
            f"logits and target must have the same shape (N, ...), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )


def soft_dice(probs: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per sample: (2 Σ p·y + smooth) / (Σ p + Σ y + smooth).

    Args:
        probs: (N, ...) probabilities in [0, 1].
        target: (N, ...) ground truth in {0, 1} (or soft labels), same shape.
        smooth: added to numerator and denominator (1 in the paper); an empty target and an
            all-zero prediction give Dice 1.
    Returns:
        (N,) float32 Dice values.
    Raises:
        ValueError: if the shapes differ.
    """
    _check(probs, target)
    p = probs.float().flatten(1)
    y = target.float().flatten(1)
    return (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """BCE − soft Dice + 1, per sample, from logits.

    Args:
        logits: (N, 1, D, H, W) (any (N, ...)) network outputs before the sigmoid.
        target: same shape, in {0, 1}.
        smooth: Dice smoothing.
        reduction: "mean" (a scalar: the mean over samples) or "none" ((N,) per-sample losses).
    Returns:
        The loss in float32; 0 for a perfect, confident prediction.
    Raises:
        ValueError: for mismatched shapes or an unknown reduction.
    """
    _check(logits, target)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    logits = logits.float()
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    loss = bce - soft_dice(torch.sigmoid(logits), target, smooth=smooth) + 1
    return loss.mean() if reduction == "mean" else loss

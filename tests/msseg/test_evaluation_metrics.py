"""Per-scan metrics on hand-built masks, and the per-centre summary table."""

import math

import numpy as np
import pytest
from msseg.evaluation.metrics import dice, scan_metrics, sensitivity


def _masks():
    """Ground truth: A, B (two voxels touching only at a corner: two lesions of face
    neighbours) and C. Prediction: a cube covering one voxel of A and spilling far outside it,
    one voxel of B exactly, nothing of C, and a false lesion D."""
    truth = np.zeros((10, 10, 10), dtype=bool)
    truth[1:3, 1:3, 1:3] = True  # A: 8 voxels
    truth[6, 6, 6] = truth[7, 7, 7] = True  # B: 2 voxels, corner contact
    truth[1, 8, 8] = True  # C: 1 voxel
    pred = np.zeros_like(truth)
    pred[2:4, 2:4, 2:4] = True  # overlaps A in 1 voxel (2,2,2); 8 voxels
    pred[7, 7, 7] = True  # B
    pred[8, 1, 1] = pred[8, 1, 2] = True  # D: 2 voxels, false
    return pred, truth


def test_voxel_dice_and_sensitivity():
    pred, truth = _masks()
    # TP = 2 (one voxel of A, one of B); |pred| = 11, |truth| = 11
    assert dice(pred, truth) == pytest.approx(4 / 22)
    assert sensitivity(pred, truth) == pytest.approx(2 / 11)


def test_empty_mask_cases():
    """Without ground-truth lesions, what measures finding them is undefined (never a perfect
    1.0); false positives there still show as a lesion FPR of 1.0."""
    empty, full = np.zeros((3, 3, 3), bool), np.ones((3, 3, 3), bool)
    assert math.isnan(dice(empty, empty)) and math.isnan(sensitivity(empty, empty))
    assert dice(empty, full) == 0.0 and sensitivity(empty, full) == 0.0
    assert math.isnan(dice(full, empty)) and math.isnan(sensitivity(full, empty))
    both = scan_metrics(empty, empty)
    assert all(math.isnan(v) for v in (both.dice, both.lesion_f1, both.lesion_fpr,
                                       both.lesion_tpr))
    only_pred = scan_metrics(full, empty)
    assert math.isnan(only_pred.lesion_f1) and only_pred.lesion_fpr == 1.0
    assert only_pred.predicted_lesions == 1
    only_truth = scan_metrics(empty, full)
    assert (only_truth.lesion_f1, only_truth.lesion_tpr) == (0.0, 0.0)
    assert math.isnan(only_truth.lesion_fpr)


def test_lesion_wise_detection_by_the_msseg_rule():
    """4 true lesions (A, B's two voxels, C), 3 predicted. Only B's second voxel is detected:
    the cube over A covers 1/8 of it but lies 7/8 outside, so it detects nothing and, as A lies
    7/8 outside it, is itself false; D is false (`test_evaluation_lesions` has the rule)."""
    pred, truth = _masks()
    m = scan_metrics(pred, truth)
    assert (m.true_lesions, m.predicted_lesions, m.detected_lesions, m.false_lesions) == (
        4, 3, 1, 2)
    assert m.lesion_tpr == pytest.approx(1 / 4) and m.lesion_fpr == pytest.approx(2 / 3)
    assert m.lesion_f1 == pytest.approx(2 / 7)


def test_min_size():
    pred, truth = _masks()
    # lesions under 2 voxels vanish: B's and C in the truth; B's voxel in the prediction
    m = scan_metrics(pred, truth, min_size=2)
    assert (m.true_lesions, m.predicted_lesions, m.detected_lesions, m.false_lesions) == (
        1, 2, 0, 2)


def test_non_binary_or_mismatched_masks_are_refused():
    with pytest.raises(ValueError, match="threshold probabilities first"):
        dice(np.full((2, 2), 0.3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))

"""Training-memory estimate: exact parameter/optimizer bytes, activations bounded from below."""

import torch
from msseg.model.memory import measure_training_memory
from msseg.model.resunet import build_model
from msseg_helpers import tiny_config


def test_memory_estimate_counts_parameters_optimizer_and_activations(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config(tmp_path, train_bottleneck=False))
    shape = (2, 3, 8, 16, 16)
    estimate = measure_training_memory(model, shape)
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    assert estimate.parameters == 4 * sum(p.numel() for p in params)
    assert estimate.gradients == 4 * trainable and estimate.optimizer == 8 * trainable
    with torch.no_grad():
        outputs = model.encoder(torch.zeros(shape))
    assert estimate.encoder_outputs == sum(4 * t.numel() for t in outputs)  # frozen: not saved
    last = model.decoder[-1]
    voxels = outputs[0][0, 0].numel() * 2  # the last level runs at the first skip's size
    joined = last.conv_a.in_channels * voxels * 4  # conv A's input, saved for the backward
    assert estimate.saved_activations > joined
    bf16 = measure_training_memory(model, shape, amp_dtype=torch.bfloat16)
    assert bf16.saved_activations < estimate.saved_activations
    assert estimate.total == sum((estimate.parameters, estimate.gradients, estimate.optimizer,
                                  estimate.saved_activations, estimate.encoder_outputs))
    assert "total" in str(estimate)

"""Shared pieces of the command-line tests: the flags of a tiny config, trained in a second."""

from __future__ import annotations

# timm's 26k-parameter `test_resnet` (2 stages), 16³ cubes, 8-slice slabs: the `tiny_config` of
# train_helpers.py, spelled as command-line flags.
TINY_FLAGS = [
    "--config", "paper", "--encoder", "test_resnet", "--trainable-bottleneck", "--lr", "1e-3",
    "--seed", "7", "--device", "cpu", "--amp", "none", "--no-progress",
    "--set", "encoder_stages=2", "bottleneck_filters=8", "decoder_filters=8,8", "volume_size=16",
    "slab=8", "slab_step=4", "tensorboard=false",
]  # fmt: skip

"""Training: the engine (CPU, GPU, torchrun DDP), its runtime, checkpoints and logs."""

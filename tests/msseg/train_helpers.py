"""Shared builders for the msseg model/training tests: tiny configs and synthetic volumes."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from msseg.config import TrainConfig, preset
from msseg.model.encoder import RandomEncoderWarning


def tiny_config(out_dir, **overrides) -> TrainConfig:
    """A config that trains in well under a second per epoch on a CPU: timm's 26k-parameter
    `test_resnet` (2 stages), 16³ volumes, 8-slice slabs, narrow decoder."""
    values = dict(
        encoder="test_resnet", encoder_stages=2, bottleneck_filters=8, decoder_filters=(8, 8),
        volume_size=16, slab=8, slab_step=4, train_bottleneck=True, lr=1e-3, epochs=3,
        patience=10, seed=7, out_dir=str(out_dir), progress=False, tensorboard=False,
        precision="fp32", device="cpu",
    )
    values.update(overrides)
    return preset("paper", **values)


def volumes(count: int, size: int = 16, *, seed: int = 0):
    """`count` synthetic (FLAIR in [-1, 1], mask) cubes with a few bright cubic lesions."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(count):
        image = rng.uniform(-1.0, -0.4, (size,) * 3).astype(np.float32)
        mask = np.zeros((size,) * 3, dtype=np.uint8)
        for _ in range(3):
            corner = rng.integers(1, size - 5, 3)
            cut = tuple(slice(c, c + 4) for c in corner)
            mask[cut] = 1
            image[cut] = rng.uniform(0.5, 1.0)
        images.append(image)
        masks.append(mask)
    return images, masks


def quiet_build(build, *args, **kwargs):
    """Call a model builder without the random-encoder warning (tests use random weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomEncoderWarning)
        return build(*args, **kwargs)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread: the suite runs under pytest-xdist, and tiny convolutions on
    oversubscribed cores are many times slower with OpenMP thread teams."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ddp_worker(rank: int, world: int, init_file: str, out_dir: str, epochs: int) -> None:
    """One DDP rank (gloo, CPU) training `tiny_config` on `tiny_datasets`; saves its final
    parameters and history to out_dir/rank{rank}.pt. Run with torch.multiprocessing.spawn."""
    import torch.distributed as dist
    from msseg.training.engine import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomEncoderWarning)
            result = train(tiny_config(f"{out_dir}/run", epochs=epochs), *tiny_datasets())
        torch.save({"model": result.model.state_dict(), "history": result.history},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def tiny_datasets():
    """(train, validation) slabs for `tiny_config`: 2 + 1 volumes of 16³, 3 slabs each."""
    from msseg.data.slab_dataset import SlabDataset

    images, masks = volumes(3)
    return (SlabDataset(images[:2], masks[:2], slab=8, step=4),
            SlabDataset(images[2:], masks[2:], slab=8, step=4))

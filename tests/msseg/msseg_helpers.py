"""Builders shared by the msseg tests: synthetic NIfTI scans, a tiny training config (as
arguments and as command-line flags), synthetic cubes, DDP workers.

(A module, not conftest.py, so that tests can import these functions; the fixtures and the
settings every msseg test shares are in conftest.py.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from msseg.config import TrainConfig, preset
from msseg.io.orientation import axes_matrix
from msseg.model.encoder import RandomEncoderWarning

# timm's 26k-parameter `test_resnet` (2 stages), 16³ cubes, 8-slice slabs: trains in well under
# a second per epoch on a CPU. `tiny_config` and `TINY_FLAGS` are both made from it.
# The real CC-BY scans the tests use, copied into the repository with their licence
REAL_SCANS = Path(__file__).parents[1] / "data" / "open_ms_data"

TINY = dict(
    encoder="test_resnet", encoder_stages=2, bottleneck_filters=8, decoder_filters=(8, 8),
    volume_size=16, slab=8, slab_step=4, train_bottleneck=True, lr=1e-3, seed=7,
    progress=False, tensorboard=False, precision="fp32", device="cpu",
)
TINY_FLAGS = ["--config", "paper", "--set", *(
    f"{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
    for name, value in TINY.items())]


def tiny_config(out_dir, **overrides) -> TrainConfig:
    """The `paper` preset with `TINY`, 3 epochs, patience 10 and `overrides`."""
    return preset("paper", **{**TINY, "epochs": 3, "patience": 10, "out_dir": str(out_dir),
                              **overrides})


def oriented_affine(axcodes: str, voxel_mm=(1.0, 1.0, 1.0), shape=(8, 8, 8)) -> np.ndarray:
    """(4, 4) affine whose array axes point to `axcodes` (e.g. "LPS"), centred on the origin."""
    matrix = axes_matrix(axcodes, voxel_mm)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = -matrix @ ((np.array(shape) - 1) / 2)
    return affine


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write `data` as NIfTI with `affine` (qform and sform, code 1); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def blob_scan(shape=(12, 14, 10), seed=0):
    """A smooth random FLAIR-like volume and a mask with a couple of blobs (storage = RAS)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    flair = 100 + 20 * rng.random(shape)
    mask = np.zeros(shape, np.uint8)
    for _ in range(2):
        centre = rng.uniform(3, np.array(shape) - 3)
        blob = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 4
        mask[blob] = 1
        flair[blob] += 80
    return flair.astype(np.float32), mask


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


def tiny_datasets(train_volumes: int = 2):
    """(train, validation) slabs for `tiny_config`: `train_volumes` + 1 volumes of 16³, 3 slabs
    each."""
    from msseg.data.slab_dataset import SlabDataset

    images, masks = volumes(train_volumes + 1)
    return (SlabDataset(images[:-1], masks[:-1], slab=8, step=4),
            SlabDataset(images[-1:], masks[-1:], slab=8, step=4))


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def ddp_worker(rank: int, world: int, init_file: str, out_dir: str, epochs: int,
               train_volumes: int = 2) -> None:
    """One DDP rank (gloo, CPU) training `tiny_config` on `tiny_datasets(train_volumes)`; saves
    its final parameters and history to out_dir/rank{rank}.pt. Run with
    torch.multiprocessing.spawn."""
    import torch.distributed as dist
    from msseg.training.engine import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomEncoderWarning)
            result = train(tiny_config(f"{out_dir}/run", epochs=epochs),
                           *tiny_datasets(train_volumes))
        torch.save({"model": result.model.state_dict(), "history": result.history},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def proxy_lesions(flair: np.ndarray, voxel_mm) -> np.ndarray:
    """A stand-in lesion mask for a raw FLAIR that has none: its hyperintense blobs in the brain.

    Head = non-zero voxels, holes filled; brain = the head eroded by 15 mm in-plane (slice by
    slice, which drops scalp, fat and skull); blobs = brain voxels above the brain's 99th
    percentile, opened in-plane, 26-connected components of at least 10 mm³. On the repository's
    raw scan (0.72 x 0.72 x 4 mm) that gives 58 blobs, median 20 mm³, 1,595 voxels: real
    shapes at the scan's own anisotropy, of the size of small MS lesions; not lesions.
    """
    from scipy import ndimage

    voxel_mm = np.asarray(voxel_mm, dtype=float)
    thick = int(np.argmax(voxel_mm))
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[tuple(slice(None) if a != thick else 1 for a in range(3))] = \
        ndimage.generate_binary_structure(2, 1)
    head = ndimage.binary_fill_holes(flair > 0)
    brain = ndimage.binary_erosion(head, in_plane,
                                   iterations=round(15 / min(voxel_mm)))
    blobs = ndimage.binary_opening(brain & (flair > np.percentile(flair[brain], 99)), in_plane)
    labels, _ = ndimage.label(blobs, np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel()) * np.prod(voxel_mm)
    sizes[0] = 0
    return (sizes >= 10)[labels].astype(np.uint8)

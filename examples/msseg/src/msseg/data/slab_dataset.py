"""Training samples: slabs or windows of preprocessed volumes held in memory.

A volume is a scan in its working space (the cache): FLAIR scaled to [-1, 1] of shape (D, H, W)
with the planar (slab) axis first, and its lesion mask in {0, 1}. Samples are windows of
`slab` slices whose starts are `step` apart, copied to 3 channels for the ImageNet encoder. Where
they go is the recipe's choice (`Recipe.sampling`, e.g. `for_config`):

- whole planes (`window=None`, the paper's recipe): every volume has the same plane (H, W),
  slabs tile the depth exactly (the paper: 16 and 8 -> 31 slabs per 256³ cube);
- windows (`window=w`, the spacing recipe): volumes of any shape, (slab, w, w) windows on MONAI's
  dense grid (`monai.data.utils.dense_patch_slices`) with starts `step` apart along depth and
  `w * (1 - overlap)` apart in-plane, the last window of each axis flush with the volume's end,
  as `sliding_window_inference` places them at prediction; a volume smaller than a window is
  padded (FLAIR -1, the scaled background; mask 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from msseg.config import TrainConfig, recipe_named
from msseg.data.cache import CacheEntry
from msseg.io.nifti import read_geometry, warn_if_oblique
from msseg.slab_geometry import SlabGeometry

__all__ = ["SlabDataset", "samples_per_volume", "window_interval"]


def window_interval(window: int, overlap: float) -> int:
    """In-plane distance between window starts for an overlap fraction (MONAI's rule)."""
    return max(int(window * (1 - overlap)), 1)


class SlabDataset(Dataset):
    """Window `i` of volume `v` is sample `offsets[v] + i`.

    Args:
        images: FLAIR volumes, each (D, H, W) with values in [-1, 1] (copied as float32).
        masks: lesion masks, same shapes, values in {0, 1} (stored as uint8).
        slab: slices per sample along axis 0.
        step: stride between slab starts (whole planes: `SlabGeometry` checks that the slabs
            tile D; windows: the last slab is flush with the end).
        window: in-plane window edge; None = whole planes (all volumes then share one shape).
        overlap: in-plane overlap of neighbouring windows, in [0, 1).
        channels: copies of the FLAIR channel (3 for ImageNet encoders).
    Returns (per item):
        (image (channels, slab, h, w) float32, mask (1, slab, h, w) float32).
    Raises:
        ValueError: for mismatched lists or shapes, values out of range, or slabs that do not
            tile the volumes.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        *,
        slab: int = 16,
        step: int = 8,
        window: int | None = None,
        overlap: float = 0.5,
        channels: int = 3,
    ) -> None:
        if len(images) != len(masks) or not images:
            raise ValueError(
                f"need one mask per image and at least one volume, got {len(images)} images "
                f"and {len(masks)} masks"
            )
        self.images, self.masks, self.windows = [], [], []
        shape = np.shape(images[0])
        for k, (image, mask) in enumerate(zip(images, masks)):
            image = np.asarray(image, dtype=np.float32)
            mask = np.asarray(mask)
            if image.ndim != 3 or image.shape != mask.shape:
                raise ValueError(
                    f"volume {k}: image {image.shape} and mask {mask.shape} must be equal 3-D "
                    f"shapes (D, H, W) with the slab axis first"
                )
            if window is None and image.shape != shape:
                raise ValueError(
                    f"volume {k} has shape {image.shape}, volume 0 {shape}: whole-plane slabs "
                    f"need one shape for all volumes (the paper's recipe resamples them to S³); "
                    f"use windows for volumes of different shapes"
                )
            if image.min() < -1.0 - 1e-5 or image.max() > 1.0 + 1e-5:
                raise ValueError(
                    f"volume {k}: FLAIR values must lie in [-1, 1] (the pipeline's scaling), "
                    f"found [{image.min():.3g}, {image.max():.3g}]"
                )
            if ((mask != 0) & (mask != 1)).any():
                raise ValueError(f"volume {k}: mask values must be 0 or 1")
            image, mask = _padded(image, mask.astype(np.uint8), slab, window)
            self.images.append(image)
            self.masks.append(mask)
            self.windows.append(_windows(image.shape, slab, step, window, overlap))
        self.offsets = np.cumsum([0, *(len(w) for w in self.windows)])
        self.channels = channels

    @classmethod
    def from_cache(cls, entries: Sequence[CacheEntry], *, slab: int, step: int,
                   window: int | None = None, overlap: float = 0.5) -> SlabDataset:
        """The slabs or windows of cached volumes (read into memory), e.g. a split's scans.

        Raises:
            ValueError: as the constructor; also for an entry without a mask.
        """
        cubes = [entry.load(mmap=False) for entry in entries]
        missing = [e.record.patient_id for e, c in zip(entries, cubes) if c.mask is None]
        if missing:
            raise ValueError(f"training needs a lesion mask for every scan; the cache has none "
                             f"for {missing}: rebuild it from scans with masks")
        return cls([c.flair for c in cubes], [c.mask for c in cubes], slab=slab, step=step,
                   window=window, overlap=overlap)

    @classmethod
    def for_config(cls, entries: Sequence[CacheEntry], config: TrainConfig) -> SlabDataset:
        """The training samples of cached volumes where `config`'s recipe cuts them
        (`Recipe.sampling`); a scan whose voxel axes are oblique enough to tilt them is warned
        about (`msseg.io.nifti.warn_if_oblique`, from its header).

        Raises:
            ValueError: as `from_cache`.
        """
        recipe = recipe_named(config.recipe)
        for entry in entries:
            warn_if_oblique(entry.record.flair, read_geometry(entry.record.flair).affine,
                            slabs=recipe.slabs, recipe=recipe.name)
        sampling = recipe.sampling(config)
        return cls.from_cache(entries, slab=sampling.slab, step=sampling.step,
                              window=sampling.window, overlap=sampling.overlap)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"slab {index} out of range for {len(self)} slabs")
        index %= len(self)
        volume = int(np.searchsorted(self.offsets, index, side="right")) - 1
        cut = self.windows[volume][index - self.offsets[volume]]
        image = torch.from_numpy(np.ascontiguousarray(self.images[volume][cut]))
        mask = torch.from_numpy(np.ascontiguousarray(self.masks[volume][cut]))
        return image.unsqueeze(0).expand(self.channels, -1, -1, -1), mask.unsqueeze(0).float()


def _padded(image: np.ndarray, mask: np.ndarray, slab: int,
            window: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Pad a volume at its end to at least one window (FLAIR with -1, mask with 0)."""
    least = (slab, *(image.shape[1:] if window is None else (window, window)))
    pad = [(0, max(n - s, 0)) for n, s in zip(least, image.shape, strict=True)]
    if not any(after for _, after in pad):
        return image, mask
    return np.pad(image, pad, constant_values=-1.0), np.pad(mask, pad)


def samples_per_volume(shape: tuple[int, int, int], config: TrainConfig) -> int:
    """How many samples `config`'s recipe cuts from a working volume of `shape` (D, H, W): the
    training samples of one scan, and the network inputs of its prediction.
    """
    sampling = recipe_named(config.recipe).sampling(config)
    return len(_windows(tuple(shape), sampling.slab, sampling.step, sampling.window,
                        sampling.overlap))


def _windows(shape: tuple[int, ...], slab: int, step: int, window: int | None,
             overlap: float) -> list[tuple[slice, ...]]:
    if window is None:
        geometry = SlabGeometry(shape[0], slab, step)
        return [(slice(s, s + slab),) for s in geometry.starts]
    from monai.data.utils import dense_patch_slices

    interval = window_interval(window, overlap)
    return dense_patch_slices(shape, (slab, window, window), (step, interval, interval))

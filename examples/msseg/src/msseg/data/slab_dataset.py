"""Training samples: overlapping slabs of preprocessed volumes held in memory.

A volume is a cube from the data pipeline's cache: FLAIR scaled to [-1, 1] of shape (S, S, S)
with the sagittal (slab) axis first, and its lesion mask in {0, 1}. Slabs of `slab` slices start
every `step` slices (the paper: 16 and 8 -> 31 slabs per 256³ scan); the FLAIR is copied to 3
channels for the ImageNet encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from msseg.data.cache import CacheEntry
from msseg.slab_geometry import SlabGeometry

__all__ = ["SlabDataset"]


class SlabDataset(Dataset):
    """Slab `i` of volume `v` is sample `v * geometry.count + i`.

    Args:
        images: FLAIR volumes, each (S0, S1, S2) with values in [-1, 1] (copied as float32).
        masks: lesion masks, same shapes, values in {0, 1} (stored as uint8).
        slab: slices per sample along axis 0.
        step: stride between slab starts (`SlabGeometry` checks that the slabs tile S0).
        channels: copies of the FLAIR channel (3 for ImageNet encoders).
    Returns (per item):
        (image (channels, slab, S1, S2) float32, mask (1, slab, S1, S2) float32).
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
        channels: int = 3,
    ) -> None:
        if len(images) != len(masks) or not images:
            raise ValueError(
                f"need one mask per image and at least one volume, got {len(images)} images "
                f"and {len(masks)} masks"
            )
        self.images, self.masks = [], []
        shape = np.shape(images[0])
        for k, (image, mask) in enumerate(zip(images, masks)):
            image = np.asarray(image, dtype=np.float32)
            mask = np.asarray(mask)
            if image.ndim != 3 or image.shape != mask.shape:
                raise ValueError(
                    f"volume {k}: image {image.shape} and mask {mask.shape} must be equal 3-D "
                    f"shapes (S, S, S) with the slab axis first"
                )
            if image.shape != shape:
                raise ValueError(
                    f"volume {k} has shape {image.shape}, volume 0 {shape}: "
                    f"all volumes must share one shape (the cache resamples them to S³)"
                )
            if image.min() < -1.0 - 1e-5 or image.max() > 1.0 + 1e-5:
                raise ValueError(
                    f"volume {k}: FLAIR values must lie in [-1, 1] (the pipeline's scaling), "
                    f"found [{image.min():.3g}, {image.max():.3g}]"
                )
            if ((mask != 0) & (mask != 1)).any():
                raise ValueError(f"volume {k}: mask values must be 0 or 1")
            self.images.append(image)
            self.masks.append(mask.astype(np.uint8))
        self.geometry = SlabGeometry(self.images[0].shape[0], slab, step)
        self.channels = channels

    @classmethod
    def from_cache(cls, entries: Sequence[CacheEntry], *, slab: int, step: int) -> SlabDataset:
        """The slabs of cached cubes (read into memory), e.g. a split's scans.

        Raises:
            ValueError: as the constructor; also for an entry without a mask.
        """
        cubes = [entry.load(mmap=False) for entry in entries]
        missing = [e.record.patient_id for e, c in zip(entries, cubes) if c.mask is None]
        if missing:
            raise ValueError(f"training needs a lesion mask for every scan; the cache has none "
                             f"for {missing}: rebuild it from scans with masks")
        return cls([c.flair for c in cubes], [c.mask for c in cubes], slab=slab, step=step)

    def __len__(self) -> int:
        return len(self.images) * self.geometry.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"slab {index} out of range for {len(self)} slabs")
        volume, start = divmod(index % len(self), self.geometry.count)
        first = self.geometry.starts[start]
        cut = slice(first, first + self.geometry.slab)
        image = torch.from_numpy(self.images[volume][cut])
        mask = torch.from_numpy(self.masks[volume][cut])
        return image.unsqueeze(0).expand(self.channels, -1, -1, -1), mask.unsqueeze(0).float()


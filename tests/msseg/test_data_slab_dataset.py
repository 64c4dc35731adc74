"""SlabDataset: overlapping slabs of cached cubes, with the FLAIR copied to 3 channels."""

import numpy as np
import pytest
import torch
from msseg.config import PipelineConfig
from msseg.data.cache import fill_cache
from msseg.data.slab_dataset import SlabDataset
from msseg.io.discovery import find_msseg_scans


def test_slab_dataset_cuts_overlapping_slabs_and_copies_channels():
    image = np.linspace(-1, 1, 32 * 4 * 4, dtype=np.float32).reshape(32, 4, 4)
    mask = (image > 0.5).astype(np.uint8)
    data = SlabDataset([image, -image], [mask, mask], slab=16, step=8)
    assert len(data) == 2 * 3 and data.geometry.count == 3
    x, y = data[4]  # volume 1, slab 1: slices 8..23
    assert x.shape == (3, 16, 4, 4) and y.shape == (1, 16, 4, 4)
    assert x.dtype == y.dtype == torch.float32
    np.testing.assert_array_equal(x[2].numpy(), -image[8:24])
    np.testing.assert_array_equal(y[0].numpy(), mask[8:24])
    np.testing.assert_array_equal(data[-1][0].numpy(), data[5][0].numpy())
    with pytest.raises(IndexError):
        data[6]


def test_slab_dataset_refuses_bad_volumes():
    cube = np.zeros((16, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        SlabDataset([cube + 3], [cube], slab=8, step=4)
    with pytest.raises(ValueError, match="0 or 1"):
        SlabDataset([cube], [cube + 0.5], slab=8, step=4)
    with pytest.raises(ValueError, match="multiple of step"):
        SlabDataset([cube], [cube], slab=8, step=3)
    with pytest.raises(ValueError, match="share one shape"):
        SlabDataset([cube, cube[:8]], [cube, cube[:8]], slab=8, step=4)


def test_from_cache_reads_the_cubes_and_refuses_scans_without_masks(msseg_root, tmp_path):
    records = find_msseg_scans(msseg_root)
    entries = fill_cache(records, PipelineConfig(size=16), tmp_path / "cache", progress=False)
    data = SlabDataset.from_cache(entries, slab=8, step=4)
    assert len(data) == 2 * 3
    np.testing.assert_array_equal(data[3][0][0].numpy(), entries[1].load().flair[:8])
    (msseg_root / "07001MOEL" / "Consensus.nii.gz").unlink()
    unmasked = fill_cache(find_msseg_scans(msseg_root, require_masks=False), PipelineConfig(
        size=16), tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match=r"cache has none for \['07001MOEL'\]"):
        SlabDataset.from_cache(unmasked, slab=8, step=4)

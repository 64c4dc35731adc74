"""SlabDataset: overlapping slabs of cached cubes or windows of volumes of any shape, with the
FLAIR copied to 3 channels."""

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
    assert len(data) == 2 * 3
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
    with pytest.raises(ValueError, match="need one shape for all volumes"):
        SlabDataset([cube, cube[:8]], [cube, cube[:8]], slab=8, step=4)


def test_windows_tile_volumes_of_any_shape_as_the_sliding_window_places_them():
    """Depth 20 with slabs of 8 every 4: starts 0, 4, 8, 12 (the last flush with the end);
    in-plane 12 with windows of 8 and overlap 0.5: starts 0, 4; a 5 x 6 x 3 volume is padded
    to one window (FLAIR -1, mask 0)."""
    big = np.linspace(-1, 1, 20 * 12 * 10, dtype=np.float32).reshape(20, 12, 10)
    small = np.full((5, 6, 3), 0.5, np.float32)
    data = SlabDataset([big, small], [big > 0, np.ones(small.shape, np.uint8)], slab=8, step=4,
                       window=8, overlap=0.5)
    assert len(data) == 4 * 2 * 2 + 1
    x, y = data[2 * 2 + 1]  # depth start 4, rows 0..7, columns 2..9 (flush with the end)
    np.testing.assert_array_equal(x[0].numpy(), big[4:12, 0:8, 2:10])
    np.testing.assert_array_equal(y[0].numpy(), big[4:12, 0:8, 2:10] > 0)
    x, y = data[16]
    assert x.shape == (3, 8, 8, 8)
    np.testing.assert_array_equal(x[0, :5, :6, :3].numpy(), small)
    assert x[0].sum().item() == pytest.approx(small.sum() - (8 ** 3 - small.size))
    assert y.sum().item() == small.size


def test_from_cache_reads_the_cubes_and_refuses_scans_without_masks(msseg_root, tmp_path):
    records = find_msseg_scans(msseg_root)
    entries = fill_cache(records, PipelineConfig(volume_size=16), tmp_path / "cache",
                         progress=False)
    data = SlabDataset.from_cache(entries, slab=8, step=4)
    assert len(data) == 2 * 3
    np.testing.assert_array_equal(data[3][0][0].numpy(), entries[1].load().flair[:8])
    (msseg_root / "07001MOEL" / "Consensus.nii.gz").unlink()
    unmasked = fill_cache(find_msseg_scans(msseg_root, require_masks=False), PipelineConfig(
        volume_size=16), tmp_path / "cache", progress=False)
    with pytest.raises(ValueError, match=r"cache has none for \['07001MOEL'\]"):
        SlabDataset.from_cache(unmasked, slab=8, step=4)

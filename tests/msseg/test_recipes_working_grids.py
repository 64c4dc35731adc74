"""The working grid of a scan: planning without resampling, JSON round trips (the cache), the
dataset's default target spacing, and exact round trips where the grids coincide."""

import numpy as np
import pytest
from msseg.config import PipelineConfig, preset
from msseg.data.cache import grid_from_json
from msseg.data.preprocess import plan_grid
from msseg.io.discovery import ScanRecord
from msseg.io.orientation import Geometry
from msseg.recipes.paper import CubeGrid
from msseg.recipes.spacing import SpacingGrid, data_spacing, voxel_mm
from msseg_helpers import oriented_affine, save


def _geometry(axcodes="LPS", voxel=(0.7, 0.7, 4.0), shape=(30, 40, 9)):
    return Geometry.from_affine(shape, oriented_affine(axcodes, voxel, shape))


def test_voxel_sizes_follow_the_canonical_axes():
    geometry = _geometry("SPL", (4.0, 0.7, 0.5), (9, 40, 30))  # stored: S, P, L
    np.testing.assert_allclose(voxel_mm(geometry), [0.5, 0.7, 4.0])  # R, A, S


@pytest.mark.parametrize("config", [PipelineConfig(volume_size=12),
                                    PipelineConfig(recipe="spacing", spacing_mm=1.4)])
def test_grids_survive_json_and_map_the_same_way(config):
    geometry = _geometry()
    grid = plan_grid(geometry, config)
    again = grid_from_json(grid.to_json())
    assert type(again) is type(grid) and again.to_json() == grid.to_json()
    volume = np.random.default_rng(0).random(geometry.shape).astype(np.float32)
    np.testing.assert_array_equal(grid.to_working(volume, labels=False),
                                  again.to_working(volume, labels=False))
    assert isinstance(grid, CubeGrid if config.recipe == "paper" else SpacingGrid)
    with pytest.raises(ValueError, match="unknown working grid recipe 'nnunet'"):
        grid_from_json({**grid.to_json(), "recipe": "nnunet"})


def test_the_spacing_grid_is_planned_by_monai_without_resampling():
    grid = plan_grid(_geometry(), PipelineConfig(recipe="spacing", spacing_mm=1.4))
    assert grid.axes == (2, 0, 1) and grid.shape[0] == 9  # the 4 mm slices kept, planar axis
    # in-plane: the field of view (30 x 0.7 and 40 x 0.7 mm) at 1.4 mm, as MONAI's Spacing rounds
    np.testing.assert_allclose(grid.shape[1:], [30 * 0.7 / 1.4, 40 * 0.7 / 1.4], atol=1)
    np.testing.assert_allclose(np.diag(grid.affine), [4.0, 1.4, 1.4, 1.0])


def test_a_target_equal_to_the_scans_voxels_maps_labels_there_and_back_exactly():
    geometry = _geometry()
    grid = plan_grid(geometry, PipelineConfig(recipe="spacing", spacing_mm=0.7))
    assert grid.shape == (9, 30, 40)
    mask = (np.random.default_rng(1).random(geometry.shape) > 0.9).astype(np.uint8)
    np.testing.assert_array_equal(grid.to_native(grid.to_working(mask, labels=True),
                                                 labels=True), mask)


def test_the_working_spacing_is_the_training_scans_median_or_their_finest(tmp_path, msseg_log):
    """nnU-Net's rule by default: the median in-plane voxel size; one fine scan no longer sets
    every scan's cost. The finest on request; a spacing given is kept."""
    records = []
    for name, voxel in (("a", (0.9, 0.9, 5.0)), ("b", (0.45, 0.5, 3.0)), ("c", (1.0, 1.0, 1.0))):
        path = save(tmp_path / f"{name}.nii.gz", np.zeros((4, 4, 4), np.float32),
                    oriented_affine("RAS", voxel, (4, 4, 4)))
        records.append(ScanRecord(name, None, path, None))
    assert data_spacing(records)[0] == pytest.approx(0.9)
    assert data_spacing(records, rule="finest")[0] == pytest.approx(0.45)
    real = preset("real")
    assert real.with_data(records).spacing_mm == pytest.approx(0.9)
    assert ("working spacing 0.9 mm in-plane: the median of the in-plane voxel sizes of the 3 "
            "training scans (0.45 to 1 mm), as nnU-Net chooses it; --set spacing_rule=finest "
            "takes the finest, 0.45 mm") in msseg_log.text
    assert real.replace(spacing_rule="finest").with_data(records).spacing_mm == pytest.approx(0.45)
    assert real.replace(spacing_mm=2.0).with_data(records).spacing_mm == 2.0
    paper = preset("paper")
    assert paper.with_data(records) is paper
    with pytest.raises(ValueError, match="no scans"):
        data_spacing([])
    with pytest.raises(ValueError, match=r"spacing_rule must be one of \('median', 'finest'\)"):
        real.replace(spacing_rule="smallest")

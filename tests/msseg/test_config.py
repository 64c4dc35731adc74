"""The settings: presets, validation, the config's slab geometry and preprocessing."""

import pytest
from msseg.config import PAPER_THRESHOLD, PRESETS, PipelineConfig, TrainConfig, preset


def test_config_presets_round_trip_and_validation():
    paper = PRESETS["paper"]
    assert (paper.lr, paper.lr_decay, paper.batch_size, paper.epochs, paper.patience) == (
        5e-5, 1.99e-7, 2, 100, 40)
    assert (paper.slab, paper.slab_step, paper.slabs.count) == (16, 8, 31)
    assert not paper.train_encoder and not paper.train_bottleneck
    assert TrainConfig.from_dict(paper.to_dict()) == paper
    demo = preset("demo", epochs=2)
    assert demo.epochs == 2 and demo.volume_size == 64
    with pytest.raises(TypeError, match="unknown TrainConfig field"):
        preset("paper", lr_rate=1.0)
    with pytest.raises(ValueError, match="one positive filter count per encoder stage"):
        preset("paper", decoder_filters=(8, 8))
    with pytest.raises(ValueError, match=r"volume_size, slab, slab_step: .*step in"):
        preset("paper", slab_step=7)
    with pytest.raises(ValueError, match="choose one"):
        preset("paper", pretrained=True, weights="w.pth")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("fast")


def test_a_config_knows_its_slabs_preprocessing_and_threshold():
    paper = PRESETS["paper"]
    assert paper.slabs.starts[-1] == 240
    assert paper.pipeline == PipelineConfig(volume_size=256, percentiles=(0.5, 99.5))
    assert preset("demo").pipeline.volume_size == 64
    assert paper.threshold == PAPER_THRESHOLD == 16 / 256
    assert "  volume_size        = 256" in paper.describe().splitlines()


def test_pipeline_paper_defaults():
    config = PipelineConfig()
    assert config.volume_size == 256
    assert (config.flair_order, config.mask_order, config.normalisation) == (2, 0, "minmax")
    assert config.settings() == {"recipe": "paper", "size": 256, "flair_order": 2,
                                 "mask_order": 0, "normalisation": "minmax", "percentiles": None}
    robust = PipelineConfig(normalisation="percentile")
    assert robust.settings()["percentiles"] == [0.5, 99.5]
    spacing = PipelineConfig(recipe="spacing", spacing_mm=0.8)
    assert spacing.settings() == {"recipe": "spacing", "spacing_mm": 0.8, "flair_order": 2,
                                  "mask_order": 0, "normalisation": "minmax",
                                  "percentiles": None}


def test_the_real_preset_is_the_paper_network_with_the_real_data_recipe():
    real, paper = PRESETS["real"], PRESETS["paper"]
    assert (real.recipe, real.normalisation, real.spacing_mm, real.window) == (
        "spacing", "percentile", None, 256)
    same = {k: v for k, v in real.to_dict().items()
            if k not in ("recipe", "normalisation")}
    assert same == {k: v for k, v in paper.to_dict().items()
                    if k not in ("recipe", "normalisation")}
    with pytest.raises(ValueError, match="needs spacing_mm"):
        real.pipeline  # noqa: B018 (the median of the training scans is fixed first)
    assert real.replace(spacing_mm=0.9).pipeline.spacing_mm == 0.9
    with pytest.raises(ValueError, match=r"slab_step=20 is larger than slab=16"):
        real.replace(slab_step=20)
    with pytest.raises(ValueError, match=r"window_overlap must be in \[0, 1\)"):
        real.replace(window_overlap=1.0)
    with pytest.raises(ValueError, match="spacing_mm must be a positive voxel size"):
        real.replace(spacing_mm=0.0)
    with pytest.raises(ValueError, match="recipe must be one of"):
        real.replace(recipe="nnunet")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volume_size": 0}, "volume_size must be a positive integer"),
        ({"flair_order": 6}, "flair_order must be a spline order 0..5"),
        ({"mask_order": True}, "mask_order must be a spline order"),
        ({"normalisation": "zscore"}, "normalisation must be one of"),
        ({"recipe": "spacing"}, "recipe 'spacing' needs spacing_mm"),
        ({"recipe": "cube"}, "recipe must be one of"),
        ({"normalisation": "percentile", "percentiles": (90, 10)}, "0 <= low < high <= 100"),
    ],
)
def test_invalid_pipeline_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**kwargs)

"""What every recipe is: one object per recipe owns what differs between them, nothing else in
the package asks which recipe runs, and the config reads them without numpy or torch."""

import re
import subprocess
import sys
from pathlib import Path

import msseg
import pytest
from msseg.config import PRESETS, RECIPES, PipelineConfig, preset, recipe_named
from msseg.recipes.paper import CubeGrid, PaperRecipe
from msseg.recipes.spacing import SpacingGrid, SpacingRecipe


def test_nothing_outside_the_recipes_asks_which_recipe_runs():
    package = Path(msseg.__file__).parent
    switch = re.compile(r"recipe\s*(==|!=)|\.recipe\s+(not\s+)?in\b|(==|!=)\s*[\"'](paper|spacing)")
    assert (package / "recipes" / "paper.py").is_file()
    asking = [f"{path.relative_to(package)}:{line}" for path in package.rglob("*.py")
              if path.parent.name != "recipes"
              for line in path.read_text().splitlines() if switch.search(line)]
    assert asking == []


def test_the_config_and_its_recipes_load_without_numpy_or_torch():
    """The command line's help reads the config, which validates through the recipes."""
    code = ("import sys, msseg.config, msseg.recipes.paper, msseg.recipes.spacing\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'scipy', "
            "'monai', 'nibabel'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_the_recipes_by_name_each_with_its_grid_and_default_blend():
    assert list(RECIPES) == ["paper", "spacing"]
    assert isinstance(recipe_named("paper"), PaperRecipe)
    assert isinstance(recipe_named("spacing"), SpacingRecipe)
    assert (PaperRecipe.grid_type, SpacingRecipe.grid_type) == (CubeGrid, SpacingGrid)
    for name, recipe in RECIPES.items():
        assert recipe.grid_type.recipe == name
    assert [r.recomposition(None) for r in RECIPES.values()] == ["average", "gaussian"]
    with pytest.raises(ValueError, match=r"recompose='paper' does not apply to recipe "
                                         r"'spacing'; choose one of \('gaussian', 'average'\)"):
        recipe_named("spacing").recomposition("paper")
    with pytest.raises(ValueError, match=r"recipe must be one of \('paper', 'spacing'\), got "
                                         r"'nnunet'"):
        recipe_named("nnunet")


def test_each_recipe_describes_samples_and_feeds_the_network_its_own_way():
    paper, real = preset("demo"), PRESETS["real"].replace(spacing_mm=0.8, window=128)
    assert recipe_named(paper.recipe).describe(paper) == "recipe paper (64³ cube)"
    assert recipe_named(real.recipe).describe(real) == \
        "recipe spacing (0.8 mm in-plane, slices kept)"
    assert recipe_named("spacing").describe(PRESETS["real"]) == \
        "recipe spacing (the training scans' median in-plane, slices kept)"
    assert recipe_named(paper.recipe).input_shape(paper) == (16, 64, 64)
    assert recipe_named(real.recipe).input_shape(real) == (16, 128, 128)
    whole = recipe_named(paper.recipe).sampling(paper)
    windows = recipe_named(real.recipe).sampling(real)
    assert (whole.slab, whole.step, whole.window) == (16, 8, None)
    assert (windows.slab, windows.step, windows.window, windows.overlap) == (16, 8, 128, 0.5)


def test_a_recipe_checks_its_own_fields_and_no_other_recipes():
    """A window overlap means nothing to the paper's recipe; a cube edge that slabs cannot tile
    means nothing to the spacing recipe."""
    assert preset("paper", window_overlap=1.5).window_overlap == 1.5
    assert preset("real", volume_size=250).volume_size == 250
    with pytest.raises(ValueError, match=r"window_overlap must be in \[0, 1\)"):
        preset("real", window_overlap=1.5)
    with pytest.raises(ValueError, match=r"volume_size, slab, slab_step: .*multiple of step"):
        preset("paper", volume_size=250)
    assert PipelineConfig(volume_size=24).settings()["size"] == 24  # the cache key's name
    assert PipelineConfig(recipe="spacing", spacing_mm=0.5).settings()["spacing_mm"] == 0.5

"""The command line: its entry points, help texts made from the presets, messages, and the
phantom, preprocess and baseline commands end to end."""

import argparse
import subprocess
import sys
from pathlib import Path

import msseg
import pytest
from msseg.commands.main import COMMANDS, main
from msseg.commands.options import add_recipe_arguments, recipe_config
from msseg.config import DEMO_PHANTOM_SCALE, PRESETS

EXAMPLE = Path(msseg.__file__).resolve().parents[2]  # examples/msseg


def test_help_lists_every_command_from_the_folder_and_the_package():
    for command in ([sys.executable, str(EXAMPLE), "--help"],
                    [sys.executable, "-m", "msseg", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        for entry in COMMANDS:
            assert entry.name in result.stdout and entry.help in result.stdout


def test_commands_never_import_each_other_nor_the_library_at_parse_time():
    """A command module imports `msseg.config` and `msseg.commands.options` at most (the help
    must not pay for torch); a stage never imports a command."""
    code = ("import sys; from msseg.commands.main import COMMANDS, build_parser\n"
            "for c in COMMANDS: build_parser(c.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'scipy', 'nibabel', "
            "'timm', 'matplotlib', 'numpy', 'monai'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    package = Path(msseg.__file__).parent
    for path in package.rglob("*.py"):
        if path.parent.name == "commands" and path.stem == "main":
            continue  # the dispatcher names every command
        text = path.read_text()
        others = [c.module for c in COMMANDS if c.module != f"msseg.commands.{path.stem}"]
        assert not [m for m in others if m in text], path
        if path.parent.name != "commands" and path.name != "__main__.py":
            assert "msseg.commands" not in text, path


def test_help_texts_come_from_the_presets(capsys):
    for command in ("phantom", "train", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    demo = PRESETS["demo"]
    assert f"uses {DEMO_PHANTOM_SCALE}" in out and DEMO_PHANTOM_SCALE == 0.125
    assert f"paper {PRESETS['paper'].epochs}, real {PRESETS['real'].epochs}, demo {demo.epochs}" \
        in out and demo.epochs == 20
    assert "paper vgg16, real vgg16, demo mobilenetv2_100" in out
    assert "'minmax' (the paper) or 'percentile' (robust: percentiles of the head" in out
    assert "(paper minmax, real percentile, demo minmax)" in out
    assert f"default {demo.epochs}, the demo preset's" in out
    assert "a timm/torchvision state dict (.pth), or for vgg16 the Keras VGG-16 as .onnx" in out
    assert "--samples-per-epoch N" in out


def test_phantom_preprocess_baseline_end_to_end(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    assert main(["phantom", "-o", str(data), "--scale", "0.12", "--seed", "3"]) == 0
    assert "wrote 15 scans" in capsys.readouterr().out
    assert main(["preprocess", "-i", str(data), "-c", str(cache), "--config", "demo",
                 "--set", "volume_size=24"]) == 0
    out = capsys.readouterr().out
    assert "15 scans cached, recipe paper (24³ cube)" in out and "24x24x24" in out
    assert len(list(cache.iterdir())) == 15
    assert main(["preprocess", "-i", str(data), "-c", str(cache), "--set", "spacing_mm=3"]) == 0
    out = capsys.readouterr().out
    assert "15 scans cached, recipe spacing (3 mm in-plane, slices kept)" in out
    assert len(list(cache.iterdir())) == 30
    assert main(["baseline", "-i", str(data)]) == 0
    out = capsys.readouterr().out
    assert "best global threshold" in out and "centre 07 (n=5):" in out and "overall (n=15)" in out
    assert "fitted on 15 scans" in out and "optimistic" in out
    assert main(["baseline", "-i", str(data), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")


def test_recipe_flags_take_a_preset_or_a_checkpoint_and_set_fields(tmp_path):
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    config = recipe_config(parser.parse_args(["--set", "spacing_mm=0.8", "window=128"]))
    assert (config.recipe, config.spacing_mm, config.window) == ("spacing", 0.8, 128)
    assert config.normalisation == "percentile"
    assert recipe_config(parser.parse_args([])).spacing_mm is None  # from the data
    paper = recipe_config(parser.parse_args(["--config", "paper", "--set", "volume_size=64"]))
    assert paper.pipeline.settings() == {
        "recipe": "paper", "size": 64, "flair_order": 2, "mask_order": 0,
        "normalisation": "minmax", "percentiles": None}
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", "paper", "-m", "best.pt"])  # one source of the recipe


def test_bad_input_prints_one_clear_line(tmp_path, capsys):
    assert main(["baseline", "-i", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing: MSSEG data folder not found" in err
    assert main(["preprocess", "-i", str(tmp_path), "-c", str(tmp_path / "c"),
                 "--config", "paper", "--set", "volume_size=0"]) == 1
    assert "volume_size must be a positive integer" in capsys.readouterr().err


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train-everything"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err

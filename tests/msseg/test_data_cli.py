"""``python examples/msseg <command>``: phantom, preprocess, baseline."""

import subprocess
import sys

import pytest
from data_helpers import EXAMPLES
from msseg.commands.main import COMMANDS, main


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, str(EXAMPLES / "msseg"), "--help"],
                            capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command.name in result.stdout and command.help in result.stdout


def test_phantom_preprocess_baseline_end_to_end(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    assert main(["phantom", "--out", str(data), "--scale", "0.12", "--seed", "3"]) == 0
    assert "wrote 15 scans" in capsys.readouterr().out
    assert main(["preprocess", "--data", str(data), "--cache", str(cache), "--size", "24"]) == 0
    out = capsys.readouterr().out
    assert "15 scans cached at S=24" in out and len(list(cache.iterdir())) == 15
    assert main(["baseline", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "best global threshold" in out and "centre 07:" in out and "overall: Dice" in out


def test_bad_input_prints_one_clear_line(tmp_path, capsys):
    assert main(["baseline", "--data", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing: MSSEG data folder not found" in err
    assert main(["preprocess", "--data", str(tmp_path), "--cache", str(tmp_path / "c"),
                 "--size", "250"]) == 1
    assert "size=248 or 256" in capsys.readouterr().err


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train-everything"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err

"""``train`` (and ``summary``): flags over presets, outputs and --resume."""

import json

import pytest
import torch
from msseg.commands.main import build_parser, main
from msseg.commands.options import train_config
from msseg.config import TrainConfig
from msseg.training.checkpoint import load_checkpoint
from msseg_helpers import TINY_FLAGS, state_equal

TEST_SCANS = ["01016SACH", "07001MOEL", "08002CHJE"]


def _args(*argv):
    return build_parser("train").parse_args(["train", "--data", "d", "--out", "o", *argv])


def test_flags_and_set_override_the_preset():
    config = train_config(_args(
        "--config", "demo", "--epochs", "3", "--lr", "2e-4", "--precision", "bf16", "--compile",
        "--weights", "w.pth", "--set", "decoder_filters=32,16,8,4", "deterministic=true",
        "threshold=0.25", "weights=None"), out_dir="runs/x")
    assert (config.encoder, config.volume_size) == ("mobilenetv2_100", 64)  # from the preset
    assert (config.epochs, config.lr, config.precision, config.compile) == (3, 2e-4, "bf16", True)
    assert config.decoder_filters == (32, 16, 8, 4) and config.deterministic is True
    assert config.threshold == 0.25 and config.out_dir == "runs/x"
    assert config.weights == "w.pth"  # the --weights flag wins over --set weights=None
    paper = train_config(_args("--precision", "fp32", "--trainable-bottleneck"))
    assert paper.precision == "fp32" and paper.train_bottleneck and paper.lr == 5e-5
    twice = train_config(_args("--set", "epochs=3", "--set", "lr=0.1"))
    assert (twice.epochs, twice.lr) == (3, 0.1)  # a second --set adds to the first
    with pytest.raises(ValueError, match="expected FIELD=VALUE with FIELD one of"):
        train_config(_args("--set", "learning_rate=1"))
    with pytest.raises(ValueError, match=r"--set epochs=many: expected a value like 100"):
        train_config(_args("--set", "epochs=many"))
    with pytest.raises(ValueError, match="decoder_filters needs one positive filter count"):
        train_config(_args("--set", "decoder_filters=8,8"))


def test_train_command_saves_its_config_and_resumes_to_the_same_weights(phantom_dir, tmp_path,
                                                                         capsys):
    common = ["--data", str(phantom_dir), "--cache", str(tmp_path / "cache"), "--exclude",
              *TEST_SCANS, "--val", "08037ROGU", *TINY_FLAGS]
    one = tmp_path / "one"
    assert main(["train", "--out", str(one), "--epochs", "1", *common]) == 0
    out = capsys.readouterr().out
    assert "training on 11 scans" in out and "validating on ['08037ROGU']" in out
    assert "volume_size        = 16" in out and "best validation loss" in out
    saved = TrainConfig.from_dict(json.loads((one / "config.json").read_text()))
    assert saved == TrainConfig.from_dict(load_checkpoint(one / "last.pt")["config"])
    assert (saved.epochs, saved.volume_size, saved.encoder, saved.out_dir) == (
        1, 16, "test_resnet", str(one))
    assert len((one / "history.csv").read_text().splitlines()) == 2  # header + 1 epoch
    page = (one / "report.html").read_text()  # the run in a browser: curves, history, config
    assert f"report: {one / 'report.html'}" in out and "data:image/png;base64," in page
    assert ">08037ROGU<" in page and "volume_size        = 16" in page

    # resume with no model flags: the checkpoint's config, then --epochs 2
    assert main(["train", "--data", str(phantom_dir), "--cache", str(tmp_path / "cache"),
                 "--out", str(one), "--exclude", *TEST_SCANS, "--val", "08037ROGU",
                 "--resume", str(one / "last.pt"), "--epochs", "2"]) == 0
    assert "resumed from" in capsys.readouterr().out
    resumed = load_checkpoint(one / "last.pt")
    assert resumed["epoch"] == 2 and TrainConfig.from_dict(resumed["config"]).volume_size == 16

    two = tmp_path / "two"
    assert main(["train", "--out", str(two), "--epochs", "2", *common]) == 0
    straight = load_checkpoint(two / "last.pt")
    assert state_equal(resumed["model"], straight["model"])
    assert [r["val_loss"] for r in resumed["history"]] == [
        r["val_loss"] for r in straight["history"]]
    assert len(list((tmp_path / "cache").iterdir())) == 12  # 11 training + 1 validation


def test_train_into_a_finished_run_refuses_before_any_work(phantom_dir, tmp_path, capsys):
    """Without --resume or --overwrite nothing of the earlier run changes, config.json included,
    and the refusal comes before preprocessing (the cache stays empty)."""
    run = tmp_path / "run"
    common = ["train", "--data", str(phantom_dir), "--out", str(run), "--exclude", *TEST_SCANS,
              "--val", "08037ROGU", *TINY_FLAGS]
    assert main([*common, "--cache", str(tmp_path / "cache"), "--epochs", "1"]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    assert main([*common, "--cache", str(tmp_path / "other"), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: holds a training run already")
    assert f"pass --resume {run / 'last.pt'} to continue it, --overwrite to replace it" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (tmp_path / "other").exists()
    assert main([*common, "--cache", str(tmp_path / "cache"), "--epochs", "1",
                 "--overwrite"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_train_refuses_an_unknown_validation_scan(phantom_dir, tmp_path, capsys):
    assert main(["train", "--data", str(phantom_dir), "--out", str(tmp_path / "o"),
                 "--val", "01999XXXX", *TINY_FLAGS]) == 1
    assert "unknown patient id(s) ['01999XXXX']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_summary_prints_the_papers_parameter_counts(capsys):
    assert main(["summary", "--config", "paper"]) == 0
    out = capsys.readouterr().out
    assert "input (1, 3, 16, 256, 256)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.split() and line.split()[0] in ("encoder", "bottleneck", "decoder", "total")}
    assert rows["total"] == ["22,870,881", "10,516,001", "12,354,880"]
    assert rows["encoder"] == ["7,635,264", "0", "7,635,264"]
    assert rows["bottleneck"] == ["4,719,616", "0", "4,719,616"]
    assert rows["decoder"] == ["10,516,001", "10,516,001", "0"]
    torch.manual_seed(0)
    assert main(["summary", "--config", "demo", "--encoder", "resnet18",
                 "--trainable-bottleneck"]) == 0
    out = capsys.readouterr().out
    assert "encoder resnet18" in out and "input (1, 3, 16, 64, 64)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    total, trainable, frozen = (int(v.replace(",", "")) for v in rows["total"])
    encoder = int(rows["encoder"][0].replace(",", ""))
    assert frozen == encoder and trainable == total - encoder  # bottleneck trainable too

"""Bad files and bad flags at the command line: each is one ``error:`` line that names the file,
what is wrong and what to do (never a traceback), and nothing is written.

Checkpoint faults (for predict and for train --resume), flipped bits, malicious pickles, header
bombs, a damaged cache, --device foo, --pretrained without network, running out of memory, and
SIGTERM in the middle of a write.
"""

import gzip
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from msseg.commands.main import main
from msseg.io.checksum import values_digest
from msseg.training.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from msseg.training.engine import train
from msseg_helpers import TINY_FLAGS, save, tiny_config, tiny_datasets

FROM_TRAIN = "use a last.pt or best.pt written by `msseg train`"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A checkpoint of the tiny config, and a scan to predict."""
    root = tmp_path_factory.mktemp("inputs")
    checkpoint = train(tiny_config(root / "run", epochs=1), *tiny_datasets()).last_path
    flair = np.random.default_rng(0).uniform(100, 200, (20, 14, 11)).astype(np.float32)
    return checkpoint, save(root / "scan.nii.gz", flair, np.eye(4))


class Payload:
    """What a malicious pickle runs when loaded without weights_only: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _truncated(path, good):
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "cannot be read as a checkpoint"


def _empty(path, good):
    path.write_bytes(b"")
    return "checkpoint is empty (0 bytes)"


def _text(path, good):
    path.write_text("epoch,val_loss\n1,0.5\n")
    return "checkpoint is not a torch file (it begins with text)"


def _onnx(path, good):
    path.write_bytes(b"\x08\x07\x12\x07tf2onnx\x1a\x0b1.16")  # how an ONNX model begins
    return "checkpoint is not a torch file (it begins like an ONNX model"


def _folder(path, good):
    path.mkdir()
    return "checkpoint is a folder"


def _weights_2d(path, good):
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    return "not an msseg checkpoint of format 2"


def _without_model(path, good):
    checkpoint = load_checkpoint(good)
    del checkpoint["model"]
    save_checkpoint(path, checkpoint)
    return "checkpoint lacks ['model']"


def _invalid_config(path, good):
    checkpoint = load_checkpoint(good)
    checkpoint["config"]["threshold"] = 2.0
    save_checkpoint(path, checkpoint)
    return "its config is invalid (threshold must be a probability in (0, 1), got 2.0)"


def _incomplete_config(path, good):
    checkpoint = load_checkpoint(good)
    checkpoint["config"].update(recipe="spacing", spacing_mm=None)
    save_checkpoint(path, checkpoint)
    return "its config is invalid (recipe 'spacing' needs spacing_mm"


def _nan_weights(path, good):
    checkpoint = load_checkpoint(good)
    name = next(iter(checkpoint["model"]))
    checkpoint["model"][name] = torch.full_like(checkpoint["model"][name], float("nan"))
    save_checkpoint(path, checkpoint)
    return f"its weights hold NaN or infinite values (first: {name})"


def _unknown_field(path, good):
    checkpoint = load_checkpoint(good)
    checkpoint["config"]["future_field"] = 1
    save_checkpoint(path, checkpoint)
    return "its config does not fit this version of msseg (unknown TrainConfig field(s)"


def _other_encoder(path, good):
    checkpoint = load_checkpoint(good)
    checkpoint["config"]["encoder"] = "resnet18"
    save_checkpoint(path, checkpoint)
    return "its weights do not fit the model its config describes (encoder resnet18)"


def _malicious(path, good):
    torch.save({"format": 2, "model": Payload(path.with_name("pwned"))}, path)
    return "refused: it holds Python objects other than tensors and plain values"


def _malicious_legacy(path, good):
    path.write_bytes(pickle.dumps(Payload(path.with_name("pwned"))))
    return "refused: it holds Python objects other than tensors and plain values"


CHECKPOINT_FAULTS = [_truncated, _empty, _text, _onnx, _folder, _weights_2d, _without_model,
                     _invalid_config, _incomplete_config, _unknown_field, _other_encoder,
                     _nan_weights, _malicious, _malicious_legacy]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err[len("error: "):].rstrip("\n")


@pytest.mark.parametrize("fault", CHECKPOINT_FAULTS, ids=[f.__name__[1:] for f in
                                                          CHECKPOINT_FAULTS])
def test_a_bad_checkpoint_is_one_line_for_predict_and_for_resume(good, tmp_path, capsys, fault):
    checkpoint, scan = good
    bad = tmp_path / "bad.pt"
    problem = fault(bad, checkpoint)
    assert main(["predict", "-m", str(bad), "-i", str(scan), "-o", str(tmp_path / "out")]) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{bad}: ") and problem in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()
    assert "could run code" not in message or fault in (_malicious, _malicious_legacy)
    if fault in (_other_encoder, _nan_weights):  # found when the weights meet the model
        with pytest.raises(CheckpointError) as caught:
            train(checkpoint_config(load_checkpoint(bad), bad).replace(out_dir=str(
                tmp_path / "run")), *tiny_datasets(), resume=bad)
        assert str(caught.value) == message
        return
    assert main(["train", "-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "run"),
                 "--resume", str(bad)]) == 1
    assert _one_error(capsys) == message
    assert not (tmp_path / "run").exists() and not (tmp_path / "pwned").exists()


def test_4_kb_of_flipped_bits_anywhere_never_load_as_other_weights(good, tmp_path, capsys):
    """Every other 4 KB block of a checkpoint flipped in turn: the load is refused, or (where
    the block holds nothing torch reads) gives exactly the contents that were saved."""
    checkpoint, scan = good
    data = good[0].read_bytes()
    saved = values_digest({k: v for k, v in load_checkpoint(checkpoint).items()})
    refused = 0
    starts = range(0, len(data), 8192)
    for start in starts:
        flipped = bytearray(data)
        flipped[start:start + 4096] = bytes(b ^ 0xFF for b in flipped[start:start + 4096])
        (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(tmp_path / "flipped.pt")
        except CheckpointError as error:
            assert str(error).startswith(f"{tmp_path / 'flipped.pt'}: ")
            refused += 1
        else:
            assert values_digest(loaded) == saved
    assert refused >= len(starts) - 1
    middle = bytearray(data)
    middle[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)
    (tmp_path / "flipped.pt").write_bytes(bytes(middle))
    assert main(["predict", "-m", str(tmp_path / "flipped.pt"), "-i", str(scan), "-o",
                 str(tmp_path / "out")]) == 1
    assert "flipped.pt: checksum mismatch: the contents changed after they were written" in \
        _one_error(capsys)


def test_a_header_bomb_is_one_line_and_nothing_is_decompressed(good, tmp_path, capsys):
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    with gzip.open(tmp_path / "bomb.nii.gz", "wb") as handle:  # 256 MiB of zeros inside
        handle.write(header.binaryblock + b"\0" * 4)
        for _ in range(16):
            handle.write(bytes(16 * 2**20))
    assert (tmp_path / "bomb.nii.gz").stat().st_size < 2**20
    assert main(["predict", "-m", str(good[0]), "-i", str(tmp_path / "bomb.nii.gz"), "-o",
                 str(tmp_path / "out")]) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{tmp_path / 'bomb.nii.gz'}: FLAIR header declares "
                              "2000x2000x2000 = 8,000,000,000 voxels (29.8 GiB of float32)")
    assert message.endswith("raise the limit, e.g. MSSEG_MAX_VOXELS=8000000000 msseg ...")


def test_a_device_that_does_not_exist_is_one_line_before_any_work(good, phantom_dir, tmp_path,
                                                                   capsys):
    assert main(["predict", "-m", str(good[0]), "-i", str(good[1]), "-o", str(tmp_path / "out"),
                 "--device", "foo"]) == 1
    assert _one_error(capsys).startswith("device 'foo' is not a device name; use 'auto'")
    assert main(["train", "-i", str(phantom_dir), "-o", str(tmp_path / "run"), "--cache",
                 str(tmp_path / "cache"), *TINY_FLAGS, "--device", "foo"]) == 1
    assert _one_error(capsys).startswith("device 'foo' is not a device name")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_pretrained_offline_is_one_line_before_preprocessing(phantom_dir, tmp_path, capsys,
                                                             monkeypatch):
    def unreachable(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr("msseg.model.hub._cached", lambda name: False)
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["train", "-i", str(phantom_dir), "-o", str(tmp_path / "run"), "--cache",
                 str(tmp_path / "cache"), *TINY_FLAGS, "--pretrained"]) == 1
    assert _one_error(capsys).endswith("pass it with --weights FILE (weights=FILE)")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cache_file_is_named_and_rebuilt(phantom_dir, tmp_path, capsys):
    args = ["preprocess", "-i", str(phantom_dir), "-c", str(tmp_path / "cache"), "--config", "demo",
            "--set", "volume_size=16"]
    assert main(args) == 0
    flair = sorted((tmp_path / "cache").glob("*/flair.npy"))[3]
    fresh = flair.read_bytes()
    flair.write_bytes(fresh[:1000])
    capsys.readouterr()
    assert main(args) == 0
    warning = capsys.readouterr().err
    assert warning == (f"warning: {flair}: cache file truncated or changed after it was written "
                       f"(checksum mismatch); delete {flair.parent} or run `msseg preprocess` "
                       f"(or train) again, which rebuilds it; rebuilding it\n")
    assert flair.read_bytes() == fresh


def test_out_of_memory_is_one_line(capsys, monkeypatch):
    def exhausted(args):
        raise MemoryError()

    monkeypatch.setattr("msseg.commands.summary.run", exhausted)
    assert main(["summary"]) == 1
    assert _one_error(capsys).startswith("out of memory running `msseg summary`")


def test_sigterm_mid_write_exits_cleanly_and_leaves_no_partial_file(tmp_path):
    """A scheduler preempting the job sends SIGTERM: the command ends like Ctrl-C (exit 143),
    and the write in progress removes its temporary file."""
    script = textwrap.dedent(f"""
        import sys, time
        from msseg.io import atomic
        def stuck(temporary):
            print("writing", temporary.name, flush=True)
            time.sleep(60)
        atomic._flush = stuck
        from msseg.commands.main import main
        sys.exit(main(["phantom", "-o", {str(tmp_path / "data")!r}, "--scale", "0.1"]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line = child.stdout.readline()
    assert line.startswith("writing .") and ".partial" in line
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 128 + signal.SIGTERM
    left = [p.name for p in (tmp_path / "data").rglob("*") if ".partial" in p.name]
    assert left == []


def test_an_output_folder_that_is_a_file_is_one_line(phantom_dir, good, tmp_path, capsys):
    """No raw ``[Errno ...]``: the line names the path, says it is a file and what to do."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for where in (blocker, blocker / "sub"):
        for args in (["train", "-i", str(phantom_dir), "-o", str(where), *TINY_FLAGS],
                     ["preprocess", "-i", str(phantom_dir), "-c", str(where), "--config",
                      "demo"],
                     ["predict", "-m", str(good[0]), "-i", str(good[1]), "-o", str(where)],
                     ["phantom", "-o", str(where), "--scale", "0.1"]):
            assert main(args) == 1, args
            message = _one_error(capsys)
            assert message.startswith(f"{where}: ") and "[Errno" not in message, message
            assert f"{blocker} is a file, expected a folder" in message, message
    assert blocker.read_text() == "not a folder"


def test_missing_and_empty_masks_name_what_to_do_on_the_command_line(msseg_root, tmp_path,
                                                                     capsys):
    """The fix a message gives is a flag of the command, not a Python keyword argument."""
    mask = msseg_root / "07001MOEL" / "Consensus.nii.gz"
    image = nib.load(mask)
    save(mask, np.zeros(image.shape, np.uint8), image.affine)
    args = ["train", "-i", str(msseg_root), "-o", str(tmp_path / "run"), *TINY_FLAGS]
    assert main(args) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{mask}: mask is empty") and "--exclude 07001MOEL" in message
    assert "=True" not in message and "=False" not in message
    mask.unlink()
    assert main(args) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{mask}: lesion mask missing") and "--exclude 07001MOEL" in \
        message
    assert "=True" not in message and "=False" not in message


def test_ctrl_c_is_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("msseg.commands.summary.run", interrupted)
    assert main(["summary"]) == 130
    assert _one_error(capsys).startswith("msseg summary stopped (Ctrl-C)")


def test_a_scan_given_as_a_checkpoint_is_named_for_what_it_is(good, tmp_path, capsys):
    scan = good[1]
    assert main(["predict", "-m", str(scan), "-i", str(scan), "-o", str(tmp_path / "out")]) == 1
    assert _one_error(capsys) == (f"{scan}: checkpoint is not a torch file (it begins like a "
                                  f"gzip file: a .nii.gz scan?); {FROM_TRAIN}")
    plain = tmp_path / "scan.nii"
    plain.write_bytes(gzip.decompress(scan.read_bytes()))
    assert main(["predict", "-m", str(plain), "-i", str(scan), "-o", str(tmp_path / "out")]) == 1
    assert "it begins like a NIfTI image: a scan?" in _one_error(capsys)


def test_a_negative_minimum_lesion_volume_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "-p", str(tmp_path), "-t", str(tmp_path),
                 "--min-lesion-mm3", "-5"]) == 1
    assert _one_error(capsys) == "--min-lesion-mm3 must be a volume >= 0 in mm³; got -5.0"

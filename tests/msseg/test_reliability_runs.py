"""Training runs under faults a user makes, through the ``msseg`` command: nothing a run saved is
cut back, nothing is said that is not so, nothing changes in silence.

- resuming from an older state of a run (a copy of an earlier last.pt, a best.pt behind last.pt)
  refuses in that folder and continues into a new one;
- resuming after the data changed says what changed;
- resuming a finished run into a new folder continues it there, with its files;
- fp16 on a CPU is refused before any work;
- a stop request (SIGTERM) is acknowledged at once and honoured within seconds even when
  training is inside a long computation, and a run stopped before its first epoch was saved
  starts again without flags;
- a bad ``--weights`` file is one line, before any preprocessing.
"""

import csv
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from msseg.commands.main import main
from msseg.training.checkpoint import load_checkpoint
from msseg_helpers import TINY_FLAGS, save, state_equal, tiny_config, tiny_datasets

TEST_SCANS = ["01016SACH", "07001MOEL", "08002CHJE"]


def _train(phantom_dir, cache, out, *flags, exclude=TEST_SCANS):
    return main(["train", "-i", str(phantom_dir), "-o", str(out), "--cache", str(cache),
                 "--exclude", *exclude, *TINY_FLAGS, *flags])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _epochs(history: Path) -> list[int]:
    with open(history, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0][len("error: "):]


@pytest.fixture(scope="module")
def two_epochs(phantom_dir, tmp_path_factory):
    """A run of 2 epochs, a copy of its last.pt after epoch 1 (`epoch1.pt`, in the run's folder),
    and the shared cache."""
    root = tmp_path_factory.mktemp("runs")
    run, cache = root / "run", root / "cache"
    assert _train(phantom_dir, cache, run, "--epochs", "1", "-q") == 0
    shutil.copy(run / "last.pt", run / "epoch1.pt")
    assert _train(phantom_dir, cache, run, "--epochs", "2", "--resume", str(run / "last.pt"),
                  "-q") == 0
    return run, cache


def test_resuming_from_an_older_state_never_cuts_the_runs_newer_epochs(two_epochs, phantom_dir,
                                                                       tmp_path, capsys):
    run, cache = two_epochs
    before = _files(run)
    assert _train(phantom_dir, cache, run, "--epochs", "2", "--resume",
                  str(run / "epoch1.pt")) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{run / 'last.pt'}: holds epoch 2, newer than "
                              f"{run / 'epoch1.pt'} (epoch 1)"), message
    assert f"resume from {run / 'last.pt'}" in message and "into a new folder (-o" in message
    assert _files(run) == before and _epochs(run / "history.csv") == [1, 2]

    new = tmp_path / "branch"
    assert _train(phantom_dir, cache, new, "--epochs", "2", "--resume",
                  str(run / "epoch1.pt")) == 0
    assert _files(run) == before
    assert load_checkpoint(new / "last.pt")["epoch"] == 2 and _epochs(new / "history.csv") == [
        1, 2]
    assert state_equal(load_checkpoint(new / "last.pt")["model"],
                       load_checkpoint(run / "last.pt")["model"])  # resume is exact


def test_resuming_a_finished_run_into_a_new_folder_continues_it_there(two_epochs, phantom_dir,
                                                                      tmp_path, capsys):
    run, cache = two_epochs
    before = _files(run)
    same = tmp_path / "same"
    capsys.readouterr()
    assert _train(phantom_dir, cache, same, "--resume", str(run / "last.pt")) == 0
    out, err = capsys.readouterr()
    assert "interrupted" not in out + err
    assert f"continuing the run of {run / 'last.pt'} (epoch 2) in {same}" in out
    assert load_checkpoint(same / "last.pt")["epoch"] == 2
    assert (same / "last.pt").read_bytes() == before["last.pt"]
    assert (same / "best.pt").read_bytes() == before["best.pt"]
    assert _epochs(same / "history.csv") == [1, 2]

    longer = tmp_path / "longer"
    assert _train(phantom_dir, cache, longer, "--resume", str(run / "last.pt"),
                  "--epochs", "3") == 0
    assert load_checkpoint(longer / "last.pt")["epoch"] == 3
    assert _epochs(longer / "history.csv") == [1, 2, 3]
    assert _files(run) == before


def test_resuming_on_changed_data_says_what_changed(two_epochs, phantom_dir, tmp_path, capsys):
    run, cache = two_epochs
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    image = nib.load(data / "01038PAGU" / "3DFLAIR.nii.gz")
    save(data / "01038PAGU" / "3DFLAIR.nii.gz", 1.5 * image.get_fdata(dtype=np.float32),
         image.affine)
    branch = tmp_path / "branch"
    shutil.copytree(run, branch)
    capsys.readouterr()
    assert main(["train", "-i", str(data), "-o", str(branch), "--cache", str(cache),
                 "--exclude", "01016SACH", "07001MOEL", "08027SYBR", *TINY_FLAGS,
                 "--resume", str(branch / "last.pt"), "--epochs", "3"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if "changed since" in line]
    assert warnings == [
        f"warning: {branch / 'last.pt'}: the training scans changed since the checkpoint was "
        f"saved: 1 added (08002CHJE), 1 removed (08027SYBR), 1 with other contents "
        f"(01038PAGU); the run continues on the scans given now"], warnings


@pytest.mark.parametrize("command", ["train", "predict"])
def test_fp16_on_a_cpu_is_refused_before_any_work(phantom_dir, tmp_path, capsys, command):
    model = None
    if command == "predict":
        from msseg.training.engine import train

        model = train(tiny_config(tmp_path / "run", epochs=1), *tiny_datasets()).last_path
        args = ["predict", "-m", str(model), "-i", str(phantom_dir / "01016SACH"), "-o",
                str(tmp_path / "out"), "--device", "cpu", "--precision", "fp16"]
    else:
        args = ["train", "-i", str(phantom_dir), "-o", str(tmp_path / "out"), "--cache",
                str(tmp_path / "cache"), *TINY_FLAGS, "--device", "cpu", "--precision", "fp16"]
    capsys.readouterr()
    assert main(args) == 1
    message = _one_error(capsys)
    assert message.startswith("precision fp16 on the CPU: ") and "fp32" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


STOPPED_IN_A_LONG_STEP = """
    import signal, sys, time
    import torch
    real = torch.optim.Adam.step

    def stuck(self, *args, **kwargs):  # a step the main thread does not leave for a while
        print("stepping", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        time.sleep(300)
        return real(self, *args, **kwargs)

    torch.optim.Adam.step = stuck
    from msseg.commands.main import main
    sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_request_in_the_first_epoch_is_acknowledged_honoured_and_restartable(
        phantom_dir, tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(STOPPED_IN_A_LONG_STEP))
    args = ["train", "-i", str(phantom_dir), "-o", str(run), "--cache", str(cache),
            "--exclude", *TEST_SCANS, *TINY_FLAGS, "--epochs", "1"]
    child = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        for line in child.stdout:
            if line.startswith("stepping"):
                break
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=120)  # a guard: the run stops within seconds, or the test fails
    finally:
        child.kill()
    err = child.stderr.read()
    assert code == 128 + signal.SIGTERM, err
    assert "warning: stop requested (SIGTERM): stopping msseg train" in err, err
    assert not (run / "last.pt").exists()

    capsys.readouterr()
    assert main(args) == 0  # no epoch was saved: the run starts again, no flag needed
    out = capsys.readouterr().out
    assert f"{run}: holds no saved epoch (a run stopped before its first one); starting it " \
           "again" in out
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


class _Payload:
    def __reduce__(self):
        return (print, ("a pickle ran code",))


def _text(path):
    path.write_text("weights, please\n")
    return "not a torch file (it begins with text)"


def _empty(path):
    path.write_bytes(b"")
    return "empty (0 bytes)"


def _truncated(path):
    buffer = path.with_suffix(".whole")
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, buffer)
    data = buffer.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated or damaged"


def _pickled_object(path):
    torch.save({"features.0.weight": _Payload()}, path)
    return "refused: it holds Python objects other than tensors and plain values"


def _raw_pickle(path):
    path.write_bytes(pickle.dumps(_Payload()))
    return "refused: it holds Python objects other than tensors and plain values"


def _folder(path):
    path.mkdir()
    return "is a folder"


def _fake_onnx(path):
    path = path.with_suffix(".onnx")
    path.write_text("not onnx\n")
    return "cannot read it as ONNX"


WEIGHT_FAULTS = [_text, _empty, _truncated, _pickled_object, _raw_pickle, _folder, _fake_onnx]


@pytest.mark.parametrize("fault", WEIGHT_FAULTS, ids=[f.__name__[1:] for f in WEIGHT_FAULTS])
@pytest.mark.parametrize("command", ["train", "cv"])
def test_a_bad_weights_file_is_one_line_before_any_work(phantom_dir, tmp_path, capsys, fault,
                                                        command):
    weights = tmp_path / "weights.pth"
    problem = fault(weights)
    if fault is _fake_onnx:
        weights = weights.with_suffix(".onnx")
    assert main([command, "-i", str(phantom_dir), "-o", str(tmp_path / "out"), "--cache",
                 str(tmp_path / "cache"), *TINY_FLAGS, "--weights", str(weights)]) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{weights}: ") and problem in message, message
    assert "--weights" in message
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    assert "a pickle ran code" not in capsys.readouterr().out


def test_a_stop_request_handled_at_once_by_the_main_thread_is_acknowledged_once(caplog):
    # the main thread may stop before the watching thread reads the signal: the request is
    # acknowledged all the same, and only once
    from msseg.commands.main import _stop_on_sigterm

    with caplog.at_level("WARNING"), pytest.raises(SystemExit) as stopped, \
            _stop_on_sigterm("train"):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            time.sleep(0.001)
    assert stopped.value.code == 128 + signal.SIGTERM
    time.sleep(0.2)  # the watching thread has read the signal by now
    acknowledged = [r for r in caplog.records if "stop requested (SIGTERM)" in r.getMessage()]
    assert len(acknowledged) == 1

"""Training under faults: killed at every stage of saving an epoch, out of disk space, and
resumed; the files on disk after each fault, and the resumed run against an uninterrupted one.

Per epoch the run writes last.pt (the commit point), best.pt (when the epoch improved),
history.csv and curves.png, in that order. After a kill at any point: every file under its
final name is whole (its checksum holds), the record is at most one save behind last.pt, a
best.pt that last.pt supersedes is refused by predict, and resuming gives the uninterrupted run's
weights bit for bit, its history and its best.pt, with no partial file left.
"""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from faults import STAGES, partials, run_killed, run_with_file_limit
from msseg.commands.main import main
from msseg.training.checkpoint import CheckpointError, load_checkpoint, load_model
from msseg.training.engine import train
from msseg_helpers import TINY_FLAGS, state_equal, tiny_config, tiny_datasets

EPOCHS = 3
# Each file's writes during a 3-epoch run: history.csv is written (empty) once at the start.
EPOCH_2 = {"last.pt": 2, "best.pt": 2, "history.csv": 3, "curves.png": 2}
FAST = {("last.pt", "written"), ("best.pt", "writing")}  # the rest: marked slow


@pytest.fixture(scope="module")
def data():
    return tiny_datasets()


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """The uninterrupted run, and the order in which it renamed its files into place."""
    out = tmp_path_factory.mktemp("straight")
    renamed = []
    real = os.replace

    def spy(source, destination):
        renamed.append(os.path.basename(destination))
        real(source, destination)

    os.replace = spy
    try:
        result = train(tiny_config(out, epochs=EPOCHS), *data)
    finally:
        os.replace = real
    return result, out, renamed


def _history(path):
    with open(path, newline="") as handle:
        return [(int(r["epoch"]), float(r["val_loss"])) for r in csv.DictReader(handle)]


def test_an_epoch_commits_last_pt_before_best_pt_and_the_record(straight):
    result, _, renamed = straight
    assert [h["val_loss"] for h in result.history] == sorted(
        h["val_loss"] for h in result.history)[::-1]  # every epoch improves: best.pt each time
    epoch = ["last.pt", "best.pt", "history.csv", "curves.png"]
    assert renamed == ["history.csv", *epoch * EPOCHS]


@pytest.mark.parametrize(("target", "stage"), [
    pytest.param(t, s, marks=() if (t, s) in FAST else pytest.mark.slow)
    for t in EPOCH_2 for s in STAGES])
def test_killed_while_saving_an_epoch_nothing_is_lost_or_half_written_and_resume_is_exact(
        tmp_path, data, straight, target, stage):
    result, reference, _ = straight
    config = tiny_config(tmp_path, epochs=EPOCHS)
    run_killed(lambda: train(config, *data), target=target, stage=stage,
               occurrence=EPOCH_2[target])

    # on disk: every final name holds a whole file; the record trails last.pt by <= 1 save
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] in (1, 2)
    assert last["epoch"] == (1 if (target, stage) in {("last.pt", "writing"),
                                                      ("last.pt", "written")} else 2)
    rows = _history(tmp_path / "history.csv")
    recorded = [(h["epoch"], h["val_loss"]) for h in last["history"]]
    assert rows in (recorded, recorded[:-1])
    best = load_checkpoint(tmp_path / "best.pt")
    if best["epoch"] == last["best_epoch"]:
        assert load_model(tmp_path / "best.pt")[1] == load_model(tmp_path / "last.pt")[1]
    else:  # killed between last.pt and best.pt: predict refuses the superseded best.pt
        assert (target, stage) in {("last.pt", "renamed"), ("best.pt", "writing"),
                                   ("best.pt", "written")}
        with pytest.raises(CheckpointError, match=r"holds epoch 1, but .*last\.pt names epoch 2 "
                                                  "as the run's best: a save was interrupted"):
            load_model(tmp_path / "best.pt")
    killed_partial = stage != "renamed"
    assert bool(partials(tmp_path)) == killed_partial

    resumed = train(config, *data, resume=tmp_path / "last.pt")
    assert state_equal(resumed.model.state_dict(), result.model.state_dict())
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == [
        {k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    assert _history(tmp_path / "history.csv") == _history(reference / "history.csv")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == result.best_epoch == EPOCHS
    assert partials(tmp_path) == []


def test_a_full_disk_stops_training_with_one_line_and_keeps_what_was_complete(phantom_dir,
                                                                             tmp_path):
    """Files may not grow past 64 KiB: the cache and config.json fit, the first checkpoint
    does not."""
    def command():
        return main(["train", "--data", str(phantom_dir), "--out", str(tmp_path / "run"),
                     "--cache", str(tmp_path / "cache"), *TINY_FLAGS, "--epochs", "2"])

    outcome = run_with_file_limit(command, limit_bytes=64 * 2**10)
    assert outcome.exitcode == 1
    lines = outcome.err.splitlines()  # a warning says the encoder is random, then the error
    assert all(line.startswith(("warning: ", "error: ")) for line in lines)
    assert lines[-1] == (f"error: {tmp_path / 'run' / 'last.pt'}: cannot write it (File too "
                         "large); the disk (or your quota) is full: free space there or choose "
                         "another folder")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json",
                                                                     "history.csv"]
    assert _history(tmp_path / "run" / "history.csv") == []  # no epoch recorded as saved


@pytest.mark.slow
def test_cv_continues_an_interrupted_round_from_its_last_pt(phantom_dir, tmp_path):
    def cv(out):
        return main(["cv", "-i", str(phantom_dir), "-o", str(out), "--cache",
                     str(tmp_path / "cache"), "--rounds", "1", "--epochs", "3", *TINY_FLAGS])

    assert cv(tmp_path / "straight") == 0
    run_killed(lambda: cv(tmp_path / "cut"), target="history.csv", stage="written",
               occurrence=3)  # during epoch 2's record, after its last.pt
    last = tmp_path / "cut" / "round1" / "train" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 2
    assert not (tmp_path / "cut" / "round1" / "results.json").exists()
    assert cv(tmp_path / "cut") == 0
    straight = load_checkpoint(tmp_path / "straight" / "round1" / "train" / "last.pt")
    resumed = load_checkpoint(last)
    assert resumed["epoch"] == 3 and state_equal(resumed["model"], straight["model"])
    assert _history(tmp_path / "cut" / "round1" / "train" / "history.csv") == _history(
        tmp_path / "straight" / "round1" / "train" / "history.csv")
    assert (tmp_path / "cut" / "round1" / "results.json").read_text() == (
        tmp_path / "straight" / "round1" / "results.json").read_text()
    assert partials(tmp_path / "cut") == []


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_killed_mid_save_resumes_bit_for_bit(phantom_dir, tmp_path):
    """2 gloo ranks under torchrun; rank 0 is killed with SIGKILL after epoch 2's last.pt and
    before its history.csv. torchrun ends the job; resuming it under torchrun gives the weights
    and history of the uninterrupted job exactly."""
    killed_rank0 = tmp_path / "killed_rank0.py"
    killed_rank0.write_text(textwrap.dedent("""
        import os, sys
        import faults
        from msseg.commands.main import main
        if os.environ["RANK"] == "0":
            faults._kill_at("history.csv", "written", 3)
        sys.exit(main(sys.argv[1:]))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    common = ["train", "--data", str(phantom_dir), "--cache", str(tmp_path / "cache"),
              "--exclude", "01016SACH", "07001MOEL", "08002CHJE", "--val", "08037ROGU",
              *TINY_FLAGS, "--epochs", "3"]

    def torchrun(*args):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node=2", *args], env=env, capture_output=True,
                              text=True, timeout=900)

    straight = torchrun("-m", "msseg", *common, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = torchrun(str(killed_rank0), *common, "--out", str(tmp_path / "cut"))
    assert killed.returncode != 0
    last = tmp_path / "cut" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 2 and len(_history(last.with_name("history.csv"))) == 1
    resumed = torchrun("-m", "msseg", *common, "--out", str(tmp_path / "cut"), "--resume",
                       str(last))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = load_checkpoint(tmp_path / "straight" / "last.pt")
    found = load_checkpoint(last)
    assert found["epoch"] == 3 and state_equal(found["model"], expected["model"])
    assert _history(last.with_name("history.csv")) == _history(
        tmp_path / "straight" / "history.csv")
    assert partials(tmp_path / "cut") == []

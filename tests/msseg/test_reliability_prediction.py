"""Prediction under faults: killed at every stage of writing a scan's files, a read-only output
folder; the files on disk after each fault.

A scan's outputs are one group, the mask last (its probability map, lesion map and lesion table
before it), and summary.csv follows each scan's group. Whatever the moment of the kill: every
file under its final name is whole, a mask never sits next to a file of another run's group,
the summary's row of a scan is of the run of its mask, the killed process's partial files go
with the next write, and the next run completes the outputs.
"""

import csv
import io
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from faults import STAGES, partials, run_killed, run_unprivileged
from msseg.commands.main import main
from msseg.training.engine import train
from msseg_helpers import oriented_affine, save, tiny_config, tiny_datasets

OLD = ["--recompose", "paper", "--threshold", "0.999"]  # an earlier run: other maps, empty masks
NEW = ["--threshold", "0.001"]  # the run that is killed: full masks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, two scans, and the outputs of an earlier and of the new run."""
    root = tmp_path_factory.mktemp("predict-faults")
    model = train(tiny_config(root / "run", epochs=1), *tiny_datasets()).last_path
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        flair = rng.uniform(100, 200, (20, 14, 11)).astype(np.float32)
        save(root / "in" / f"{name}.nii.gz", flair, oriented_affine("LPS", shape=flair.shape))
    runs = {}
    for run, flags in (("old", OLD), ("new", NEW)):
        assert main(_predict(model, root, root / run, flags)) == 0
        runs[run] = _outputs(root / run)
    for name in ("a", "b"):
        assert not np.array_equal(runs["old"][f"{name}_prob.nii.gz"],
                                  runs["new"][f"{name}_prob.nii.gz"])
        assert runs["old"][f"{name}_mask.nii.gz"].max() == 0
        assert runs["new"][f"{name}_mask.nii.gz"].min() == 1
    return model, root, runs


def _predict(model, root, out, flags):
    return ["predict", "-m", str(model), "-i", str(root / "in"), "-o", str(out),
            "--probabilities", "--device", "cpu", *flags]


GROUP = ("prob.nii.gz", "lesions.nii.gz", "lesions.csv")  # beside <scan>_mask.nii.gz


def _outputs(folder):
    """Every output file of `folder`, read whole (a half-written NIfTI would fail here); hidden
    files (partials, the lock of a killed run) are not outputs."""
    return {p.name: np.asarray(nib.load(p).dataobj) if p.name.endswith(".nii.gz") else
            p.read_bytes() for p in sorted(Path(folder).iterdir()) if not p.name.startswith(".")}


def _summary_lesions(files):
    """Each scan's lesion count in summary.csv."""
    rows = csv.DictReader(io.StringIO(files["summary.csv"].decode()))
    return {row["patient_id"]: int(row["lesions"]) for row in rows}


def _run_of(files, name, runs):
    """Which run ('old' or 'new') wrote this file, by its content."""
    matches = [run for run, outputs in runs.items() if np.array_equal(files[name], outputs[name])]
    assert matches, f"{name} matches no complete run: half-written or mixed"
    return matches[0]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("target", ["a_prob.nii.gz", "a_mask.nii.gz", "b_mask.nii.gz"])
def test_killed_while_writing_a_scan_no_file_is_half_written_and_no_pair_is_mixed(
        setup, tmp_path, target, stage):
    model, root, runs = setup
    out = tmp_path / "out"
    shutil.copytree(root / "old", out)
    run_killed(lambda: main(_predict(model, root, out, [*NEW, "--overwrite"])), target=target,
               stage=stage)

    files = _outputs(out)
    for scan in ("a", "b"):
        mask, group = f"{scan}_mask.nii.gz", [f"{scan}_{kind}" for kind in GROUP]
        if mask in files:  # complete: the group comes from one run, and so does its summary row
            run = _run_of(files, mask, runs)
            assert all(name in files and _run_of(files, name, runs) == run for name in group)
            assert _summary_lesions(files)[scan] == _summary_lesions(runs[run])[scan]
        for name in group:
            if name in files:  # a leftover of the interrupted group is whole
                _run_of(files, name, runs)
    if target.startswith("b"):
        assert _run_of(files, "a_mask.nii.gz", runs) == "new"  # finished before the kill
    # the group's temporaries stay until the mask, the last file, is in place
    assert bool(partials(out)) == (stage != "renamed" or target == "a_prob.nii.gz")

    assert main(_predict(model, root, out, [*NEW, "--overwrite"])) == 0
    assert partials(out) == []
    completed = _outputs(out)
    assert completed.keys() == runs["new"].keys()
    assert all(np.array_equal(completed[name], runs["new"][name]) for name in completed)


def test_a_kill_before_any_mask_leaves_nothing_that_needs_overwrite(setup, tmp_path):
    """A fresh run killed after a's probability map: the lone map is a leftover, so the next run
    needs no --overwrite."""
    model, root, runs = setup
    out = tmp_path / "out"
    run_killed(lambda: main(_predict(model, root, out, NEW)), target="a_prob.nii.gz",
               stage="renamed")
    assert sorted(_outputs(out)) == ["a_prob.nii.gz"]
    assert len(partials(out)) == 4  # the lesion map and table, summary.csv, the mask
    assert main(_predict(model, root, out, NEW)) == 0
    assert partials(out) == []
    assert sorted(_outputs(out)) == sorted(runs["new"])


@pytest.fixture
def shared():
    """A folder the unprivileged child can read (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder).chmod(0o755)
        yield Path(folder)


def test_a_read_only_output_folder_is_refused_before_inference(setup, shared):
    model, root, _ = setup
    shutil.copytree(root / "in", shared / "in")
    shutil.copy(model, shared / "model.pt")
    (shared / "out").mkdir()
    (shared / "out").chmod(0o555)

    def command():
        import msseg.inference.predict

        msseg.inference.predict.predict_scan = lambda *a, **k: exit(42)  # inference: exit 42
        return main(_predict(shared / "model.pt", shared, shared / "out", NEW))

    outcome = run_unprivileged(command)
    assert outcome.exitcode == 1
    assert outcome.err == (f"error: {shared / 'out'}: cannot write it (Permission denied); the "
                           "folder is not writable: fix its permissions or choose another "
                           "folder\n")
    assert list((shared / "out").iterdir()) == []

"""Where outputs go: never over data that is already there, never outside the output folder, never
two writers into one folder, and never read back as inputs.

- `phantom` into a folder holding scans of the same patients refuses (``--overwrite`` replaces);
- a patient id is a file name, never a path: ``../escape``, ``/abs``, ``a/b``, NUL or control
  characters, a hidden or an over-long name are refused where the id is read, before anything
  is written (predict, train and its cache, cv, evaluate), and every output path derived from
  one is checked to lie in its folder;
- two runs writing into one output folder: the second is refused while the first runs, naming
  its process; a killed run leaves nothing that blocks the next one;
- predicting a folder into itself never takes its own outputs (or the temporary files of a
  killed run) for scans, and a prediction given as a FLAIR is refused.
"""

import multiprocessing
import os
import time
from pathlib import Path

import nibabel as nib
import pytest
from faults import run_killed
from msseg.commands.main import main
from msseg.data.cache import fill_cache
from msseg.io.discovery import ScanRecord, prediction_path
from msseg.io.paths import output_path
from msseg.training.engine import train
from msseg_helpers import TINY_FLAGS, blob_scan, oriented_affine, save, tiny_config, tiny_datasets


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A checkpoint of the tiny config."""
    return train(tiny_config(tmp_path_factory.mktemp("outputs") / "run", epochs=1),
                 *tiny_datasets()).last_path


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0][len("error: "):]


def _scan(path: Path, seed: int = 0) -> Path:
    flair, _ = blob_scan(seed=seed)
    return save(path, flair, oriented_affine("LPS", shape=flair.shape))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --- data lost: phantom over real scans ---------------------------------------------------------

def test_phantom_into_a_folder_holding_those_patients_refuses_unless_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    flair, mask = blob_scan()
    affine = oriented_affine("RAS", shape=flair.shape)
    save(data / "01016SACH" / "3DFLAIR.nii.gz", flair, affine)
    save(data / "01016SACH" / "Consensus.nii.gz", mask, affine)
    (data / "notes.txt").write_text("mine")
    before = _files(data)

    assert main(["phantom", "-o", str(data), "--scale", "0.1"]) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{data}: holds scans of the phantom's patients already "
                              f"(01016SACH)")
    assert "--overwrite to replace them" in message
    assert _files(data) == before  # refused before any scan was written

    assert main(["phantom", "-o", str(data), "--scale", "0.1", "--overwrite"]) == 0
    after = _files(data)
    assert after["notes.txt"] == b"mine" and len([k for k in after if k.endswith(
        "3DFLAIR.nii.gz")]) == 15
    assert after["01016SACH/3DFLAIR.nii.gz"] != before["01016SACH/3DFLAIR.nii.gz"]
    assert main(["phantom", "-o", str(data), "--scale", "0.1"]) == 0  # the same phantom again
    assert _files(data) == after
    assert main(["phantom", "-o", str(data), "--scale", "0.2"]) == 1  # another one
    assert "holds scans of the phantom's patients already (01016SACH, 01038PAGU, 01039VITE " \
           "and 12 more)" in _one_error(capsys)


def test_phantom_into_a_folder_of_other_data_writes_beside_it(tmp_path):
    data = tmp_path / "data"
    _scan(data / "99999XXXX" / "3DFLAIR.nii.gz")
    before = _files(data)
    assert main(["phantom", "-o", str(data), "--scale", "0.1"]) == 0
    after = _files(data)
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 31


# --- security: ids are names, never paths ----------------------------------------------------

BAD_IDS = {
    "parent": ("../escape", "'..'"),
    "absolute": ("/tmp/abs", "a path"),
    "nested": ("a/b", "a path"),
    "backslash": ("a\\b", "a path"),
    "dotdot": ("..", "'..'"),
    "hidden": (".hidden", "starts with '.'"),
    "control": ("a\tb", "control character"),
    "long": ("x" * 201, "201 characters"),
}


@pytest.mark.parametrize("patient_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_an_id_that_is_not_a_file_name_is_refused_before_anything_is_written(
        model, tmp_path, capsys, patient_id):
    bad, problem = patient_id
    _scan(tmp_path / "in" / "flair.nii.gz")
    mask, affine = blob_scan()[1], oriented_affine("LPS", shape=blob_scan()[1].shape)
    save(tmp_path / "in" / "mask.nii.gz", mask, affine)
    _scan(tmp_path / "in" / "other.nii.gz", seed=1)
    save(tmp_path / "in" / "other_mask.nii.gz", blob_scan(seed=1)[1], affine)
    table = tmp_path / "in" / "scans.csv"
    quoted = '"' + bad.replace('"', '""') + '"'
    table.write_text(f"patient_id,flair,mask,centre\n{quoted},flair.nii.gz,mask.nii.gz,01\n"
                     "OTHER,other.nii.gz,other_mask.nii.gz,01\n")
    out = tmp_path / "po" / "esc" / "inner"
    commands = {
        "predict": ["predict", "-m", str(model), "-i", str(table), "-o", str(out)],
        "train": ["train", "-i", str(table), "-o", str(out), *TINY_FLAGS, "--epochs", "1"],
        "cv": ["cv", "-i", str(table), "-o", str(out), *TINY_FLAGS, "--epochs", "1"],
        "evaluate": ["evaluate", "-p", str(tmp_path / "in"), "-t", str(table), "-o", str(out)],
        "preprocess": ["preprocess", "-i", str(table), "-c", str(out), "--config", "demo"],
    }
    for name, command in commands.items():
        assert main(command) == 1, name
        message = _one_error(capsys)
        assert message.startswith(f"{table}, line 2: patient_id {bad!r} "), (name, message)
        assert problem in message and "rename" in message, (name, message)
        assert not (tmp_path / "po").exists() and not (tmp_path / "escape_mask.nii.gz").exists()


def test_a_nul_in_a_scan_list_is_one_line(model, tmp_path, capsys):
    _scan(tmp_path / "flair.nii.gz")
    (tmp_path / "scans.csv").write_bytes(b"patient_id,flair\na\0b,flair.nii.gz\n")
    assert main(["predict", "-m", str(model), "-i", str(tmp_path / "scans.csv"), "-o",
                 str(tmp_path / "out")]) == 1
    message = _one_error(capsys)
    assert message.startswith(f"{tmp_path / 'scans.csv'}") and "NUL" in message
    assert not (tmp_path / "out").exists()


def test_every_path_made_from_an_id_stays_in_its_folder(tmp_path):
    """Records built in code (not read from a layout) are checked too, and so is every output
    path the library derives from one: prediction files, cache entries."""
    flair = _scan(tmp_path / "flair.nii.gz")
    with pytest.raises(ValueError, match=r"patient_id '\.\./x' .*'\.\.'"):
        ScanRecord("../x", None, flair, None)
    with pytest.raises(ValueError, match="a path"):
        prediction_path(tmp_path / "out", "a/b")
    assert output_path(tmp_path / "out", "a_mask.nii.gz") == tmp_path / "out" / "a_mask.nii.gz"
    for name in ("../a", "/etc/passwd", "a/../../b", "", "."):
        with pytest.raises(ValueError, match=r"outside|not a file name"):
            output_path(tmp_path / "out", name)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)  # a link out of the folder
    with pytest.raises(ValueError, match="outside"):
        output_path(tmp_path / "out", "link")
    entries = fill_cache([ScanRecord("scan", None, flair, None)],
                         tiny_config(tmp_path).pipeline, tmp_path / "cache", progress=False)
    assert entries[0].path.parent == tmp_path / "cache"


# --- two writers, one folder -------------------------------------------------------------------

def _blocked_predict(model, source, out, started, go):
    """A predict that stops before its first scan until `go` exists."""
    import msseg.inference.predict

    real = msseg.inference.predict.predict_scan

    def waiting(*args, **kwargs):
        started.touch()
        while not go.exists():
            time.sleep(0.05)
        return real(*args, **kwargs)

    msseg.inference.predict.predict_scan = waiting
    os._exit(main(["predict", "-m", str(model), "-i", str(source), "-o", str(out), "-q"]))


def test_a_second_writer_into_an_output_folder_is_refused_while_the_first_runs(
        model, tmp_path, capsys):
    source = _scan(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"
    started, go = tmp_path / "started", tmp_path / "go"
    first = multiprocessing.get_context("fork").Process(
        target=_blocked_predict, args=(model, source, out, started, go))
    first.start()
    try:
        for _ in range(1200):  # the first run reaches its first scan (at most a minute)
            if started.exists() or not first.is_alive():
                break
            time.sleep(0.05)
        assert started.exists()
        assert main(["predict", "-m", str(model), "-i", str(source), "-o", str(out),
                     "--overwrite"]) == 1
        message = _one_error(capsys)
        assert message.startswith(f"{out}: another msseg process (pid {first.pid}") and \
            "is writing into it" in message
    finally:
        go.touch()
        first.join(60)
    assert first.exitcode == 0
    assert sorted(p.name for p in out.iterdir()) == _outputs("a")  # lock gone, outputs there
    assert main(["predict", "-m", str(model), "-i", str(source), "-o", str(out),
                 "--overwrite"]) == 0


def test_a_killed_writer_does_not_block_the_next_run(model, tmp_path):
    source = _scan(tmp_path / "in" / "a.nii.gz")
    out = tmp_path / "out"
    run_killed(lambda: main(["predict", "-m", str(model), "-i", str(source), "-o", str(out)]),
               target="a_mask.nii.gz", stage="written")
    assert main(["predict", "-m", str(model), "-i", str(source), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == _outputs("a")


def _outputs(*scans):
    """What `predict` writes for these scans (without --probabilities), sorted."""
    return sorted(["report.html", "summary.csv", *(f"{scan}_{suffix}" for scan in scans for
                                                   suffix in ("lesions.csv", "lesions.nii.gz",
                                                              "mask.nii.gz"))])


# --- outputs are never inputs -----------------------------------------------------------------

def test_predicting_a_folder_into_itself_never_reads_its_outputs(model, tmp_path, capsys):
    folder = tmp_path / "scans"
    for seed, name in enumerate(("a", "b")):
        _scan(folder / f"{name}.nii.gz", seed=seed)
    args = ["predict", "-m", str(model), "-i", str(folder), "-o", str(folder), "--probabilities"]
    assert main(args) == 0
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(["a.nii.gz", "b.nii.gz", "a_prob.nii.gz", "b_prob.nii.gz",
                              *_outputs("a", "b")])
    (folder / f".a_mask.{2**22 + 7}.partial.nii.gz").write_bytes(b"a killed run's temporary")
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "2 scan(s), model" in captured.out
    assert "_mask" not in captured.err and "_prob" not in captured.err  # no output as a scan
    assert "_lesions" not in captured.err
    assert sorted(p.name for p in folder.iterdir() if ".partial" not in p.name) == written


@pytest.mark.parametrize("kind", ["mask", "prob", "lesions"])
def test_a_prediction_given_as_a_flair_is_refused(model, tmp_path, capsys, kind):
    source = _scan(tmp_path / "in" / "a.nii.gz")
    assert main(["predict", "-m", str(model), "-i", str(source), "-o", str(tmp_path / "p"),
                 "--probabilities"]) == 0
    output = prediction_path(tmp_path / "p", "a", kind)
    renamed = tmp_path / "elsewhere" / "scan.nii.gz"
    renamed.parent.mkdir()
    renamed.write_bytes(output.read_bytes())  # a prediction, under a scan's name
    capsys.readouterr()
    assert main(["predict", "-m", str(model), "-i", str(renamed), "-o",
                 str(tmp_path / "q")]) == 1
    message = _one_error(capsys)
    what = {"mask": "mask", "prob": "probability map", "lesions": "lesion map"}[kind]
    assert message.startswith(f"{renamed}: FLAIR is a {what} written by msseg predict")
    assert not (tmp_path / "q").exists()
    assert nib.load(output).header["descrip"].item().startswith(b"msseg ")



def test_evaluate_refuses_predictions_still_being_written(model, tmp_path, capsys):
    """A predict writing into the folder holds its lock: its masks are not all there yet."""
    from msseg.io.lock import folder_lock

    flair, mask = blob_scan()
    affine = oriented_affine("LPS", shape=flair.shape)
    save(tmp_path / "data" / "01016SACH" / "3DFLAIR.nii.gz", flair, affine)
    save(tmp_path / "data" / "01016SACH" / "Consensus.nii.gz", mask, affine)
    save(tmp_path / "pred" / "01016SACH_mask.nii.gz", mask, affine)
    args = ["evaluate", "-p", str(tmp_path / "pred"), "-t", str(tmp_path / "data")]
    with folder_lock(tmp_path / "pred", command="msseg predict"):
        assert main(args) == 1
        message = _one_error(capsys)
        assert message.startswith(f"{tmp_path / 'pred'}: another msseg process (pid "
                                  f"{os.getpid()}, `msseg predict`) is writing into it, so it "
                                  "is not complete yet")
    assert not (tmp_path / "pred" / "per_scan.csv").exists()
    assert main(args) == 0 and (tmp_path / "pred" / "per_scan.csv").is_file()


def test_outputs_inside_a_folder_of_patient_folders_are_refused_before_any_work(
        model, phantom_dir, tmp_path, capsys):
    """Every sub-folder of an MSSEG folder is read as a patient: a run, a cache or predictions
    written there would break the next reading of the data."""
    data = tmp_path / "data"
    for patient in ("01016SACH", "07001MOEL", "08002CHJE"):
        for name in ("3DFLAIR.nii.gz", "Consensus.nii.gz"):
            target = data / patient / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((phantom_dir / patient / name).read_bytes())
    for args, where in (
            (["train", "-i", str(data), "-o", str(data / "run"), *TINY_FLAGS], data / "run"),
            (["train", "-i", str(data), "-o", str(tmp_path / "run"), "--cache",
              str(data / "cache"), *TINY_FLAGS], data / "cache"),
            (["cv", "-i", str(data), "-o", str(data / "cv"), *TINY_FLAGS], data / "cv"),
            (["preprocess", "-i", str(data), "-c", str(data / "cache"), "--config", "demo"],
             data / "cache"),
            (["predict", "-m", str(model), "-i", str(data), "-o", str(data / "pred")],
             data / "pred")):
        assert main(args) == 1, args
        message = _one_error(capsys)
        assert message.startswith(f"{where}: lies inside the data folder {data}, whose "
                                  "sub-folders are read as patients"), message
    assert sorted(p.name for p in data.iterdir()) == ["01016SACH", "07001MOEL", "08002CHJE"]
    assert not (tmp_path / "run").exists()
    # a patient folder or a folder of NIfTI files takes its outputs beside the scans
    assert main(["predict", "-m", str(model), "-i", str(data / "01016SACH"), "-o",
                 str(data / "01016SACH")]) == 0

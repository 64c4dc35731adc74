"""``predict``: masks on the input's own grid that overlay it, named by patient, both
recompositions, no overwriting by accident, and bad input that writes nothing."""

import errno
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from msseg.commands.main import main
from msseg.evaluation.lesion_table import read_lesion_table, read_summary
from msseg.evaluation.metrics import dice
from msseg.inference.predict import predict_scan
from msseg.inference.predictor import load_predictor
from msseg.io.discovery import find_inputs
from msseg.io.nifti import load_scan
from msseg.training.engine import train
from msseg_helpers import oriented_affine, save, tiny_config, tiny_datasets


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """best.pt of the tiny config (16³ cubes, 8-slice slabs) after 2 epochs."""
    out = tmp_path_factory.mktemp("tiny-run")
    return train(tiny_config(out, epochs=2), *tiny_datasets()).best_path


def blob_flair(shape=(20, 14, 11), centre=(12, 5, 7), radius=3.0):
    """A noisy FLAIR with one bright ball, and the ball's mask (storage order)."""
    grid = np.indices(shape)
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
    flair = np.random.default_rng(0).uniform(100, 200, shape).astype(np.float32)
    flair[ball] = 1000
    return flair, ball


def test_mask_has_the_input_grid_and_overlays_the_lesion(checkpoint, tmp_path, monkeypatch,
                                                         capsys):
    """With the network replaced by "probability = bright voxel", the written mask must find the
    ball where it is in the file: the cube round trip (LPS storage, oblique-free anisotropic
    grid) and the inverse put every voxel back in place."""
    flair, ball = blob_flair()
    affine = oriented_affine("PSL", voxel_mm=(0.9, 1.3, 2.0), shape=flair.shape)
    path = save(tmp_path / "in" / "scan7.nii.gz", flair, affine)

    def bright(model, **kwargs):
        return lambda slabs: (slabs > 0.5).float()

    monkeypatch.setattr("msseg.inference.predictor.model_predictor", bright)
    assert main(["predict", "-m", str(checkpoint), "-i", str(path), "-o",
                 str(tmp_path / "out"), "--probabilities", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "scan7:" in out and "s per scan on average" in out
    mask = nib.load(tmp_path / "out" / "scan7_mask.nii.gz")
    source = nib.load(path)
    assert mask.shape == flair.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, source.affine)
    np.testing.assert_allclose(mask.header.get_qform(), source.header.get_qform())
    np.testing.assert_allclose(mask.header.get_sform(), source.header.get_sform())
    assert int(mask.header["qform_code"]) == int(source.header["qform_code"]) == 1
    data = np.asarray(mask.dataobj)
    assert set(np.unique(data)) <= {0, 1}
    assert dice(data > 0, ball) > 0.8
    probability = nib.load(tmp_path / "out" / "scan7_prob.nii.gz")
    assert probability.get_data_dtype() == np.float32
    np.testing.assert_allclose(probability.affine, source.affine)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.html", "scan7_lesions.csv", "scan7_lesions.nii.gz", "scan7_mask.nii.gz",
        "scan7_prob.nii.gz", "summary.csv"]
    # the lesion map and table: the ball is lesion 1, measured on the scan's own grid
    labels = np.asarray(nib.load(tmp_path / "out" / "scan7_lesions.nii.gz").dataobj)
    assert np.array_equal(labels > 0, data > 0) and labels.max() == 1
    (lesion,) = read_lesion_table((tmp_path / "out" / "scan7_lesions.csv").read_text())
    assert lesion.voxels == int(data.sum())
    assert lesion.volume_ml == pytest.approx(lesion.voxels * 0.9 * 1.3 * 2.0 / 1000, abs=1e-4)
    centre = affine @ np.array([12, 5, 7, 1.0])  # the ball's centre in scanner mm
    assert (lesion.x_mm, lesion.y_mm, lesion.z_mm) == pytest.approx(tuple(centre[:3]), abs=1.5)
    assert lesion.max_probability == 1.0  # the stand-in network's probabilities are 0 or 1
    (row,) = read_summary((tmp_path / "out" / "summary.csv").read_text())
    assert (row.patient_id, row.flair, row.lesions, row.shape, row.model) == (
        "scan7", str(path), 1, flair.shape, str(checkpoint))
    assert row.total_volume_ml == pytest.approx(lesion.volume_ml, abs=1e-4)
    assert row.recipe.startswith("recipe paper") and row.connectivity == 6
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="scan-scan7"' in report and report.count("<img") == 4  # 3 planes and a zoom
    assert f"report: {tmp_path / 'out' / 'report.html'}" in out


def test_folder_prediction_equals_the_library_path_for_both_recompositions(checkpoint, tmp_path,
                                                                           capsys):
    predictor, config, _ = load_predictor(checkpoint, device="cpu")
    for name, codes in (("a", "RAS"), ("b", "LPI")):
        flair, _ = blob_flair(centre=(8, 6, 5) if name == "a" else (10, 8, 4))
        save(tmp_path / "in" / f"{name}.nii.gz", flair,
             oriented_affine(codes, shape=flair.shape))
    maps = {}
    for method in ("paper", "average"):
        out = tmp_path / method
        assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "in"),
                     "--out", str(out), "--recompose", method, "--probabilities",
                     "--batch-size", "3", "--device", "cpu"]) == 0
        assert f"recompose={method}" in capsys.readouterr().out
        for record in find_inputs(tmp_path / "in"):
            expected = predict_scan(load_scan(record), predictor, config=config, recompose=method)
            written = np.asarray(nib.load(out / f"{record.patient_id}_prob.nii.gz").dataobj)
            np.testing.assert_allclose(written, expected.probability, atol=1e-6)
            mask = np.asarray(nib.load(out / f"{record.patient_id}_mask.nii.gz").dataobj)
            np.testing.assert_array_equal(mask, expected.mask)
            np.testing.assert_array_equal(mask, expected.probability >= config.threshold)
            maps[(method, record.patient_id)] = written
    assert not np.array_equal(maps[("paper", "a")], maps[("average", "a")])


def test_bad_input_is_named_and_nothing_is_written(checkpoint, tmp_path, capsys):
    flair, _ = blob_flair()
    save(tmp_path / "in" / "good.nii.gz", flair, np.eye(4))
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not a nifti file")
    assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.nii.gz: cannot read FLAIR as NIfTI" in err
    assert not (tmp_path / "out").exists()
    save(tmp_path / "four_d.nii.gz", np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
    assert main(["predict", "--model", str(checkpoint), "--input",
                 str(tmp_path / "four_d.nii.gz"), "--out", str(tmp_path / "out")]) == 1
    assert "expected one 3-D volume" in capsys.readouterr().err
    assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "nope.nii"),
                 "--out", str(tmp_path / "out")]) == 1
    assert "nope.nii: input not found" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "missing.pt"), "--input",
                 str(tmp_path / "in" / "good.nii.gz"), "--out", str(tmp_path / "out")]) == 1
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_msseg_folder_is_predicted_without_reading_its_masks(checkpoint, tmp_path, capsys):
    flair, _ = blob_flair()
    affine = oriented_affine("LAS", shape=flair.shape)
    save(tmp_path / "data" / "01016SACH" / "3DFLAIR.nii.gz", flair, affine)
    save(tmp_path / "data" / "01016SACH" / "Consensus.nii.gz", np.zeros(flair.shape), affine)
    assert [r.mask for r in find_inputs(tmp_path / "data")] == [None]
    assert main(["predict", "--model", str(checkpoint), "--input", str(tmp_path / "data"),
                 "--out", str(tmp_path / "out")]) == 0  # an empty mask would fail load_scan
    assert "01016SACH:" in capsys.readouterr().out
    written = nib.load(tmp_path / "out" / "01016SACH_mask.nii.gz")
    assert written.shape == flair.shape and np.allclose(written.affine, affine)


def test_msseg_inputs_are_named_by_patient(checkpoint, tmp_path):
    """One MSSEG FLAIR file or one patient folder gives <PATIENT>_mask.nii.gz, not
    3DFLAIR_mask.nii.gz, and the patient's Consensus.nii.gz is never taken for a scan."""
    flair, _ = blob_flair()
    for patient in ("01016SACH", "07001MOEL"):
        save(tmp_path / "data" / patient / "3DFLAIR.nii.gz", flair, np.eye(4))
        save(tmp_path / "data" / patient / "Consensus.nii.gz", np.zeros(flair.shape), np.eye(4))
    one_file = tmp_path / "data" / "01016SACH" / "3DFLAIR.nii.gz"
    assert [r.patient_id for r in find_inputs(one_file)] == ["01016SACH"]
    assert [(r.patient_id, r.flair.name) for r in find_inputs(tmp_path / "data" / "07001MOEL")
            ] == [("07001MOEL", "3DFLAIR.nii.gz")]
    for source in (one_file, tmp_path / "data" / "07001MOEL"):
        assert main(["predict", "-m", str(checkpoint), "-i", str(source), "-o",
                     str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.nii.gz")) == [
        "01016SACH_mask.nii.gz", "07001MOEL_mask.nii.gz"]
    # the summary and the report cover the folder: both runs' scans
    summary = read_summary((tmp_path / "out" / "summary.csv").read_text())
    assert [(r.patient_id, r.flair) for r in summary] == [
        ("01016SACH", str(one_file)), ("07001MOEL", str(tmp_path / "data" / "07001MOEL" /
                                                      "3DFLAIR.nii.gz"))]
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="scan-01016SACH"' in report and 'id="scan-07001MOEL"' in report


def test_existing_outputs_are_kept_unless_overwrite_and_no_stale_probability_map(
        checkpoint, tmp_path, capsys):
    flair, _ = blob_flair()
    path = save(tmp_path / "in" / "scan.nii.gz", flair, np.eye(4))
    out = tmp_path / "out"
    args = ["predict", "-m", str(checkpoint), "-i", str(path), "-o", str(out)]
    assert main([*args, "--probabilities"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["report.html", "scan_lesions.csv", "scan_lesions.nii.gz",
                              "scan_mask.nii.gz", "scan_prob.nii.gz", "summary.csv"]
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "4 output file(s) exist already" in err and "pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    assert main([*args, "--overwrite"]) == 0
    assert "scan_prob.nii.gz" not in [p.name for p in out.iterdir()]  # no stale _prob


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_two_inputs_with_one_id_are_refused_before_anything(checkpoint, tmp_path, capsys):
    flair, _ = blob_flair()
    first = save(tmp_path / "in" / "x.nii", flair, np.eye(4))
    second = save(tmp_path / "in" / "x.nii.gz", flair + 1, np.eye(4))
    assert main(["predict", "-m", str(checkpoint), "-i", str(tmp_path / "in"), "-o",
                 str(tmp_path / "out")]) == 1
    err = _one_line_error(capsys)
    assert f"{first} and {second} would both be written as x_mask.nii.gz" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "scans.csv").write_text("patient_id,flair\nx,in/x.nii\nx,in/x.nii.gz\n")
    assert main(["predict", "-m", str(checkpoint), "-i", str(tmp_path / "scans.csv"), "-o",
                 str(tmp_path / "out")]) == 1
    assert "scans.csv, line 3: patient_id 'x' appears twice" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_folder_without_room_is_refused_before_inference(checkpoint, tmp_path, capsys,
                                                           monkeypatch):
    flair, _ = blob_flair()
    path = save(tmp_path / "in" / "scan.nii.gz", flair, np.eye(4))
    usage = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr("msseg.io.atomic.shutil.disk_usage", lambda folder: usage)
    monkeypatch.setattr("msseg.inference.predict.predict_scan", pytest.fail)  # no inference
    assert main(["predict", "-m", str(checkpoint), "-i", str(path), "-o", str(tmp_path / "out"),
                 "--probabilities"]) == 1
    voxels = flair.size
    assert _one_line_error(capsys) == (
        f"error: {tmp_path / 'out'}: {1000 / 2**20:.1f} MiB free on its disk, the outputs need "
        f"about {5 * voxels / 2**20:.1f} MiB; free space there or choose another output folder\n")
    assert not (tmp_path / "out").exists()


def test_a_mask_that_cannot_be_written_leaves_the_earlier_pair_and_no_probability_map(
        checkpoint, tmp_path, capsys, monkeypatch):
    flair, _ = blob_flair()
    path = save(tmp_path / "in" / "scan.nii.gz", flair, np.eye(4))
    out = tmp_path / "out"
    args = ["predict", "-m", str(checkpoint), "-i", str(path), "-o", str(out), "--probabilities"]
    assert main([*args, "--threshold", "0.9"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_save = nib.save

    def full_disk(image, filename):
        if "scan_mask" in str(filename):  # the probability map was written, the mask fails
            Path(filename).write_bytes(b"half a mask")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        real_save(image, filename)

    monkeypatch.setattr("msseg.inference.outputs.nib.save", full_disk)
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 1
    assert _one_line_error(capsys) == (
        f"error: {out / 'scan_mask.nii.gz'}: cannot write it (No space left on device); the disk "
        f"(or your quota) is full: free space there or choose another folder\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier pair, whole
    monkeypatch.setattr("msseg.inference.outputs.nib.save", real_save)
    (tmp_path / "fresh").mkdir()
    monkeypatch.setattr("msseg.inference.outputs.nib.save", full_disk)
    assert main([*args[:-3], "-o", str(tmp_path / "fresh"), "--probabilities"]) == 1
    assert list((tmp_path / "fresh").iterdir()) == []  # no _prob without its _mask


def test_degenerate_intensities_are_warned_about_in_one_line(checkpoint, tmp_path, capsys):
    flair, _ = blob_flair()
    flair[0, 0, 0] = 1e38
    path = save(tmp_path / "in" / "hot.nii.gz", flair, np.eye(4))
    assert main(["predict", "-m", str(checkpoint), "-i", str(path), "-o",
                 str(tmp_path / "out")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {path}: after scaling, 98%")
    assert warnings[0].endswith("the predicted mask cannot be trusted")


def test_an_oblique_scan_is_warned_about_by_predict_not_by_ceiling_or_baseline(
        checkpoint, tmp_path, capsys):
    """26 degrees off the scanner axes: predict (whose slabs tilt) says so, in its recipe's
    words and with the threshold; the ceiling and the baseline, which cut no slabs, do not."""
    flair, ball = blob_flair()
    angle = np.radians(26)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    for patient in ("01016SACH", "07001MOEL"):
        save(tmp_path / "data" / patient / "3DFLAIR.nii.gz", flair, affine)
        save(tmp_path / "data" / patient / "Consensus.nii.gz", ball.astype(np.uint8), affine)
    data = str(tmp_path / "data")
    assert main(["ceiling", "-i", data, "--config", "paper", "--set", "volume_size=16"]) == 0
    assert main(["baseline", "-i", data]) == 0
    assert "degrees off the scanner axes" not in capsys.readouterr().err
    assert main(["predict", "-m", str(checkpoint), "-i", data, "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("degrees off the scanner axes (msseg warns above 20); recipe paper cuts "
                     "its sagittal slabs along the closest axis without reslicing") == 2
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert summary.count("26 degrees off the scanner axes") == 2  # kept with each scan's row

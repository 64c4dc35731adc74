"""``cv``: the paper's protocol, its outputs on a tiny phantom, continuing after an interruption;
the overlay figure."""

import csv
import json
import shutil

import numpy as np
import pytest
from cli_helpers import TINY_FLAGS
from msseg.commands.main import main
from msseg.evaluation.cross_validation import cv_rounds
from msseg.evaluation.overlay import save_overlay
from msseg.io.discovery import MSSEG_PATIENTS, ScanRecord
from msseg.io.orientation import Geometry
from train_helpers import single_thread

pytestmark = pytest.mark.filterwarnings("ignore::msseg.model.encoder.RandomEncoderWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _records(ids):
    return [ScanRecord(i, i[:2], f"{i}/3DFLAIR.nii.gz", f"{i}/Consensus.nii.gz") for i in ids]


def test_rounds_follow_the_papers_protocol():
    rounds = cv_rounds(_records(reversed(MSSEG_PATIENTS)))
    ids = [[r.patient_id for r in cv.test] for cv in rounds]
    assert ids == [["01016SACH", "07001MOEL", "08002CHJE"],
                   ["01038PAGU", "07003SATH", "08027SYBR"],
                   ["01039VITE", "07010NABO", "08029IVDI"],
                   ["01040VANE", "07040DORE", "08031SEVE"],
                   ["01042GULE", "07043SEME", "08037ROGU"]]
    assert [cv.val.patient_id for cv in rounds] == ["08037ROGU"] * 4 + ["08031SEVE"]
    for cv in rounds:
        assert len(cv.train) == 11 and [r.patient_id for r in cv.train] == sorted(
            r.patient_id for r in cv.train)
        used = {r.patient_id for r in (*cv.test, *cv.train, cv.val)}
        assert used == set(MSSEG_PATIENTS)  # 3 + 11 + 1, no scan twice
    assert sorted(i for test in ids for i in test) == sorted(MSSEG_PATIENTS)


def test_rounds_with_unequal_centres_and_refusals():
    rounds = cv_rounds(_records(["01A", "01B", "01C", "07A", "07B"]))
    assert [[r.patient_id for r in cv.test] for cv in rounds] == [["01A", "07A"],
                                                                   ["01B", "07B"], ["01C"]]
    assert [cv.val.patient_id for cv in rounds] == ["07B", "07A", "07B"]
    with pytest.raises(ValueError, match=r"needs a centre and a mask for every scan.*'x'"):
        cv_rounds([ScanRecord("x", None, "x.nii", "m.nii")])
    with pytest.raises(ValueError, match="round 1 leaves 1 scan"):
        cv_rounds(_records(["01A", "07A", "07B"]))


def _cv(phantom_dir, tmp_path, *extra):
    return ["cv", "--data", str(phantom_dir), "--out", str(tmp_path / "cv"), "--cache",
            str(tmp_path / "cache"), "--epochs", "1", *extra, *TINY_FLAGS]


def test_cv_round_writes_its_outputs_and_is_not_run_twice(phantom_dir, tmp_path, capsys):
    assert main(_cv(phantom_dir, tmp_path, "--rounds", "1")) == 0
    out = capsys.readouterr().out
    assert "round 1: test ['01016SACH', '07001MOEL', '08002CHJE'], validation 08037ROGU, 11 " \
           "training scans" in out and out.count(" done in ") == 1
    rows = _rows(tmp_path / "cv" / "per_scan.csv")
    assert [r["patient_id"] for r in rows] == ["01016SACH", "07001MOEL", "08002CHJE"]
    table = (tmp_path / "cv" / "table.md").read_text().splitlines()
    assert table[0] == "| Metric | 01 | 07 | 08 | Overall |"
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Dice", "| Sensitivity", "| Lesion TPR", "| Lesion FPR", "| Lesion F1"]
    dice = [float(r["dice"]) for r in rows]
    assert table[2].split(" | ")[1:] == [f"{d:.3f} ± 0.000" for d in dice] + [
        f"{np.mean(dice):.3f} ± {np.std(dice):.3f} |"]
    recompose = (tmp_path / "cv" / "recompose.md").read_text()
    assert f"| average of overlaps | {np.mean(dice):.3f} ± " in recompose
    assert "| middle-8 (paper, Eq. 1) |" in recompose
    assert sorted(p.name for p in (tmp_path / "cv" / "overlays").iterdir()) == [
        "01016SACH.png", "07001MOEL.png", "08002CHJE.png"]
    round_dir = tmp_path / "cv" / "round1"
    assert (round_dir / "train" / "best.pt").is_file()
    assert len(list((round_dir / "pred").glob("*_mask.nii.gz"))) == 3
    saved = json.loads((round_dir / "results.json").read_text())
    assert set(saved["results"]) == {"average", "paper"} and saved["epochs"] == 1

    assert main(_cv(phantom_dir, tmp_path, "--rounds", "1")) == 0
    out = capsys.readouterr().out
    assert "round 1: finished earlier" in out and " done in " not in out
    assert (tmp_path / "cv" / "table.md").read_text().splitlines() == table
    assert main(_cv(phantom_dir, tmp_path, "--rounds", "1", "--patience", "3")) == 1
    assert "round1/results.json comes from a run with another config" in capsys.readouterr().err
    assert main(_cv(phantom_dir, tmp_path, "--rounds", "6")) == 1
    assert "this data has rounds 1..5" in capsys.readouterr().err


@pytest.mark.slow
def test_cv_tests_every_scan_once_and_continues_after_an_interruption(phantom_dir, tmp_path,
                                                                        capsys):
    assert main(_cv(phantom_dir, tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.count(" done in ") == 5 and "validation 08031SEVE" in out
    rows = _rows(tmp_path / "cv" / "per_scan.csv")
    assert [r["patient_id"] for r in rows] == [
        p for k in range(5) for p in sorted(MSSEG_PATIENTS)[k::5]]
    table = (tmp_path / "cv" / "table.md").read_text()
    for centre in ("01", "07", "08"):
        values = [float(r["dice"]) for r in rows if r["centre"] == centre]
        assert f"{np.mean(values):.3f} ± {np.std(values):.3f}" in table.splitlines()[2]
    assert len(list((tmp_path / "cv" / "overlays").glob("*.png"))) == 15
    shutil.rmtree(tmp_path / "cv" / "round5")
    assert main(_cv(phantom_dir, tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 4 and out.count(" done in ") == 1
    assert (tmp_path / "cv" / "table.md").read_text() == table


def test_overlay_draws_both_rows_and_refuses_another_grid(tmp_path):
    shape = (10, 12, 8)
    geometry = Geometry.from_affine(shape, np.diag([-1.0, 2.0, 1.5, 1.0]))
    flair = np.random.default_rng(0).random(shape)
    truth = np.zeros(shape, bool)
    truth[4:6, 5:8, 3:5] = True
    path = save_overlay(flair, truth, np.roll(truth, 1, axis=1), geometry,
                        tmp_path / "o" / "scan.png", title="scan: Dice 0.67")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["scan.png"]
    with pytest.raises(ValueError, match="expected a stored-frame array of shape"):
        save_overlay(flair[:-1], truth[:-1], truth[:-1], geometry, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()

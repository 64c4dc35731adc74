"""``cv``: its outputs on a tiny phantom, and continuing after an interruption."""

import csv
import json
import shutil

import numpy as np
import pytest
from msseg.commands.main import main
from msseg.io.discovery import MSSEG_PATIENTS
from msseg_helpers import TINY_FLAGS


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _cv(phantom_dir, tmp_path, *extra):
    return ["cv", "-i", str(phantom_dir), "-o", str(tmp_path / "cv"), "--cache",
            str(tmp_path / "cache"), "--epochs", "1", *extra, *TINY_FLAGS]


def test_cv_round_writes_its_outputs_and_is_not_run_twice(phantom_dir, tmp_path, capsys):
    assert main(_cv(phantom_dir, tmp_path, "--rounds", "1")) == 0
    out = capsys.readouterr().out
    assert "round 1: test ['01016SACH', '07001MOEL', '08002CHJE'], validation 08037ROGU, 11 " \
           "training scans" in out and out.count(" done in ") == 1
    rows = _rows(tmp_path / "cv" / "per_scan.csv")
    assert [r["patient_id"] for r in rows] == ["01016SACH", "07001MOEL", "08002CHJE"]
    table = (tmp_path / "cv" / "table.md").read_text().splitlines()
    assert table[0] == "| Metric | 01 (n=1) | 07 (n=1) | 08 (n=1) | Overall (n=3) |"
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Dice", "| Sensitivity", "| Lesion TPR", "| Lesion FPR", "| Lesion F1"]
    dice = [float(r["dice"]) for r in rows]
    assert table[2].split(" | ")[1:] == [f"{d:.3f}" for d in dice] + [  # one scan: no ± 0.000
        f"{np.mean(dice):.3f} ± {np.std(dice):.3f} |"]
    recompose = (tmp_path / "cv" / "recompose.md").read_text()
    assert f"| average of overlaps | 3 | {np.mean(dice):.3f} ± " in recompose
    assert "| middle-8 (paper, Eq. 1) | 3 |" in recompose
    assert sorted(p.name for p in (tmp_path / "cv" / "overlays").iterdir()) == [
        "01016SACH.png", "07001MOEL.png", "08002CHJE.png"]
    round_dir = tmp_path / "cv" / "round1"
    assert (round_dir / "train" / "best.pt").is_file()
    assert len(list((round_dir / "pred").glob("*_mask.nii.gz"))) == 3
    saved = json.loads((round_dir / "results.json").read_text())
    assert set(saved["results"]) == {"average", "paper"} and saved["epochs"] == 1
    page = (tmp_path / "cv" / "report.html").read_text()
    assert f"report: {tmp_path / 'cv' / 'report.html'}" in out
    assert "Overall (n=3)" in page and "0.611 ± 0.052" in page  # Table 2, the paper's beside
    assert f">{np.mean(dice):.3f} ± {np.std(dice):.3f}<" in page
    assert "Round 1" in page and page.count(">validation scan</th>") == 1
    for row in rows:  # every test scan: its section, its scores, 3 planes and a zoom or none
        assert f'id="scan-{row["patient_id"]}"' in page
        assert f"Dice {float(row['dice']):.3f}" in page

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

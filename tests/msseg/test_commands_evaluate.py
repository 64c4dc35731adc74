"""``evaluate``: per-scan voxel and lesion scores on the native grid, and the Table 2 layout."""

import csv

import nibabel as nib
import numpy as np
import pytest
from msseg.commands.main import main
from msseg.evaluation.lesions import min_lesion_voxels
from msseg_helpers import oriented_affine, save

SHAPE = (12, 14, 10)


@pytest.fixture
def msseg_root(tmp_path):
    """Two patients (RAS and LPS storage, 1 mm voxels), each with two separate 3x3x3 lesions."""
    root = tmp_path / "msseg"
    for index, (patient, codes) in enumerate((("01016SACH", "RAS"), ("07001MOEL", "LPS"))):
        flair = np.random.default_rng(index).uniform(100, 200, SHAPE).astype(np.float32)
        mask = np.zeros(SHAPE, np.uint8)
        mask[2:5, 2:5, 2:5] = mask[7:10, 8:11, 5:8] = 1
        affine = oriented_affine(codes, shape=SHAPE)
        save(root / patient / "3DFLAIR.nii.gz", flair, affine)
        save(root / patient / "Consensus.nii.gz", mask, affine)
    return root


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _truth(root, patient):
    image = nib.load(root / patient / "Consensus.nii.gz")
    return np.asarray(image.dataobj).astype(np.uint8), image.affine


def test_evaluate_scores_each_scan_and_writes_the_table(msseg_root, tmp_path, capsys):
    pred = tmp_path / "pred"
    perfect, affine = _truth(msseg_root, "01016SACH")
    save(pred / "01016SACH_mask.nii.gz", perfect, affine)
    truth, affine = _truth(msseg_root, "07001MOEL")
    half = np.zeros_like(truth)
    half[2:5, 2:5, 2:5] = 1  # one of the two lesions found exactly
    false = np.zeros_like(truth)
    false[10:12, 0:2, 0:2] = 1  # and one 8-voxel false lesion far from both
    save(pred / "07001MOEL_mask.nii.gz", half | false, affine)

    assert main(["evaluate", "--pred", str(pred), "--truth", str(msseg_root)]) == 0
    found, missed = int(half.sum()), int(truth.sum() - half.sum())
    dice = 2 * found / (found + 8 + found + missed)
    sensitivity = found / (found + missed)
    rows = _rows(pred / "per_scan.csv")
    assert [r["patient_id"] for r in rows] == ["01016SACH", "07001MOEL"]
    assert [r["centre"] for r in rows] == ["01", "07"]
    assert float(rows[0]["dice"]) == 1.0 and float(rows[0]["lesion_f1"]) == 1.0
    second = rows[1]
    assert float(second["dice"]) == pytest.approx(dice, abs=1e-6)
    assert float(second["sensitivity"]) == pytest.approx(sensitivity, abs=1e-6)
    assert (second["true_lesions"], second["predicted_lesions"], second["detected_lesions"],
            second["false_lesions"]) == ("2", "2", "1", "1")
    assert float(second["lesion_tpr"]) == 0.5 and float(second["lesion_fpr"]) == 0.5
    assert float(second["lesion_f1"]) == pytest.approx(0.5)
    table = (pred / "table.md").read_text()
    assert table.splitlines()[0] == "| Metric | 01 (n=1) | 07 (n=1) | Overall (n=2) |"
    overall = (1 + dice) / 2
    assert f"| Dice | 1.000 | {dice:.3f} | {overall:.3f} ± {(1 - dice) / 2:.3f} |" in table
    assert "| Lesion F1 | 1.000 | 0.500 | 0.750 ± 0.250 |" in table
    assert (pred / "table.csv").read_text().startswith("metric,01 mean,01 std,01 n,07 mean")
    out = capsys.readouterr().out
    assert "07001MOEL   07" in out and "wrote" in out

    # lesions under --min-lesion-mm3 are ignored lesion-wise (voxels here are 1 mm³)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(msseg_root), "--out",
                 str(tmp_path / "big"), "--min-lesion-mm3", "9"]) == 0
    rows = _rows(tmp_path / "big" / "per_scan.csv")
    assert (rows[1]["predicted_lesions"], rows[1]["false_lesions"]) == ("1", "0")
    assert float(rows[1]["dice"]) == pytest.approx(dice, abs=1e-6)  # voxel scores unchanged


def test_scans_without_prediction_are_skipped_and_listed(msseg_root, tmp_path, capsys):
    assert main(["evaluate", "-p", str(tmp_path / "pred"), "-t", str(msseg_root)]) == 1
    assert "no prediction for any of the 2 scans" in capsys.readouterr().err
    truth, affine = _truth(msseg_root, "01016SACH")
    save(tmp_path / "pred" / "01016SACH_mask.nii.gz", truth, affine)
    assert main(["evaluate", "-p", str(tmp_path / "pred"), "-t", str(msseg_root)]) == 0
    out, err = capsys.readouterr()
    assert "warning: skipped 1 of 2 scans without a prediction" in err and "07001MOEL" in err
    assert "scored 1 scans" in out
    assert [r["patient_id"] for r in _rows(tmp_path / "pred" / "per_scan.csv")] == ["01016SACH"]


def test_misplaced_predictions_are_refused(msseg_root, tmp_path, capsys):
    truth, affine = _truth(msseg_root, "01016SACH")
    save(tmp_path / "pred" / "01016SACH_mask.nii.gz", truth, affine)
    other, affine = _truth(msseg_root, "07001MOEL")
    save(tmp_path / "pred" / "07001MOEL_mask.nii.gz", other[:-1], affine)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(msseg_root)]) == 1
    assert "differs from the FLAIR grid" in capsys.readouterr().err
    assert not (tmp_path / "pred" / "table.md").exists()


def test_min_lesion_voxels_follows_the_voxel_volume():
    """Lesions larger than 3 mm³ count, as the challenge's tool keeps them."""
    assert min_lesion_voxels(1.0, 3.0) == 4
    assert min_lesion_voxels(1.2 * 0.5 * 0.5, 3.0) == 11  # 0.3 mm³ voxels: 10 is 3 mm³
    assert min_lesion_voxels(8.0, 3.0) == 1


def test_an_empty_truth_is_never_a_perfect_score_and_every_cell_says_its_n(msseg_root, tmp_path,
                                                                           capsys):
    """Centre 07: one scan missed entirely (Dice 0) and one without lesions, predicted empty.
    The lesion-free scan must not add a Dice of 1.0 to the centre's mean (it used to make it
    0.500); it is left out, named in a warning, and the cell says it rests on one scan."""
    flair = np.random.default_rng(5).uniform(100, 200, SHAPE).astype(np.float32)
    affine = oriented_affine("RAS", shape=SHAPE)
    save(msseg_root / "07003SATH" / "3DFLAIR.nii.gz", flair, affine)
    save(msseg_root / "07003SATH" / "Consensus.nii.gz", np.zeros(SHAPE, np.uint8), affine)
    pred = tmp_path / "pred"
    for patient in ("01016SACH", "07001MOEL", "07003SATH"):
        truth, affine = _truth(msseg_root, patient)
        save(pred / f"{patient}_mask.nii.gz", truth if patient == "01016SACH" else 0 * truth,
             affine)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(msseg_root)]) == 0
    table = (pred / "table.md").read_text().splitlines()
    assert table[0] == "| Metric | 01 (n=1) | 07 (n=2) | Overall (n=3) |"
    assert table[2] == "| Dice | 1.000 | 0.000 (n=1) | 0.500 ± 0.500 (n=2) |"
    assert table[3] == "| Sensitivity | 1.000 | 0.000 (n=1) | 0.500 ± 0.500 (n=2) |"
    assert table[5] == "| Lesion FPR | 0.000 | n/a | 0.000 (n=1) |"  # nothing predicted in 07
    assert table[-1].startswith("(n=k): the mean over the k scans where the metric is defined")
    csv_rows = (pred / "table.csv").read_text().splitlines()
    assert csv_rows[1].split(",")[4:7] == ["0.000000", "0.000000", "1"]  # 07 Dice: mean, std, n
    rows = _rows(pred / "per_scan.csv")
    assert (rows[2]["patient_id"], rows[2]["dice"], rows[2]["sensitivity"]) == (
        "07003SATH", "nan", "nan")
    out, err = capsys.readouterr()
    assert "warning: 1 scan(s) without ground-truth lesions: ['07003SATH']" in err
    assert "07003SATH   07      n/a    n/a" in out

"""Smoke test on the real scans: both recipes train a few steps on the 1 mm MNI scan, predict
it and the raw thick-slice scan, and score the prediction, with the commands a user runs. The
MNI scan trains and validates (listed twice in a CSV: one scan has no second to validate on);
nothing here measures accuracy."""


import nibabel as nib
import numpy as np
import pytest
from msseg.commands.main import main
from msseg_helpers import REAL_SCANS, TINY_FLAGS


@pytest.fixture
def scans_csv(tmp_path):
    patient = REAL_SCANS / "patient07"
    flair, mask = patient / "FLAIR.nii.gz", patient / "Consensus.nii.gz"
    path = tmp_path / "scans.csv"
    path.write_text("patient_id,flair,mask\n" + "".join(
        f"{name},{flair},{mask}\n" for name in ("patient07", "patient07copy")))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [["--set", "recipe=paper"],
                                    ["--set", "recipe=spacing", "spacing_mm=6", "window=16",
                                     "normalisation=percentile"]])
def test_train_predict_evaluate_on_real_scans(scans_csv, tmp_path, recipe, capsys):
    run = tmp_path / "run"
    assert main(["train", "-i", str(scans_csv), "-o", str(run), "--val", "patient07copy",
                 "--epochs", "1", "--threads", "1", *TINY_FLAGS, *recipe]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1: train loss" in out and "working-space Dice" in out
    assert "validation Dice on the scans' own grids: patient07copy" in out
    assert (run / "validation.json").is_file() and (run / "cache").is_dir()

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    sources = {"patient07": REAL_SCANS / "patient07" / "FLAIR.nii.gz",
               "patient01": REAL_SCANS / "raw" / "patient01_study1_FLAIR.nii.gz"}
    for name, source in sources.items():
        (inputs / f"{name}.nii.gz").symlink_to(source)
    pred = tmp_path / "pred"
    assert main(["predict", "-m", str(run / "best.pt"), "-i", str(inputs), "-o", str(pred),
                 "--device", "cpu", "--threads", "1"]) == 0
    for name, source in sources.items():
        written, flair = nib.load(pred / f"{name}_mask.nii.gz"), nib.load(source)
        assert written.shape == flair.shape
        np.testing.assert_array_equal(written.affine, flair.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
    capsys.readouterr()
    assert main(["evaluate", "-p", str(pred), "-t", str(scans_csv)]) == 0
    assert "scored 1 scans" in capsys.readouterr().out

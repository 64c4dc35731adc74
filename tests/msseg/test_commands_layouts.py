"""The same phantom as an MSSEG folder, an nnU-Net raw dataset and a BIDS dataset: `train`,
`predict` (each in its layout's naming) and `evaluate` run on each with the commands a user
types, and give the same numbers; the nnU-Net prediction folder is one nnU-Net's evaluation
reads. 20-40 s (three tiny trainings of one epoch, 45 predictions)."""

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
from msseg.commands.main import main
from msseg.io.discovery import MSSEG_PATIENTS
from msseg_helpers import TINY_FLAGS

TEST_SCANS = ["01016SACH", "07001MOEL", "08002CHJE"]


def _nnunet_copy(phantom, root):
    """Every patient as a training case of the FLAIR channel; masks in labelsTr."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
        "numTraining": len(MSSEG_PATIENTS), "file_ending": ".nii.gz"}))
    for patient in MSSEG_PATIENTS:
        (root / "imagesTr" / f"{patient}_0000.nii.gz").symlink_to(
            phantom / patient / "3DFLAIR.nii.gz")
        (root / "labelsTr" / f"{patient}.nii.gz").symlink_to(
            phantom / patient / "Consensus.nii.gz")
    return root


def _bids_copy(phantom, root):
    """sub-<patient>/anat/sub-<patient>_FLAIR.nii.gz, the consensus in derivatives, the centre
    as the participants' site."""
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "phantom", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text("participant_id\tsite\n" + "".join(
        f"sub-{p}\t{p[:2]}\n" for p in MSSEG_PATIENTS))
    for patient in MSSEG_PATIENTS:
        anat = root / f"sub-{patient}" / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-{patient}_FLAIR.nii.gz").symlink_to(phantom / patient / "3DFLAIR.nii.gz")
        masks = root / "derivatives" / "consensus" / f"sub-{patient}" / "anat"
        masks.mkdir(parents=True)
        (masks / f"sub-{patient}_desc-lesion_mask.nii.gz").symlink_to(
            phantom / patient / "Consensus.nii.gz")
    return root


def _run(data, inputs, out, prefix, naming):
    """train, predict, evaluate; the per-scan rows of `evaluate` by MSSEG patient id."""
    run, pred = out / "run", out / "pred"
    assert main(["train", "-i", str(data), "-o", str(run), "--exclude",
                 *(prefix + s for s in TEST_SCANS), "--val", prefix + "08037ROGU",
                 "--epochs", "1", "--threads", "1", *TINY_FLAGS]) == 0
    assert main(["predict", "-m", str(run / "best.pt"), "-i", str(inputs), "-o", str(pred),
                 "--device", "cpu", "--threads", "1", "--naming", naming]) == 0
    assert main(["evaluate", "-p", str(pred), "-t", str(data), "-o", str(out)]) == 0
    with (out / "per_scan.csv").open(newline="") as handle:
        return {row.pop("patient_id").removeprefix(prefix): row
                for row in csv.DictReader(handle)}


def _nnunet_evaluation_reads(pred, labels, label):
    """What nnU-Net's evaluation does with a prediction folder: every <CASE>.nii.gz in it is
    read with the reference of the same name, on the same grid; Dice of the label's region."""
    dice = {}
    for path in sorted(pred.glob("*.nii.gz")):
        reference, predicted = nib.load(labels / path.name), nib.load(path)
        assert reference.shape == predicted.shape
        np.testing.assert_allclose(reference.affine, predicted.affine, atol=1e-5)
        truth = np.asarray(reference.dataobj) == label
        mask = np.asarray(predicted.dataobj)
        assert set(np.unique(mask)) <= {0, label}
        mask = mask == label
        dice[path.name.removesuffix(".nii.gz")] = 2 * (truth & mask).sum() / (truth.sum() +
                                                                              mask.sum())
    return dice


@pytest.mark.slow  # 20-40 s: three trainings
def test_msseg_nnunet_and_bids_copies_of_the_phantom_give_the_same_numbers(phantom_dir,
                                                                            tmp_path):
    nnunet = _nnunet_copy(phantom_dir, tmp_path / "Dataset001_Phantom")
    bids = _bids_copy(phantom_dir, tmp_path / "bids")
    msseg = _run(phantom_dir, phantom_dir, tmp_path / "msseg", "", "msseg")
    as_nnunet = _run(nnunet, nnunet / "imagesTr", tmp_path / "nnunet", "", "nnunet")
    as_bids = _run(bids, bids, tmp_path / "bids_out", "sub-", "bids")
    assert sorted(msseg) == sorted(as_nnunet) == sorted(as_bids) == sorted(MSSEG_PATIENTS)
    assert any(float(row["dice"]) > 0 for row in msseg.values())  # something was found
    for patient, row in msseg.items():
        assert as_bids[patient] == row  # the site column of participants.tsv is the centre
        assert as_nnunet[patient] == {**row, "centre": "-"}  # nnU-Net data has no centre
        assert not math.isnan(float(row["dice"]))
    nnunet_dice = _nnunet_evaluation_reads(tmp_path / "nnunet" / "pred", nnunet / "labelsTr", 1)
    assert sorted(nnunet_dice) == sorted(MSSEG_PATIENTS)
    for patient, value in nnunet_dice.items():
        assert value == pytest.approx(float(msseg[patient]["dice"]), abs=1e-6)
    derivative = tmp_path / "bids_out" / "pred"
    assert (derivative / "sub-01016SACH" / "anat" /
            "sub-01016SACH_space-orig_desc-lesion_mask.nii.gz").is_file()
    assert json.loads((derivative / "dataset_description.json").read_text())[
        "DatasetType"] == "derivative"


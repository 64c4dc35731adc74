"""The nnU-Net raw and BIDS layouts, on small datasets built here: which file is the FLAIR, which
mask value is lesion, which derivative is the mask, where outputs go, and one line for what
cannot be read."""

import json

import numpy as np
import pytest
from msseg.io.bids import DESCRIPTION, bids_output_path
from msseg.io.discovery import (
    detect_layout,
    discover_scans,
    find_inputs,
    find_prediction,
    prediction_path,
)
from msseg.io.nifti import load_scan
from msseg.io.nnunet import read_dataset_json
from msseg_helpers import blob_scan, oriented_affine, save


def _nnunet(root, *, channels, labels, train=("case_001", "case_002"), test=("case_101",),
            lesion_value=1, legacy=False):
    """A dataset folder: one image per channel and case (the FLAIR channel holds the blobs),
    masks whose lesion voxels hold `lesion_value` and a stray label 3 elsewhere."""
    key = "modality" if legacy else "channel_names"
    (root).mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({key: channels, "labels": labels,
                                                   "numTraining": len(train),
                                                   "file_ending": ".nii.gz"}))
    for subset, cases in (("Tr", train), ("Ts", test)):
        for seed, case in enumerate(cases):
            flair, mask = blob_scan(seed=seed)
            affine = oriented_affine("LPS", shape=flair.shape)
            for channel, name in channels.items():
                image = flair if "flair" in name.lower() else flair[::-1].copy()
                save(root / f"images{subset}" / f"{case}_{int(channel):04d}.nii.gz", image,
                     affine)
            stored = mask * lesion_value
            stored[0, 0, 0] = 3
            save(root / f"labels{subset}" / f"{case}.nii.gz", stored.astype(np.uint8), affine)
    return root


def test_nnunet_reads_the_flair_channel_by_name_and_the_lesion_label(tmp_path):
    root = _nnunet(tmp_path / "Dataset001_MS", channels={"0": "T1", "1": "FLAIR"},
                   labels={"background": 0, "edema": 3, "MS lesion": 2}, lesion_value=2)
    assert detect_layout(root) == "nnunet" and detect_layout(root / "imagesTs") == "nnunet"
    dataset = read_dataset_json(root)
    assert (dataset.channel, dataset.lesion_labels, dataset.label_name) == (1, (2,), "MS lesion")
    records = discover_scans(root)
    assert [r.patient_id for r in records] == ["case_001", "case_002"]
    assert records[0].flair == root / "imagesTr" / "case_001_0001.nii.gz"
    assert records[0].mask == root / "labelsTr" / "case_001.nii.gz"
    scan = load_scan(records[0])
    flair, mask = blob_scan(seed=0)
    assert np.array_equal(scan.flair, flair) and np.array_equal(scan.mask, mask)  # not label 3
    assert [r.patient_id for r in find_inputs(root)] == ["case_101"]  # imagesTs: the test cases
    assert [r.mask for r in find_inputs(root / "imagesTr")] == [None, None]
    assert [r.patient_id for r in discover_scans(root / "imagesTs")] == ["case_101"]


def test_nnunet_of_the_first_version_and_label_overrides(tmp_path):
    root = _nnunet(tmp_path / "Task01", channels={"0": "FLAIR"}, legacy=True,
                   labels={"0": "background", "1": "lesions"})
    (record, _) = discover_scans(root)
    assert record.flair.name == "case_001_0000.nii.gz" and record.mask_labels == (1,)
    (record, _) = discover_scans(root, mask_labels=(1, 3))
    assert load_scan(record).mask[0, 0, 0] == 1


@pytest.mark.parametrize(("meta", "message"), [
    ({"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "lesion": 1}},
     r"no single FLAIR channel in channel_names \{'0': 'T1', '1': 'T2'\}"),
    ({"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "a": 1, "b": 2}},
     "no single lesion label in labels"),
    ({"labels": {"background": 0, "lesion": 1}}, "no 'channel_names'"),
])
def test_an_unclear_dataset_json_is_one_line_naming_what_it_found(tmp_path, meta, message):
    root = _nnunet(tmp_path / "D", channels={"0": "FLAIR"}, labels={"background": 0, "l": 1})
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as caught:
        discover_scans(root)
    assert "\n" not in str(caught.value) and "dataset.json" in str(caught.value)


def test_nnunet_missing_mask_is_named(tmp_path):
    root = _nnunet(tmp_path / "D", channels={"0": "FLAIR"}, labels={"background": 0, "l": 1})
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"labelsTr/case_002\.nii\.gz: the mask of case"):
        discover_scans(root)
    assert [r.mask is None for r in discover_scans(root, require_masks=False)] == [False, True]


def _bids(root):
    """Three scans: sub-01 with two sessions, sub-02 without sessions; masks from a lesion
    pipeline; and msseg's own earlier outputs in derivatives/msseg, which are never masks."""
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (root / "participants.tsv").write_text("participant_id\tsite\nsub-01\t07\nsub-02\tn/a\n")
    scans = {"sub-01/ses-01/anat/sub-01_ses-01": 0, "sub-01/ses-02/anat/sub-01_ses-02": 1,
             "sub-02/anat/sub-02": 2}
    for stem, seed in scans.items():
        flair, mask = blob_scan(seed=seed)
        affine = oriented_affine("RAS", shape=flair.shape)
        save(root / f"{stem}_FLAIR.nii.gz", flair, affine)
        save(root / "derivatives" / "lesions" / f"{stem}_FLAIR_label-lesion_mask.nii.gz", mask,
             affine)
        save(root / "derivatives" / "msseg" / f"{stem}_space-orig_desc-lesion_mask.nii.gz",
             1 - mask, affine)
        save(root / "derivatives" / "lesions" / f"{stem}_desc-brain_mask.nii.gz", mask, affine)
    (root / "derivatives" / "msseg" / "dataset_description.json").write_text(
        json.dumps(DESCRIPTION))
    return root


def test_bids_scans_masks_from_derivatives_and_sites(tmp_path):
    root = _bids(tmp_path / "bids")
    assert detect_layout(root) == "bids"
    records = discover_scans(root)
    assert [(r.patient_id, r.centre) for r in records] == [
        ("sub-01_ses-01", "07"), ("sub-01_ses-02", "07"), ("sub-02", None)]
    assert records[2].mask == (root / "derivatives" / "lesions" / "sub-02" / "anat" /
                               "sub-02_FLAIR_label-lesion_mask.nii.gz")
    assert np.array_equal(load_scan(records[1]).mask, blob_scan(seed=1)[1])
    assert [r.mask for r in find_inputs(root)] == [None] * 3
    (single,) = find_inputs(records[0].flair)
    assert single.patient_id == "sub-01_ses-01"


def test_bids_mask_problems_are_one_line(tmp_path):
    root = _bids(tmp_path / "bids")
    extra = (root / "derivatives" / "other" / "sub-02" / "anat" /
             "sub-02_desc-lesions_mask.nii.gz")
    save(extra, blob_scan()[1], oriented_affine("RAS", shape=blob_scan()[1].shape))
    with pytest.raises(ValueError, match="2 lesion masks for sub-02"):
        discover_scans(root)
    extra.unlink()
    (root / "derivatives" / "lesions" / "sub-02" / "anat" /
     "sub-02_FLAIR_label-lesion_mask.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"no lesion mask for sub-02; expected "
                       r"derivatives/<pipeline>/sub-02/anat/sub-02_space-orig_desc-lesion"):
        discover_scans(root)


def test_outputs_are_named_in_each_naming(tmp_path):
    assert prediction_path(tmp_path, "01016SACH") == tmp_path / "01016SACH_mask.nii.gz"
    assert prediction_path(tmp_path, "a", "table") == tmp_path / "a_lesions.csv"
    assert prediction_path(tmp_path, "case_1", naming="nnunet") == tmp_path / "case_1.nii.gz"
    assert prediction_path(tmp_path, "case_1", "lesions", naming="nnunet") == (
        tmp_path / "maps" / "case_1_lesions.nii.gz")
    assert prediction_path(tmp_path, "sub-01_ses-02", naming="bids") == (
        tmp_path / "sub-01" / "ses-02" / "anat" /
        "sub-01_ses-02_space-orig_desc-lesion_mask.nii.gz")
    assert bids_output_path(tmp_path, "sub-02_run-1", "prob") == (
        tmp_path / "sub-02" / "anat" / "sub-02_run-1_space-orig_label-lesion_probseg.nii.gz")
    with pytest.raises(ValueError, match="not a BIDS scan id"):
        prediction_path(tmp_path, "01016SACH", naming="bids")
    target = prediction_path(tmp_path, "sub-01_ses-02", naming="bids")
    target.parent.mkdir(parents=True)
    target.touch()
    assert find_prediction(tmp_path, "sub-01_ses-02") == (target, "bids")
    assert find_prediction(tmp_path, "case_1") is None


def test_a_folder_in_no_layout_is_one_line_naming_every_layout(tmp_path):
    (tmp_path / "data" / "patientA").mkdir(parents=True)
    (tmp_path / "data" / "patientA" / "scan.nii.gz").touch()
    for read in (discover_scans, find_inputs):
        with pytest.raises(ValueError, match="not a dataset msseg reads; expected an MSSEG "
                                             "folder") as caught:
            read(tmp_path / "data")
        message = str(caught.value)
        assert "\n" not in message and all(
            word in message for word in ("nnU-Net", "dataset.json", "BIDS", "CSV", "{id}"))

"""The one prediction path: predictor over slabs, blending, the native grid, the output files."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from msseg.data.native import NativePrediction, mask_to_native
from msseg.data.preprocess import preprocess_scan
from msseg.device import resolve_compute
from msseg.evaluation.lesion_table import analyse_lesions, read_lesion_table
from msseg.inference import predict as predict_module
from msseg.inference.outputs import existing_outputs, write_prediction
from msseg.inference.predict import predict_files, predict_scan, predict_volume
from msseg.inference.predictor import model_predictor
from msseg.io.discovery import find_msseg_scans
from msseg.io.nifti import load_scan
from msseg.io.orientation import Geometry
from msseg.model.resunet import build_model
from msseg.recipes.paper import make_slabs, predict_cube, recompose_slabs
from msseg.recipes.spacing import predict_windows
from msseg_helpers import tiny_config


def test_model_predictor_in_batches_equals_one_forward(tmp_path):
    config = tiny_config(tmp_path)
    torch.manual_seed(0)
    model = build_model(config).eval()
    predictor = model_predictor(model, compute=resolve_compute("cpu", "fp32"))
    slabs = torch.rand(5, 8, 16, 16) * 2 - 1
    probs = torch.cat([predictor(slabs[:2]), predictor(slabs[2:])])
    with torch.no_grad():
        expected = torch.sigmoid(model(slabs[:, None].expand(-1, 3, -1, -1, -1)))[:, 0]
    assert probs.shape == (5, 8, 16, 16) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["average", "paper"])
def test_predict_cube_cuts_batches_and_blends_like_the_slab_functions(method):
    cube = np.random.default_rng(0).uniform(-1, 1, (16, 5, 6)).astype(np.float32)
    calls = []

    def predictor(batch):
        calls.append(tuple(batch.shape))
        return (batch + 1) / 2 * torch.arange(1, len(batch) + 1)[:, None, None, None]

    out = predict_cube(cube, predictor, slab=8, step=4, batch_size=2, recompose=method)
    assert calls == [(2, 8, 5, 6), (1, 8, 5, 6)]  # 3 slabs, 2 at a time
    slabs = (make_slabs(cube, slab=8, step=4) + 1) / 2 * np.array([1, 2, 1])[:, None, None, None]
    np.testing.assert_allclose(out, recompose_slabs(slabs, step=4, method=method), rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        predict_cube(cube, predictor, slab=8, step=4, batch_size=0)


def test_predict_scan_decides_in_the_working_space_and_maps_the_mask_back(msseg_root,
                                                                         tmp_path):
    config = tiny_config(tmp_path, threshold=0.4)
    scan = load_scan(find_msseg_scans(msseg_root)[1])

    def bright(batch):
        return (batch > 0.5).float() * 0.6

    prediction = predict_scan(scan, bright, config=config)
    working = preprocess_scan(scan, config.pipeline)
    again = predict_scan(scan, bright, config=config, working=working)
    np.testing.assert_array_equal(prediction.probability, again.probability)
    assert prediction.probability.shape == scan.flair.shape
    probability = predict_volume(working.flair, bright, config=config)
    np.testing.assert_array_equal(prediction.mask,
                                  mask_to_native(probability >= 0.4, working.grid))
    assert prediction.mask.sum() > 0
    assert predict_scan(scan, bright, config=config, threshold=0.7).mask.sum() == 0
    with pytest.raises(ValueError, match=r"recompose='gaussian' does not apply to recipe 'paper'"):
        predict_volume(working.flair, bright, config=config, recompose="gaussian")


@pytest.mark.parametrize("blend", ["gaussian", "average"])
def test_sliding_windows_cover_any_shape_in_batches(blend):
    """A voxel-wise predictor gives the same value in every window that covers a voxel, so any
    blend must return it exactly: windows reach every voxel once padding is cropped away."""
    volume = np.random.default_rng(0).uniform(-1, 1, (20, 13, 9)).astype(np.float32)
    calls = []

    def predictor(batch):
        calls.append(tuple(batch.shape))
        return (batch + 1) / 2

    out = predict_windows(volume, predictor, slab=8, step=4, window=8, overlap=0.5,
                          batch_size=3, blend=blend)
    assert out.shape == volume.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, (volume + 1) / 2, rtol=1e-5, atol=1e-6)
    # depth starts 0, 4, 8, 12; rows 0, 4, 5; columns 0, 1: 24 windows, 3 at a time
    assert calls == [(3, 8, 8, 8)] * 8
    with pytest.raises(ValueError, match="blend must be one of"):
        predict_windows(volume, predictor, slab=8, step=4, window=8, overlap=0.5, blend="max")


def test_the_spacing_recipe_predicts_through_windows(msseg_root, tmp_path):
    config = tiny_config(tmp_path, recipe="spacing", spacing_mm=1.5, window=8, threshold=0.5)
    scan = load_scan(find_msseg_scans(msseg_root)[0])
    working = preprocess_scan(scan, config.pipeline)
    assert working.flair.shape == (8, 10, 7)  # 12 x 14 x 10 voxels of 1 mm at 1.5 mm

    def bright(batch):
        return (batch > 0.0).float()

    prediction = predict_scan(scan, bright, config=config, working=working)
    expected = mask_to_native(working.flair > 0.0, working.grid)
    np.testing.assert_array_equal(prediction.mask, expected)
    assert 0 < prediction.mask.sum() < prediction.mask.size


def test_predict_files_reads_each_scan_once(msseg_root, tmp_path, monkeypatch):
    """The headers are checked before any inference, the voxels read once, when predicted."""
    config = tiny_config(tmp_path, threshold=0.4)
    records = find_msseg_scans(msseg_root)
    loaded = []

    def load_once(record, **options):
        loaded.append(record.patient_id)
        return load_scan(record, **options)

    def bright(batch):
        return (batch > 0.5).float() * 0.6

    monkeypatch.setattr(predict_module, "load_scan", load_once)
    masks = predict_files(records, tmp_path / "out", bright, config=config)
    assert loaded == [r.patient_id for r in records]
    for record, path in zip(records, masks, strict=True):
        expected = predict_scan(load_scan(record), bright, config=config).mask
        np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), expected)
        assert expected.sum() > 0


def _prediction(shape=(3, 4, 5)):
    probability = np.random.default_rng(0).random(shape).astype(np.float32)
    return NativePrediction(probability, (probability >= 0.5).astype(np.uint8))


def _write(prediction, geometry, out, patient, **options):
    analysis = analyse_lesions(prediction.mask, geometry, probability=prediction.probability,
                               min_lesion_mm3=0)
    return write_prediction(prediction, analysis, geometry, out, patient, **options)


def test_outputs_are_replaced_only_on_request_and_never_leave_a_stale_probability_map(tmp_path):
    geometry = Geometry.from_affine((3, 4, 5), np.eye(4))
    prediction = _prediction()
    first = _write(prediction, geometry, tmp_path, "A", probabilities=True)
    assert first == tmp_path / "A_mask.nii.gz"
    assert existing_outputs(tmp_path, ["A", "B"]) == [
        first, tmp_path / "A_prob.nii.gz", tmp_path / "A_lesions.nii.gz",
        tmp_path / "A_lesions.csv"]
    labels = np.asarray(nib.load(tmp_path / "A_lesions.nii.gz").dataobj)
    assert np.array_equal(labels > 0, prediction.mask > 0) and labels.dtype == np.uint8
    table = read_lesion_table((tmp_path / "A_lesions.csv").read_text())
    assert [lesion.label for lesion in table] == list(range(1, labels.max() + 1))
    assert sum(lesion.voxels for lesion in table) == prediction.mask.sum()
    with pytest.raises(FileExistsError, match=r"A_mask\.nii\.gz exists already; pass --overwrite"):
        _write(prediction, geometry, tmp_path, "A")
    _write(NativePrediction(np.zeros((3, 4, 5), np.float32), np.zeros((3, 4, 5), np.uint8)),
           geometry, tmp_path, "A", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # the old probability map is gone
        "A_lesions.csv", "A_lesions.nii.gz", "A_mask.nii.gz"]
    assert np.asarray(nib.load(first).dataobj).max() == 0
    assert read_lesion_table((tmp_path / "A_lesions.csv").read_text()) == ()


def test_a_probability_map_left_without_its_mask_is_replaced_without_overwrite(tmp_path, msseg_log):
    """A _prob without its _mask is the leftover of an interrupted write: the mask marks a scan's
    outputs complete, so the leftover is no earlier result and is replaced (and said so)."""
    geometry = Geometry.from_affine((3, 4, 5), np.eye(4))
    (tmp_path / "A_prob.nii.gz").write_bytes(b"left by a killed run")
    assert existing_outputs(tmp_path, ["A"]) == []
    _write(_prediction(), geometry, tmp_path, "A")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "A_lesions.csv", "A_lesions.nii.gz", "A_mask.nii.gz"]
    assert "A_prob.nii.gz: replacing a file left without its mask" in msseg_log.text


def test_nnunet_masks_hold_the_lesion_label_and_bids_outputs_form_a_derivative(tmp_path):
    geometry = Geometry.from_affine((3, 4, 5), np.eye(4))
    prediction = _prediction()
    mask = _write(prediction, geometry, tmp_path / "nn", "case_1", naming="nnunet", label=2,
                  probabilities=True)
    assert mask == tmp_path / "nn" / "case_1.nii.gz"
    assert np.array_equal(np.asarray(nib.load(mask).dataobj), prediction.mask * 2)
    assert sorted(str(p.relative_to(tmp_path / "nn")) for p in (tmp_path / "nn").rglob("*")
                  if p.is_file()) == ["case_1.nii.gz", "case_1_lesions.csv",
                                      "maps/case_1_lesions.nii.gz", "maps/case_1_prob.nii.gz"]
    mask = _write(prediction, geometry, tmp_path / "bids", "sub-01_ses-02", naming="bids")
    assert mask == (tmp_path / "bids" / "sub-01" / "ses-02" / "anat" /
                    "sub-01_ses-02_space-orig_desc-lesion_mask.nii.gz")
    description = json.loads((tmp_path / "bids" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "msseg"

"""``predict``: masks on the input's own grid that overlay it, both recompositions, and bad input
that writes nothing."""

import nibabel as nib
import numpy as np
import pytest
import torch
from data_helpers import oriented_affine, save
from msseg.commands.main import main
from msseg.commands.predict import find_inputs, predict_cube
from msseg.commands.train import pipeline_config
from msseg.data.native import probability_to_native
from msseg.data.preprocess import preprocess_scan
from msseg.evaluation.metrics import dice
from msseg.io.nifti import load_scan
from msseg.training.checkpoint import load_model
from msseg.training.engine import train
from train_helpers import single_thread, tiny_config, tiny_datasets

pytestmark = pytest.mark.filterwarnings("ignore::msseg.model.encoder.RandomEncoderWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


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

    def bright(model, slabs, **kwargs):
        return (torch.as_tensor(slabs) > 0.5).float()

    monkeypatch.setattr("msseg.commands.predict.predict_probabilities", bright)
    assert main(["predict", "--model", str(checkpoint), "--input", str(path), "--out",
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
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan7_mask.nii.gz",
                                                                    "scan7_prob.nii.gz"]


def test_folder_prediction_equals_the_library_path_for_both_recompositions(checkpoint, tmp_path,
                                                                           capsys):
    model, config = load_model(checkpoint)
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
            scan = load_scan(record)
            cube = predict_cube(model, config, preprocess_scan(scan, pipeline_config(config)).flair,
                                recompose=method)
            expected = probability_to_native(cube, scan.geometry)
            written = np.asarray(nib.load(out / f"{record.patient_id}_prob.nii.gz").dataobj)
            np.testing.assert_allclose(written, expected, atol=1e-6)
            mask = np.asarray(nib.load(out / f"{record.patient_id}_mask.nii.gz").dataobj)
            np.testing.assert_array_equal(mask, expected >= config.threshold)
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
    assert "missing.pt' does not exist" in capsys.readouterr().err
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

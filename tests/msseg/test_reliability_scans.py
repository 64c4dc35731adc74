"""Scans that load but would be read wrongly, and scores that would reward a wrong mask: each is
a ``warning:`` naming the file (an ``error:`` with ``--strict``), a one-line error, or a score
that says what happened, never a silent guess.

- a FLAIR whose grid the header does not define (no qform or sform, a zero voxel size, qform
  and sform that disagree);
- a FLAIR whose intensities are far from the training scans' (a negated scan);
- RGB voxels;
- a prediction that is one blob over the head: the MSSEG-2016 detection rule counts no lesion
  as detected by it.
"""

import csv

import nibabel as nib
import numpy as np
import pytest
from msseg.commands.main import main
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import ScanWarning, load_scan
from msseg.training.engine import train
from msseg_helpers import TINY_FLAGS, blob_scan, oriented_affine, save, tiny_config, tiny_datasets

TEST_SCANS = ["01016SACH", "07001MOEL", "08002CHJE"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train(tiny_config(tmp_path_factory.mktemp("scans") / "run", epochs=1),
                 *tiny_datasets()).last_path


def _warnings(err: str, path) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"warning: {path}: ")]


def _header(path, make):
    """An uncompressed NIfTI whose header `make` edits after nibabel wrote it (nibabel would
    otherwise rewrite pixdim and the codes from the image's affine)."""
    flair, _ = blob_scan()
    affine = oriented_affine("LPS", voxel_mm=(1.0, 1.2, 2.0), shape=flair.shape)
    data = save(path, flair, affine).read_bytes()
    header = nib.Nifti1Header(binaryblock=data[:348], check=False)
    make(header, affine)
    path.write_bytes(header.binaryblock + data[348:])
    return path


def _no_transform(header, affine):
    header["qform_code"] = header["sform_code"] = 0
    return "has no qform or sform"


def _zero_voxel(header, affine):
    header["sform_code"] = 0
    header["pixdim"][2] = 0.0
    return "pixdim gives 0 mm"


def _disagree(header, affine):
    stretched = affine.copy()
    stretched[:3, :3] *= 2
    header.set_sform(stretched, code=1)
    return "qform and sform disagree"


GEOMETRY_FAULTS = [_no_transform, _zero_voxel, _disagree]


@pytest.mark.parametrize("fault", GEOMETRY_FAULTS, ids=[f.__name__[1:] for f in GEOMETRY_FAULTS])
def test_a_grid_the_header_does_not_define_is_a_warning_and_an_error_with_strict(
        model, tmp_path, capsys, fault):
    path = _header(tmp_path / "in" / "scan.nii", fault)
    problem = fault(nib.Nifti1Header(), np.eye(4))
    with pytest.warns(ScanWarning, match=problem):
        load_scan(ScanRecord("scan", None, path, None))

    assert main(["predict", "-m", str(model), "-i", str(path), "-o", str(tmp_path / "out")]) == 0
    found = [line for line in _warnings(capsys.readouterr().err, path) if problem in line]
    assert len(found) == 1 and "its voxel size and orientation" in found[0], found

    assert main(["predict", "-m", str(model), "-i", str(path), "-o", str(tmp_path / "strict"),
                 "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and problem in err and err.count("\n") == 1, err
    assert err.rstrip().endswith("refused under --strict") and not (tmp_path / "strict").exists()


def test_a_scan_the_header_defines_gives_no_geometry_warning(model, tmp_path, capsys):
    flair, _ = blob_scan()
    path = save(tmp_path / "scan.nii.gz", flair, oriented_affine("LPS", shape=flair.shape))
    assert main(["predict", "-m", str(model), "-i", str(path), "-o", str(tmp_path / "out"),
                 "--strict"]) == 0
    assert "qform" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["RGB", "RGBA"])
def test_colour_voxels_are_one_line(model, tmp_path, capsys, kind):
    fields = [(c, "u1") for c in kind]
    voxels = np.zeros((8, 9, 10), dtype=fields)
    path = tmp_path / "colour.nii.gz"
    nib.save(nib.Nifti1Image(voxels, np.eye(4)), path)
    assert main(["predict", "-m", str(model), "-i", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: FLAIR holds {kind} colour "
                                                   "voxels"), err
    assert "grey" in err and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def phantom_model(phantom_dir, tmp_path_factory):
    """A run of the tiny config trained by the command line on the phantom's training scans."""
    run = tmp_path_factory.mktemp("phantom-run") / "run"
    assert main(["train", "-i", str(phantom_dir), "-o", str(run), "--cache",
                 str(run.parent / "cache"), "--exclude", *TEST_SCANS, *TINY_FLAGS,
                 "--epochs", "1", "-q"]) == 0
    return run / "last.pt"


def _transformed(phantom_dir, folder, change):
    image = nib.load(phantom_dir / "01016SACH" / "3DFLAIR.nii.gz")
    data = change(image.get_fdata(dtype=np.float32))
    return save(folder / "01016SACH.nii.gz", data, image.affine)


def test_a_scan_far_from_the_training_intensities_is_named_in_a_warning(phantom_model,
                                                                       phantom_dir, tmp_path,
                                                                       capsys):
    checks = {"same": lambda x: x, "rescaled": lambda x: 1000 * x + 5, "negated": lambda x: -x}
    found = {}
    for name, change in checks.items():
        path = _transformed(phantom_dir, tmp_path / name, change)
        assert main(["predict", "-m", str(phantom_model), "-i", str(path), "-o",
                     str(tmp_path / name / "out")]) == 0
        found[name] = [line for line in _warnings(capsys.readouterr().err, path)
                       if "training scans" in line]
    assert found["same"] == [] and found["rescaled"] == []  # min-max scaling reads it the same
    assert len(found["negated"]) == 1
    assert "its intensities are unlike the training scans'" in found["negated"][0]
    assert found["negated"][0].endswith("the predicted mask cannot be trusted")


def test_one_blob_over_the_head_detects_no_lesion(tmp_path, capsys):
    """A model that marks everything bright as one component: under the any-overlap rule it
    found every lesion and made one false positive; under the MSSEG-2016 rule it found none."""
    shape = (24, 24, 24)
    affine = oriented_affine("RAS", shape=shape)
    truth = np.zeros(shape, np.uint8)
    for corner in ((3, 3, 3), (15, 4, 6), (6, 16, 14), (16, 16, 16)):
        truth[tuple(slice(c, c + 3) for c in corner)] = 1
    blob = np.zeros(shape, np.uint8)
    blob[1:23, 1:23, 1:23] = 1
    flair = np.random.default_rng(0).uniform(100, 200, shape).astype(np.float32)
    save(tmp_path / "data" / "01016SACH" / "3DFLAIR.nii.gz", flair, affine)
    save(tmp_path / "data" / "01016SACH" / "Consensus.nii.gz", truth, affine)
    save(tmp_path / "pred" / "01016SACH_mask.nii.gz", blob, affine)
    assert main(["evaluate", "-p", str(tmp_path / "pred"), "-t", str(tmp_path / "data")]) == 0
    with open(tmp_path / "pred" / "per_scan.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["dice"]) == pytest.approx(2 * 108 / (108 + 22**3), abs=1e-6)
    assert (int(row["true_lesions"]), int(row["predicted_lesions"]),
            int(row["detected_lesions"]), int(row["false_lesions"])) == (4, 1, 0, 1)
    assert (float(row["lesion_tpr"]), float(row["lesion_fpr"]), float(row["lesion_f1"])) == (
        0.0, 1.0, 0.0)


def test_a_volume_with_trailing_axes_of_one_voxel_is_a_scan(model, tmp_path, capsys):
    flair, _ = blob_scan()
    affine = oriented_affine("LPS", shape=flair.shape)
    path = save(tmp_path / "scan.nii.gz", flair[..., None, None], affine)
    assert nib.load(path).shape == (*flair.shape, 1, 1)
    assert main(["predict", "-m", str(model), "-i", str(path), "-o", str(tmp_path / "out")]) == 0
    mask = nib.load(tmp_path / "out" / "scan_mask.nii.gz")
    assert mask.shape == flair.shape and np.allclose(mask.affine, affine)


def test_a_spreadsheets_csv_with_a_byte_order_mark_is_read(model, tmp_path):
    flair, _ = blob_scan()
    save(tmp_path / "a.nii.gz", flair, oriented_affine("LPS", shape=flair.shape))
    (tmp_path / "scans.csv").write_text("patient_id,flair\na,a.nii.gz\n", encoding="utf-8-sig")
    assert main(["predict", "-m", str(model), "-i", str(tmp_path / "scans.csv"), "-o",
                 str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a_mask.nii.gz").is_file()

"""Bad input: every case gives a clear error naming the file and the problem, and leaves
nothing half-written in the cache or the output folder."""

import gzip

import nibabel as nib
import numpy as np
import pytest
from msseg.data.cache import fill_cache
from msseg.data.preprocess import PipelineConfig
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import ScanError, load_scan, save_nifti
from msseg.io.orientation import Geometry
from msseg_helpers import blob_scan, oriented_affine, save


def _good(folder, name="GOOD"):
    flair, mask = blob_scan()
    affine = oriented_affine("LPS", shape=flair.shape)
    return ScanRecord(name, None, save(folder / name / "flair.nii.gz", flair, affine),
                      save(folder / name / "mask.nii.gz", mask, affine))


def _missing_flair(record):
    record.flair.unlink()
    return record.flair, FileNotFoundError, "FLAIR file not found"


def _missing_mask(record):
    record.mask.unlink()
    return record.mask, FileNotFoundError, "mask file not found"


def _four_d(record):
    flair = nib.load(record.flair)
    data = np.stack([flair.get_fdata()] * 2, axis=-1)
    save(record.flair, data, flair.affine)
    return record.flair, ScanError, "has shape (12, 14, 10, 2) (4-D); expected one 3-D volume"


def _shape_mismatch(record):
    mask = np.asarray(nib.load(record.mask).dataobj)
    save(record.mask, mask[:-1], nib.load(record.mask).affine)
    return record.mask, ScanError, "mask grid (11, 14, 10) differs from the FLAIR grid (12, 14, 10)"


def _affine_mismatch(record):
    mask = nib.load(record.mask)
    affine = mask.affine.copy()
    affine[0, 3] += 2.0
    save(record.mask, np.asarray(mask.dataobj), affine)
    return record.mask, ScanError, "mask affine differs from the FLAIR's"


def _nan(record):
    flair = nib.load(record.flair)
    data = flair.get_fdata(dtype=np.float32)
    data[3, 4, 5] = np.nan
    save(record.flair, data, flair.affine)
    return record.flair, ScanError, "1 voxels are NaN or infinite (first at index (3, 4, 5))"


def _empty_mask(record):
    mask = nib.load(record.mask)
    save(record.mask, np.zeros(mask.shape, np.uint8), mask.affine)
    return record.mask, ScanError, "mask is empty"


def _non_binary_mask(record):
    mask = nib.load(record.mask)
    save(record.mask, np.asarray(mask.dataobj) * np.uint8(255), mask.affine)
    return record.mask, ScanError, "mask is not binary"


def _garbage(record):
    record.flair.write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    return record.flair, ScanError, "cannot read FLAIR as NIfTI"


def _truncated(record):
    data = record.flair.read_bytes()
    record.flair.write_bytes(data[: len(data) // 2])  # header intact, voxel data cut short
    return record.flair, ScanError, "voxel data unreadable"


CASES = [_missing_flair, _missing_mask, _four_d, _shape_mismatch, _affine_mismatch, _nan,
         _empty_mask, _non_binary_mask, _garbage, _truncated]


@pytest.mark.parametrize("breaker", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_bad_input_is_named_and_nothing_half_written(breaker, tmp_path):
    good = _good(tmp_path / "data", "A_GOOD")
    bad = _good(tmp_path / "data", "B_BAD")
    path, error, problem = breaker(bad)
    with pytest.raises(error) as info:
        load_scan(bad)
    assert str(path) in str(info.value) and problem in str(info.value)

    cache = tmp_path / "cache"
    with pytest.raises(error, match=problem.replace("(", r"\(").replace(")", r"\)")):
        fill_cache([good, bad], PipelineConfig(size=16), cache, progress=False)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("A_GOOD-")
    assert sorted(p.name for p in (cache / entries[0]).iterdir()) == [
        "flair.npy", "mask.npy", "meta.json"]


def test_empty_mask_allowed_on_request(tmp_path):
    record = _good(tmp_path)
    _empty_mask(record)
    assert load_scan(record, allow_empty_mask=True).mask.sum() == 0


def test_constant_flair_is_rejected(tmp_path):
    record = _good(tmp_path)
    save(record.flair, np.full((12, 14, 10), 7.0, np.float32), nib.load(record.flair).affine)
    with pytest.raises(ScanError, match="FLAIR is constant"):
        load_scan(record)


def test_singular_header_is_rejected(tmp_path):
    path = tmp_path / "flair.nii"
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    image.header.set_zooms((1.0, 0.0, 1.0))
    image.set_qform(None, code=0)
    image.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
    nib.save(image, path)
    with pytest.raises(ScanError, match=f"{path}: FLAIR header is unusable: .*singular"):
        load_scan(ScanRecord("X", None, path, None))


def test_load_scan_values_and_types(tmp_path):
    record = _good(tmp_path)
    scan = load_scan(record)
    flair, mask = blob_scan()
    assert scan.flair.dtype == np.float32 and scan.mask.dtype == np.uint8
    np.testing.assert_array_equal(scan.flair, flair)
    np.testing.assert_array_equal(scan.mask, mask)
    assert "".join(nib.aff2axcodes(scan.geometry.affine)) == "LPS"
    assert (scan.geometry.qform_code, scan.geometry.sform_code) == (1, 1)


def test_save_is_atomic_when_the_writer_fails(tmp_path, monkeypatch):
    geometry = Geometry.from_affine((3, 3, 3), np.eye(4))
    target = tmp_path / "out" / "mask.nii.gz"
    save_nifti(np.ones((3, 3, 3), np.uint8), geometry, target)
    before = target.read_bytes()

    def broken_save(image, path):
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(np.zeros((3, 3, 3), np.uint8), geometry, target)
    assert [p.name for p in target.parent.iterdir()] == ["mask.nii.gz"]
    assert target.read_bytes() == before


def test_save_keeps_dtype_and_header_transforms(tmp_path):
    affine = oriented_affine("SPL", voxel_mm=(0.7, 0.7, 0.7), shape=(3, 4, 5))
    geometry = Geometry((3, 4, 5), affine, affine, 1, affine, 2)
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    written = nib.load(save_nifti(data, geometry, tmp_path / "x.nii.gz"))
    assert written.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(written.dataobj), data)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 2)
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    with pytest.raises(ValueError, match=r"volume shape \(3, 4\) does not match"):
        save_nifti(np.zeros((3, 4)), geometry, tmp_path / "y.nii.gz")

"""Bad input: every case gives a clear error naming the file and the problem, and leaves
nothing half-written in the cache or the output folder."""

import gzip
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from msseg.config import recipe_named
from msseg.data.cache import fill_cache
from msseg.data.preprocess import PipelineConfig
from msseg.io.discovery import ScanRecord
from msseg.io.header_checks import OBLIQUE_WARN_DEGREES, obliquity_degrees
from msseg.io.nifti import (
    ScanError,
    ScanWarning,
    load_scan,
    save_nifti,
    warn_if_oblique,
)
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
        fill_cache([good, bad], PipelineConfig(volume_size=16), cache, progress=False)
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


def _bomb(path, shape, dtype=np.uint8, data_bytes=16 * 2**20):
    """A .nii.gz whose header declares `shape` and whose gzip stream holds `data_bytes` of zeros
    (a few kB on disk: gzip shrinks zeros about 1000-fold)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(header.binaryblock + b"\0" * 4)
        zeros = b"\0" * 2**20
        for _ in range(data_bytes // len(zeros)):
            handle.write(zeros)
    return path


@pytest.mark.parametrize("shape", [(2000, 2000, 2000), (1200, 1200, 1200)])
def test_a_header_claiming_a_huge_volume_is_refused_before_decompressing(tmp_path, shape):
    path = _bomb(tmp_path / "bomb.nii.gz", shape)
    assert path.stat().st_size < 2**20
    voxels = int(np.prod(shape))
    tracemalloc.start()
    try:
        with pytest.raises(ScanError) as caught:
            load_scan(ScanRecord("X", None, path, None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # nothing of the declared voxels was read, let alone decompressed
    assert str(caught.value) == (
        f"{path}: FLAIR header declares {'x'.join(map(str, shape))} = {voxels:,} voxels "
        f"({voxels / 2**30:.1f} GiB of uint8), more than the limit of 268,435,456: a damaged "
        f"header, or not a head scan. If the scan is real, raise the limit, e.g. "
        f"MSSEG_MAX_VOXELS={voxels} msseg ...")


def test_the_size_limit_is_the_users_to_change(tmp_path, monkeypatch):
    record = _good(tmp_path)
    monkeypatch.setenv("MSSEG_MAX_VOXELS", "1000")
    with pytest.raises(ScanError, match=r"= 1,680 voxels .* more than the limit of 1,000"):
        load_scan(record)
    monkeypatch.setenv("MSSEG_MAX_VOXELS", "1680")
    assert load_scan(record).flair.size == 1680
    monkeypatch.setenv("MSSEG_MAX_VOXELS", "lots")
    with pytest.raises(ValueError, match="MSSEG_MAX_VOXELS='lots': expected a positive whole"):
        load_scan(record)


@pytest.mark.parametrize(("shape", "problem"), [((64, 64, 1), "1 voxel(s) along array axis 2"),
                                                ((2, 2, 2), "2 voxel(s) along array axis 0")])
def test_a_slice_or_a_few_voxels_are_not_a_scan(tmp_path, shape, problem):
    flair = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    path = save(tmp_path / "thin.nii.gz", flair, np.eye(4))
    with pytest.raises(ScanError) as caught:
        load_scan(ScanRecord("X", None, path, None))
    assert f"{path}: FLAIR has shape {shape}, {problem}; expected a 3-D scan with at least 4 " \
           "along every axis" in str(caught.value)


def test_complex_voxels_are_refused_not_silently_made_real(tmp_path):
    flair = (np.random.default_rng(0).uniform(1, 2, (8, 8, 8)) * (1 + 1j)).astype(np.complex64)
    path = save(tmp_path / "complex.nii.gz", flair, np.eye(4))
    with pytest.raises(ScanError, match=r"complex.nii.gz: FLAIR holds complex voxels \(complex64"
                                        r"\); expected real intensities"):
        load_scan(ScanRecord("X", None, path, None))


def _rotated(degrees):
    angle = np.radians(degrees)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return affine


def _sheared(degrees):
    affine = np.eye(4)
    affine[0, 1] = np.tan(np.radians(degrees))  # axis 1 leans towards axis 0
    return affine


@pytest.mark.parametrize(("affine", "expected"), [
    (_rotated(10), []),
    (_rotated(30), []),  # oblique: said where slabs are cut (warn_if_oblique), not on loading
    (_sheared(10), ["its voxel axes are sheared (80.0 degrees apart instead of 90)"]),
])
def test_sheared_grids_are_named_in_a_warning_when_loaded(tmp_path, affine, expected):
    flair, _ = blob_scan()
    path = save(tmp_path / "scan.nii.gz", flair, affine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_scan(ScanRecord("X", None, path, None))
    found = [str(w.message) for w in caught if issubclass(w.category, ScanWarning)]
    assert len(found) == len(expected)
    for message, text in zip(found, expected):
        assert message.startswith(f"{path}: {text}")


@pytest.mark.parametrize(("degrees", "recipe"), [(16, "paper"), (26, "paper"), (26, "spacing")])
def test_an_oblique_scan_is_warned_about_in_its_recipes_words_above_the_stated_threshold(
        degrees, recipe):
    slabs = recipe_named(recipe).slabs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_oblique(Path("scan.nii.gz"), _rotated(degrees), slabs=slabs, recipe=recipe)
    texts = [str(w.message) for w in caught if issubclass(w.category, ScanWarning)]
    if degrees <= OBLIQUE_WARN_DEGREES:
        assert texts == []
        return
    (text,) = texts
    assert text.startswith(f"scan.nii.gz: its voxel axes are up to {degrees} degrees off the "
                           f"scanner axes (msseg warns above 20); recipe {recipe} cuts its "
                           f"{slabs} along the closest axis without reslicing")
    assert ("sagittal" in text) == (recipe == "paper")
    assert obliquity_degrees(_rotated(degrees)) == pytest.approx(degrees)

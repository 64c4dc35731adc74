"""Finding scans: MSSEG layout, {id} patterns, CSV."""

from pathlib import Path

import pytest
from msseg.io.discovery import (
    MSSEG_PATIENTS,
    discover_scans,
    find_msseg_scans,
    find_pattern_scans,
    msseg_centre,
    read_scan_csv,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "msseg"
    for patient in ("08002CHJE", "01016SACH", "07001MOEL"):
        _touch(root / patient / "3DFLAIR.nii.gz")
        _touch(root / patient / "Consensus.nii.gz")
    (root / ".cache").mkdir()
    _touch(root / "phantom.json")
    return root


def test_msseg_layout_sorted_with_centres(layout):
    records = find_msseg_scans(layout)
    assert [r.patient_id for r in records] == ["01016SACH", "07001MOEL", "08002CHJE"]
    assert [r.centre for r in records] == ["01", "07", "08"]
    assert records[1].flair == layout / "07001MOEL" / "3DFLAIR.nii.gz"
    assert records[1].mask == layout / "07001MOEL" / "Consensus.nii.gz"


def test_msseg_centres_of_the_real_patients():
    assert [msseg_centre(p) for p in MSSEG_PATIENTS] == ["01"] * 5 + ["07"] * 5 + ["08"] * 5


def test_missing_mask_is_an_error_unless_predicting(layout):
    (layout / "07001MOEL" / "Consensus.nii.gz").unlink()
    message = r"07001MOEL/Consensus\.nii\.gz: lesion mask missing"
    with pytest.raises(FileNotFoundError, match=message):
        find_msseg_scans(layout)
    records = find_msseg_scans(layout, require_masks=False)
    assert [r.mask is None for r in records] == [False, True, False]


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda root: (root / "01016SACH" / "3DFLAIR.nii.gz").unlink(), FileNotFoundError,
         "01016SACH/3DFLAIR.nii.gz: FLAIR file missing for patient 01016SACH"),
        (lambda root: _touch(root / "SUBJ1" / "3DFLAIR.nii.gz"), ValueError,
         "two-digit centre number"),
    ],
)
def test_msseg_layout_errors(layout, setup, error, message):
    setup(layout)
    with pytest.raises(error, match=message):
        find_msseg_scans(layout)


def test_msseg_root_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="MSSEG data folder not found"):
        find_msseg_scans(tmp_path / "nope")
    with pytest.raises(ValueError, match="no patient folders found"):
        find_msseg_scans(tmp_path)


def test_pattern_layout_pairs_by_id(tmp_path):
    for subject in ("s2", "s1"):
        _touch(tmp_path / subject / f"{subject}_flair.nii.gz")
        _touch(tmp_path / "labels" / f"{subject}.nii.gz")
    _touch(tmp_path / "s3" / "other.nii.gz")
    records = find_pattern_scans(f"{tmp_path}/{{id}}/*_flair.nii.gz",
                                 mask_pattern=f"{tmp_path}/labels/{{id}}.nii.gz")
    assert [(r.patient_id, r.centre) for r in records] == [("s1", None), ("s2", None)]
    assert records[0].flair == tmp_path / "s1" / "s1_flair.nii.gz"
    assert records[0].mask == tmp_path / "labels" / "s1.nii.gz"


def test_pattern_layout_errors(tmp_path):
    _touch(tmp_path / "a" / "x_flair.nii.gz")
    _touch(tmp_path / "a" / "y_flair.nii.gz")
    with pytest.raises(ValueError, match=r"must contain \{id\} exactly once"):
        find_pattern_scans(f"{tmp_path}/a/flair.nii.gz")
    with pytest.raises(ValueError, match="no FLAIR file matches"):
        find_pattern_scans(f"{tmp_path}/{{id}}/t1.nii.gz")
    with pytest.raises(ValueError, match="matches two FLAIR files for id 'a'"):
        find_pattern_scans(f"{tmp_path}/{{id}}/*_flair.nii.gz")
    with pytest.raises(FileNotFoundError, match="lesion mask missing"):
        find_pattern_scans(f"{tmp_path}/{{id}}/x_flair.nii.gz",
                           mask_pattern=f"{tmp_path}/{{id}}/mask.nii.gz")


def test_csv_layout_resolves_relative_paths(tmp_path):
    _touch(tmp_path / "img" / "b.nii.gz")
    _touch(tmp_path / "img" / "a.nii.gz")
    _touch(tmp_path / "img" / "a_mask.nii.gz")
    table = tmp_path / "scans.csv"
    table.write_text("patient_id,flair,mask,centre\nB,img/b.nii.gz,,\nA,img/a.nii.gz,"
                     "img/a_mask.nii.gz,london\n")
    records = read_scan_csv(table, require_masks=False)
    assert [(r.patient_id, r.centre, r.mask) for r in records] == [
        ("A", "london", tmp_path / "img" / "a_mask.nii.gz"), ("B", None, None)]
    with pytest.raises(ValueError, match="line 2: empty mask for 'B'"):
        read_scan_csv(table)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("id,flair\nA,a.nii\n", ValueError, r"missing \['mask', 'patient_id'\]"),
        ("patient_id,flair,mask\nA,a.nii,m.nii\nA,a.nii,m.nii\n", ValueError,
         "line 3: patient_id 'A' appears twice"),
        ("patient_id,flair,mask\nA,missing.nii,m.nii\n", FileNotFoundError,
         r"missing.nii: FLAIR file listed in .*scans.csv \(line 2\) not found"),
        ("patient_id,flair,mask\nA,a.nii,nomask.nii\n", FileNotFoundError,
         "nomask.nii: lesion mask missing"),
        ("patient_id,flair,mask\n,a.nii,m.nii\n", ValueError, "line 2: empty patient_id"),
    ],
)
def test_csv_errors(tmp_path, text, error, message):
    _touch(tmp_path / "a.nii")
    _touch(tmp_path / "m.nii")
    (tmp_path / "scans.csv").write_text(text)
    with pytest.raises(error, match=message):
        read_scan_csv(tmp_path / "scans.csv")


def test_discover_picks_the_layout(layout, tmp_path):
    assert len(discover_scans(layout)) == 3
    table = tmp_path / "list.CSV"
    table.write_text(f"patient_id,flair,mask\nX,{layout}/01016SACH/3DFLAIR.nii.gz,"
                     f"{layout}/01016SACH/Consensus.nii.gz\n")
    assert [r.patient_id for r in discover_scans(table)] == ["X"]
    pattern = f"{layout}/{{id}}/3DFLAIR.nii.gz"
    records = discover_scans(pattern, mask_pattern=f"{layout}/{{id}}/Consensus.nii.gz")
    assert [r.patient_id for r in records] == ["01016SACH", "07001MOEL", "08002CHJE"]
    assert [r.mask for r in discover_scans(pattern, require_masks=False)] == [None] * 3
    with pytest.raises(ValueError, match="needs a mask pattern"):
        discover_scans(pattern)

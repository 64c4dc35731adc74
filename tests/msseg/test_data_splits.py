"""Which scans train, validate and test: a run's split and the paper's cross-validation rounds."""

import pytest
from msseg.data.splits import cv_rounds, split_scans
from msseg.io.discovery import MSSEG_PATIENTS, ScanRecord


def _records(ids):
    return [ScanRecord(i, i[:2], f"{i}/3DFLAIR.nii.gz", f"{i}/Consensus.nii.gz") for i in ids]


def test_split_validates_on_the_last_remaining_scan():
    records = [ScanRecord(i, i[:2], f"{i}.nii.gz", f"{i}_m.nii.gz")
               for i in ("07001MOEL", "01016SACH", "08037ROGU", "08002CHJE")]
    training, validation = split_scans(records)
    assert [r.patient_id for r in validation] == ["08037ROGU"]
    assert [r.patient_id for r in training] == ["01016SACH", "07001MOEL", "08002CHJE"]
    training, validation = split_scans(records, val=["01016SACH"], exclude=["08037ROGU"])
    assert [r.patient_id for r in training] == ["07001MOEL", "08002CHJE"]
    assert [r.patient_id for r in validation] == ["01016SACH"]
    with pytest.raises(ValueError, match=r"unknown patient id\(s\) \['99999XXXX'\]"):
        split_scans(records, exclude=["99999XXXX"])
    with pytest.raises(ValueError, match="at least one training and one validation scan"):
        split_scans(records[:2], exclude=["07001MOEL"])


def test_rounds_follow_the_papers_protocol():
    rounds = cv_rounds(_records(reversed(MSSEG_PATIENTS)))
    ids = [[r.patient_id for r in cv.test] for cv in rounds]
    assert ids == [["01016SACH", "07001MOEL", "08002CHJE"],
                   ["01038PAGU", "07003SATH", "08027SYBR"],
                   ["01039VITE", "07010NABO", "08029IVDI"],
                   ["01040VANE", "07040DORE", "08031SEVE"],
                   ["01042GULE", "07043SEME", "08037ROGU"]]
    assert [cv.val.patient_id for cv in rounds] == ["08037ROGU"] * 4 + ["08031SEVE"]
    for cv in rounds:
        assert len(cv.train) == 11 and [r.patient_id for r in cv.train] == sorted(
            r.patient_id for r in cv.train)
        used = {r.patient_id for r in (*cv.test, *cv.train, cv.val)}
        assert used == set(MSSEG_PATIENTS)  # 3 + 11 + 1, no scan twice
    assert sorted(i for test in ids for i in test) == sorted(MSSEG_PATIENTS)


def test_rounds_with_unequal_centres_and_refusals():
    rounds = cv_rounds(_records(["01A", "01B", "01C", "07A", "07B"]))
    assert [[r.patient_id for r in cv.test] for cv in rounds] == [["01A", "07A"],
                                                                   ["01B", "07B"], ["01C"]]
    assert [cv.val.patient_id for cv in rounds] == ["07B", "07A", "07B"]
    with pytest.raises(ValueError, match=r"needs a centre and a mask for every scan.*'x'"):
        cv_rounds([ScanRecord("x", None, "x.nii", "m.nii")])
    with pytest.raises(ValueError, match="round 1 leaves 1 scan"):
        cv_rounds(_records(["01A", "07A", "07B"]))

"""Intensities a model cannot read: warned about, naming the file, before a mask is trusted."""

import warnings

import numpy as np
import pytest
from msseg.config import PipelineConfig
from msseg.data.intensity_checks import intensity_problems, warn_if_degenerate
from msseg.data.preprocess import preprocess_scan
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import ScanWarning, load_scan
from msseg_helpers import blob_scan, save

SMALL = PipelineConfig(volume_size=16)


def _scan(tmp_path, flair):
    path = save(tmp_path / "scan.nii.gz", flair.astype(np.float32), np.eye(4))
    return load_scan(ScanRecord("scan", None, path, None))


def _problems(scan):
    return intensity_problems(scan.flair, preprocess_scan(scan, SMALL).flair)


def test_a_flair_has_no_problem(tmp_path):
    scan = _scan(tmp_path, blob_scan()[0])
    assert np.subtract(*np.percentile(preprocess_scan(scan, SMALL).flair, [99, 1])) > 1.0
    assert _problems(scan) == []


def test_one_hot_voxel_squeezing_the_scaled_scan_is_named(tmp_path):
    flair = blob_scan()[0]
    flair[3, 4, 5] = 1e38
    scan = _scan(tmp_path, flair)
    span = float(np.subtract(*np.percentile(preprocess_scan(scan, SMALL).flair, [99, 1])))
    assert span < 0.05  # the blob scan spans 1.0 or more without its hot voxel
    (problem,) = _problems(scan)
    assert problem.startswith(f"after scaling, 98% of its voxels lie within {span:.3g} of each "
                              "other (in a FLAIR they span about 1.3 of [-1, 1]): 99.8% of its "
                              "voxels lie in [")
    assert "while the range is [100, 1e+38]: a few extreme voxels squeeze the scan; clip them" \
           in problem


def test_a_mask_given_as_flair_is_named(tmp_path):
    scan = _scan(tmp_path, blob_scan()[1])
    assert _problems(scan) == ["it holds only two values (0 and 1), like a mask, not a FLAIR; "
                               "check that the FLAIR file was given"]


def test_the_warning_names_the_file_once(tmp_path):
    scan = _scan(tmp_path, blob_scan()[1])
    cube = preprocess_scan(scan, SMALL).flair
    with pytest.warns(ScanWarning) as caught:
        warnings.simplefilter("default")
        warn_if_degenerate(scan, cube)
        warn_if_degenerate(scan, cube)  # the same scan again (cv scores two recompositions)
    assert len(caught) == 1
    assert str(caught[0].message) == (f"{scan.record.flair}: it holds only two values (0 and 1),"
                                      " like a mask, not a FLAIR; check that the FLAIR file was "
                                      "given; the predicted mask cannot be trusted")


def test_a_scan_far_from_every_training_scan_is_a_problem(phantom_dir):
    """On the phantom (16³ cubes): held-out scans lie within 0.05 of the nearest training scan's
    profile, their negated versions about 1 away; a linear change of units changes nothing."""
    from msseg.data.intensity_checks import (
        FAR_FROM_TRAINING,
        PROFILE_PERCENTILES,
        intensity_profile,
        profile_distance,
    )
    from msseg.io.discovery import find_msseg_scans

    records = find_msseg_scans(phantom_dir)
    cubes = {r.patient_id: preprocess_scan(load_scan(r), SMALL).flair for r in records}
    training = [intensity_profile(cubes[r.patient_id]) for r in records[3:]]
    assert len(training[0]) == len(PROFILE_PERCENTILES) and -1 <= min(training[0]) < 0
    for record in records[:3]:
        scan = load_scan(record)
        assert profile_distance(intensity_profile(cubes[record.patient_id]), training) < 0.05
        assert intensity_problems(scan.flair, cubes[record.patient_id], training=training) == []
        rescaled = scan.flair * 1000 + 5
        cube = preprocess_scan(type(scan)(scan.record, rescaled, None, scan.geometry), SMALL)
        assert profile_distance(intensity_profile(cube.flair), training) < 0.05
        negated = preprocess_scan(type(scan)(scan.record, -scan.flair, None, scan.geometry),
                                  SMALL).flair
        assert profile_distance(intensity_profile(negated), training) > 0.8 > FAR_FROM_TRAINING
        (problem,) = intensity_problems(-scan.flair, negated, training=training)
        assert problem.startswith("its intensities are unlike the training scans'")
    with pytest.raises(ValueError, match="need training profiles of 9 percentiles"):
        profile_distance([0.0] * 9, [[0.0] * 8])

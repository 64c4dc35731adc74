"""Fixtures of the msseg tests (the example is installed: ``import msseg``)."""

import pytest
from data_helpers import blob_scan, oriented_affine, save


@pytest.fixture
def msseg_root(tmp_path):
    """A tiny MSSEG-layout folder with two valid patients (RAS and LPS storage)."""
    root = tmp_path / "msseg"
    for index, (patient, codes) in enumerate((("01016SACH", "RAS"), ("07001MOEL", "LPS"))):
        flair, mask = blob_scan(seed=index)
        affine = oriented_affine(codes, shape=flair.shape)
        save(root / patient / "3DFLAIR.nii.gz", flair, affine)
        save(root / patient / "Consensus.nii.gz", mask, affine)
    return root


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """The 15-patient phantom at scale 0.2, written once per test session."""
    from msseg.phantom.generate import write_phantom

    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, scale=0.2, seed=0, progress=False)
    return out

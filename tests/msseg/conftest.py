"""What every msseg test shares: one torch thread, no random-encoder warning, small datasets.

The example is installed (``pip install -e ./examples/msseg``, the Makefile does it), so tests
``import msseg``; builders they call directly are in msseg_helpers.py.
"""

import logging

import pytest
import torch
from msseg_helpers import blob_scan, oriented_affine, save

_HERE = __file__.rsplit("/", 1)[0]


def pytest_collection_modifyitems(items):
    """Tests build encoders from random weights on purpose: the warning that says so is noise
    here (tests that check it use pytest.warns, which still sees it)."""
    for item in items:
        if str(item.path).startswith(_HERE):
            item.add_marker(pytest.mark.filterwarnings(
                "ignore::msseg.model.encoder.RandomEncoderWarning"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Torch on one thread: tiny convolutions on oversubscribed cores (pytest-xdist) are many
    times slower with OpenMP thread teams."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture
def msseg_log(caplog):
    """caplog that sees the "msseg" loggers at INFO, even after `main` stopped them from
    propagating to the root logger."""
    logger = logging.getLogger("msseg")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)

"""`msseg predict` on the phantom and on the real CC-BY scans writes, per scan, the mask, the
lesion map and the lesion table, then summary.csv and report.html; the report opens in headless
Chromium with no console message and no request, every picture drawn, and its screenshot shows
them.

The network is a stand-in ("the brightest 1 % of each network input is lesion"), so that lesions
are found on every scan in a second: what is tested is the files and the page, not a model.
The phantom's test takes 5-20 s, the real scans' (slow) 15-45 s; both are skipped without
Chromium (`chromium.find_chromium`).
"""

import io

import nibabel as nib
import numpy as np
import pytest
from chromium import Browser, find_chromium
from matplotlib.image import imread
from msseg.commands.main import main
from msseg.evaluation.lesion_table import read_lesion_table, read_summary
from msseg.training.engine import train
from msseg_helpers import REAL_SCANS, tiny_config, tiny_datasets

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on this machine ($CHROMIUM or chromium on the PATH): the reports are "
           "not opened in a browser here; `apt-get install chromium` (the Makefile's test "
           "target does it as root) runs these tests")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return train(tiny_config(tmp_path_factory.mktemp("run"), epochs=1), *tiny_datasets()).last_path


def _brightest(slabs):
    cut = slabs.flatten(1).quantile(0.99, dim=1)[:, None, None, None]
    return (slabs >= cut).float()


@pytest.fixture
def bright(monkeypatch):
    """The stand-in network: probability 1 in the brightest 1 % of each input, else 0."""
    monkeypatch.setattr("msseg.inference.predictor.model_predictor",
                        lambda model, **kwargs: _brightest)


def _inputs(folder, sources):
    folder.mkdir()
    for name, source in sources.items():
        (folder / f"{name}.nii.gz").symlink_to(source)
    return folder


def _check_outputs(out, names):
    """Per scan: a mask, a lesion map whose lesions are the table's, on the FLAIR's grid; the
    number of pictures the report must have (4 for each of a scan's 3 largest lesions)."""
    rows = {row.patient_id: row for row in read_summary((out / "summary.csv").read_text())}
    assert sorted(rows) == sorted(names)
    for name in names:
        mask = nib.load(out / f"{name}_mask.nii.gz")
        labels = np.asarray(nib.load(out / f"{name}_lesions.nii.gz").dataobj)
        lesions = read_lesion_table((out / f"{name}_lesions.csv").read_text())
        assert labels.shape == mask.shape == rows[name].shape
        assert len(lesions) == labels.max() == rows[name].lesions > 0
        assert [lesion.voxels for lesion in lesions] == np.bincount(labels.ravel())[1:].tolist()
        assert sum(lesion.volume_ml for lesion in lesions) == pytest.approx(
            rows[name].total_volume_ml, abs=1e-3)
        assert np.all(np.asarray(mask.dataobj)[labels > 0] == 1)
    return sum(4 * min(3, row.lesions) for row in rows.values())


def _open(report, profile, screenshot):
    """Open the report; check the page; keep the screenshot; return the number of pictures."""
    with Browser.start(profile) as browser:
        page = browser.open(report)
        assert page.messages == []
        assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, "
                               "i.naturalWidth > 50, i.naturalHeight > 50])")
        assert images and all(all(state) for state in images)
        png = page.screenshot()
        assert page.messages == []
    screenshot.write_bytes(png)
    pixels = imread(io.BytesIO(png))[..., :3]
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
    return len(images)


def test_predict_on_the_phantom_writes_every_output_and_a_report_chromium_opens(
        phantom_dir, checkpoint, bright, tmp_path):
    names = ["01016SACH", "07001MOEL", "08002CHJE"]
    inputs = _inputs(tmp_path / "in", {n: phantom_dir / n / "3DFLAIR.nii.gz" for n in names})
    out = tmp_path / "pred"
    assert main(["predict", "-m", str(checkpoint), "-i", str(inputs), "-o", str(out),
                 "--device", "cpu", "--threads", "1"]) == 0
    pictures = _check_outputs(out, names)
    assert _open(out / "report.html", tmp_path / "profile", tmp_path / "phantom.png") == pictures


@pytest.mark.slow  # 20-30 s: two real scans of 7.2 and 3.7 million voxels
def test_predict_on_the_real_scans_writes_every_output_and_a_report_chromium_opens(
        checkpoint, bright, tmp_path):
    sources = {"patient07": REAL_SCANS / "patient07" / "FLAIR.nii.gz",
               "patient01": REAL_SCANS / "raw" / "patient01_study1_FLAIR.nii.gz"}
    out = tmp_path / "pred"
    assert main(["predict", "-m", str(checkpoint), "-i", str(_inputs(tmp_path / "in", sources)),
                 "-o", str(out), "--device", "cpu", "--threads", "1"]) == 0
    pictures = _check_outputs(out, list(sources))
    assert _open(out / "report.html", tmp_path / "profile", tmp_path / "real.png") == pictures

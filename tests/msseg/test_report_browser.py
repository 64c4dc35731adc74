"""The report in a real browser: headless Chromium loads it from disk with no console message, no
request beyond the file itself and its inline pictures, shows every picture, sorts a table on
a click, and its screenshot is not blank.

Skipped where no Chromium is installed (`chromium.find_chromium`; the Makefile's test target
installs Debian's `chromium` when it runs as root). About 3 s.
"""

import io

import numpy as np
import pytest
from chromium import Browser, find_chromium
from msseg.evaluation.lesion_table import ScanSummary, analyse_lesions
from msseg.io.orientation import Geometry
from msseg.report.html import write_html
from msseg.report.pages import predict_page, scan_section

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on this machine ($CHROMIUM or chromium on the PATH): the report is not "
           "opened in a browser here; `apt-get install chromium` (the Makefile's test target "
           "does it as root) runs these tests")


def _scan(seed: int):
    """A synthetic head (an ellipsoid) on an oblique anisotropic grid, with three lesions."""
    rng = np.random.default_rng(seed)
    shape = (48, 56, 20)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    head = sum(((g - c) / (0.45 * n)) ** 2 for g, c, n in zip(grid, centre, shape)) <= 1
    flair = np.where(head, 300 + 40 * rng.random(shape), 0).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    for (x, y, z), radius in (((20, 24, 10), 4.0), ((30, 34, 9), 2.5), ((26, 18, 12), 1.5)):
        blob = ((grid[0] - x) ** 2 + (grid[1] - y) ** 2 + ((grid[2] - z) * 3) ** 2) <= radius**2
        mask[blob] = 1
    flair[mask > 0] += 250
    angle = np.radians(12)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                         [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag((1.0, 1.0, 3.0))
    return flair, mask, Geometry.from_affine(shape, affine)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    summaries, sections = [], []
    for seed, patient in enumerate(("scanB", "scanA")):
        flair, mask, geometry = _scan(seed)
        if patient == "scanA":
            mask[24:28, 28:32, 4:6] = 1  # one more lesion: the volumes differ
        probability = mask * np.float32(0.9)
        analysis = analyse_lesions(mask, geometry, probability=probability)
        warnings = ["voxel axes 12 degrees oblique"] if seed == 0 else []
        sections.append(scan_section(patient, flair, geometry, analysis, warnings=warnings))
        summaries.append(ScanSummary.of(patient, f"{patient}.nii.gz", analysis, geometry,
                                        model="best.pt", recipe="spacing", warnings=warnings))
    return write_html(folder / "report.html", predict_page(summaries, sections))


def test_the_report_opens_in_chromium_without_errors_or_network(report, tmp_path):
    with Browser.start(tmp_path / "profile") as browser:
        page = browser.open(report)
        assert page.messages == []
        assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, "
                               "i.naturalWidth, i.naturalHeight])")
        assert len(images) == 2 * 3 * 4  # 2 scans, their 3 largest lesions, 3 planes + a zoom
        assert all(done and width > 50 and height > 50 for done, width, height in images)
        ends = page.evaluate("Array.from(document.querySelectorAll('.end')).map(e => "
                             "e.textContent).join('')")
        assert ends.count("R") == ends.count("L") == 2 * 3 * 3  # axial (2) and coronal
        assert ends.count("A") == ends.count("P") == 2 * 3 * 3  # axial (2) and sagittal
        assert ends.count("S") == ends.count("I") == 2 * 3 * 2  # coronal and sagittal
        screenshot = page.screenshot()
        assert page.messages == []
    (tmp_path / "report.png").write_bytes(screenshot)
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(screenshot))[..., :3]
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # text, tables, greys of the scans: not a blank page
    red = (pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.4) & (pixels[..., 2] < 0.3)
    assert red.sum() > 20  # the outlined lesion is on screen


def test_a_click_on_a_heading_sorts_the_scans_table(report, tmp_path):
    rows = ("Array.from(document.querySelector('table.sortable').tBodies[0].rows)"
            ".map(r => r.cells[0].textContent)")
    with Browser.start(tmp_path / "profile") as browser:
        page = browser.open(report)
        assert page.evaluate(rows) == ["scanB", "scanA"]
        header = "document.querySelector('table.sortable thead th:nth-child(3)')"
        page.evaluate(f"{header}.click()")
        assert page.evaluate(rows) == ["scanB", "scanA"]  # ascending volume
        assert page.evaluate(f"{header}.getAttribute('aria-sort')") == "ascending"
        page.evaluate(f"{header}.click()")
        assert page.evaluate(rows) == ["scanA", "scanB"]
        page.evaluate("document.querySelector('table.sortable thead th').click()")
        assert page.evaluate(rows) == ["scanA", "scanB"]  # by name
        assert page.messages == []

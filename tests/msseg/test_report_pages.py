"""The report's HTML without a browser: escaping, sort keys, nothing outside the page, the
pictures' orientation and colours, and the sections and pages built from plain data."""

import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread
from msseg.evaluation.lesion_table import ScanSummary, analyse_lesions
from msseg.evaluation.metrics import scan_metrics
from msseg.evaluation.reports import summarize
from msseg.io.orientation import Geometry, axes_matrix
from msseg.report.html import Table, document, table_html
from msseg.report.pages import cv_page, lesion_table, predict_page, scan_section, training_parts
from msseg.report.slices import DISPLAY_PIXELS, OTHER, SHOWN, ZOOM_MM, lesion_views


def _geometry(shape, axcodes="RAS", voxel=(1.0, 1.0, 1.0)) -> Geometry:
    affine = np.eye(4)
    affine[:3, :3] = axes_matrix(axcodes, voxel)
    return Geometry.from_affine(shape, affine)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value for name, value in attrs if name in ("src", "href", "action")]


def test_cells_are_escaped_and_carry_sort_keys():
    table = Table(["name", "value", "score"],
                  [["<script>alert(1)</script>", ("0.61 ± 0.05", 0.61), float("nan")]])
    text = table_html(table)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert 'data-sort="0.61">0.61 ± 0.05<' in text and ">n/a<" in text
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        table_html(Table(["a", "b", "c"], [[1, 2]]))


def test_the_page_refers_to_nothing_outside_itself():
    flair = np.random.default_rng(0).random((12, 14, 10)).astype(np.float32) + 1
    mask = np.zeros(flair.shape, np.uint8)
    mask[4:7, 5:8, 3:6] = 1
    geometry = _geometry(flair.shape, "LPS", (0.9, 0.9, 2.5))
    analysis = analyse_lesions(mask, geometry, min_lesion_mm3=0)
    page = predict_page([ScanSummary.of("a&b", "a.nii", analysis, geometry, model="m", recipe="r")],
                        [scan_section("a&b", flair, geometry, analysis)])
    parser = _Links()
    parser.feed(page)
    assert parser.urls and all(u.startswith(("data:image/png;base64,", "#")) for u in parser.urls)
    assert "link" not in parser.tags and not re.search(r"url\(|@import|https?:", page)
    assert 'href="#scan-a_b"' in page and 'id="scan-a_b"' in page


def test_the_pictures_follow_the_radiological_convention_whatever_the_storage():
    """A lesion in the patient's right, anterior, superior corner shows at the viewer's left and
    top, for a scan stored RAS and the same scan stored LPS."""
    shape = (20, 20, 20)
    flair = np.ones(shape, np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[14:17, 14:17, 14:17] = 1  # canonical RAS: right, anterior, superior
    for codes in ("RAS", "LPS"):
        geometry = _geometry(shape, codes)
        stored = geometry.from_canonical(mask)
        analysis = analyse_lesions(stored, geometry, min_lesion_mm3=0)
        views = lesion_views(geometry.from_canonical(flair), analysis.labels, geometry, label=1)
        assert [v.plane for v in views] == ["axial", "axial, 48 mm around the lesion",
                                            "coronal", "sagittal"]
        assert [v.ends for v in views] == [("R", "L", "A", "P"), ("R", "L", "A", "P"),
                                           ("R", "L", "S", "I"), ("A", "P", "S", "I")]
        assert [v.slice_index for v in views] == [15, 15, 15, 15]
        for view in views:
            pixels = imread(io.BytesIO(view.png))[..., :3]
            red = np.argwhere(np.all(np.abs(pixels - SHOWN) < 0.02, axis=-1))
            rows, columns = red[:, 0].mean() / view.height, red[:, 1].mean() / view.width
            top = 1 - 15.5 / 20  # superior/anterior is up; right (and anterior) is left
            assert rows == pytest.approx(top, abs=0.06)
            assert columns == pytest.approx(1 - 15.5 / 20, abs=0.06)


def test_pictures_keep_the_voxels_proportions_and_colour_other_lesions():
    shape = (40, 40, 8)
    geometry = _geometry(shape, "RAS", (1.0, 1.0, 5.0))  # 40 x 40 x 40 mm
    mask = np.zeros(shape, np.uint8)
    mask[10:14, 10:14, 3:5] = 1
    mask[30:32, 30:32, 3:5] = 1
    analysis = analyse_lesions(mask, geometry)
    views = lesion_views(np.ones(shape, np.float32), analysis.labels, geometry, label=1)
    per_mm, zoom_per_mm = DISPLAY_PIXELS / 40, DISPLAY_PIXELS / ZOOM_MM
    side = round(40 * zoom_per_mm)  # the zoom shows all 40 mm of this small scan
    assert [(v.width, v.height) for v in views] == [
        (DISPLAY_PIXELS, DISPLAY_PIXELS), (side, side), (DISPLAY_PIXELS, DISPLAY_PIXELS),
        (DISPLAY_PIXELS, DISPLAY_PIXELS)]
    axial = imread(io.BytesIO(views[0].png))[..., :3]
    other = np.all(np.abs(axial - np.array(OTHER)) < 0.02, axis=-1)  # all edge: opaque
    assert other.sum() == pytest.approx(4 * per_mm**2, rel=0.2)  # 2x2 voxels of 1 mm
    zoom = imread(io.BytesIO(views[1].png))[..., :3]
    shown = np.all(np.abs(zoom - np.array(SHOWN)) < 0.02, axis=-1)  # the 4x4 lesion's border
    fill = np.all(np.abs(zoom - 0.5 * np.array(SHOWN)) < 0.02, axis=-1)  # inside, on black
    assert shown.sum() == pytest.approx(12 * zoom_per_mm**2, rel=0.2)  # its 12 edge voxels of 1 mm
    assert fill.sum() == pytest.approx(4 * zoom_per_mm**2, rel=0.2)


def test_a_scan_without_lesions_shows_its_middle_slices():
    geometry = _geometry((10, 10, 10))
    analysis = analyse_lesions(np.zeros((10, 10, 10)), geometry)
    section = scan_section("empty", np.ones((10, 10, 10)), geometry, analysis)
    assert "No lesion found" in section and section.count("<img") == 3  # no zoom
    assert "<table" not in section


def test_the_lesion_table_is_cut_and_says_so():
    geometry = _geometry((30, 30, 30))
    mask = np.zeros((30, 30, 30), np.uint8)
    mask[::3, ::3, ::3] = 1  # 1,000 single-voxel lesions
    analysis = analyse_lesions(mask, geometry, min_lesion_mm3=0)
    table = lesion_table(analysis.lesions, rows=50)
    assert len(table.rows) == 50 and "The 50 largest of 1000 lesions" in table.note


def test_the_cross_validation_page_has_table_2_and_the_papers_numbers():
    truth = np.zeros((8, 8, 8), np.uint8)
    truth[2:5, 2:5, 2:5] = 1
    results = [("01", scan_metrics(truth, truth)), ("07", scan_metrics(truth * 0, truth))]
    methods = Table(["method", "Dice"], [["model", 0.5]])
    page = cv_page(summarize(results), methods, ["<h3>scan</h3>"])
    assert "01 (n=1)" in page and "Overall (n=2)" in page and "0.500 ± 0.500" in page
    assert "0.611 ± 0.052" in page and "0.60 ± 0.10" in page


def test_training_parts_show_the_history_and_the_validation_scores():
    history = [{"epoch": 1, "train_loss": 1.25, "val_loss": 1.5, "val_dice_working": 0.0},
               {"epoch": 2, "train_loss": 0.75, "val_loss": 0.9, "val_dice_working": 0.3125}]
    page = document("t", training_parts(history=history, curves_png=None,
                                        validation={"08037ROGU": 0.4567}, config_text="lr 1e-3"))
    assert ">08037ROGU<" in page and ">0.457<" in page and ">0.3125<" in page
    assert "lr 1e-3" in page

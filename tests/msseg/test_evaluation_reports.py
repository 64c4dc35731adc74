"""Tables of scores: per centre and overall, with the number of scans behind each cell."""

import math

import numpy as np
import pytest
from msseg.evaluation.metrics import ScanMetrics
from msseg.evaluation.reports import UNDEFINED_NOTE, mean_std, summarize


def _result(d, s):
    return ScanMetrics(d, s, 1.0, 0.0, 1.0, 1, 1, 1, 0)


def test_summary_per_centre_and_overall():
    results = [("01", _result(0.6, 0.5)), ("01", _result(0.8, 0.7)),
               ("07", _result(0.4, math.nan)), ("07", _result(0.5, 0.3))]
    table = summarize(results, metrics=("dice", "sensitivity"))
    assert table.columns == ("01", "07", "Overall")
    assert table.cells[("dice", "01")] == pytest.approx((0.7, 0.1, 2))
    assert table.cells[("sensitivity", "07")] == (0.3, 0.0, 1)  # nan left out
    mean, std, n = table.cells[("dice", "Overall")]
    assert (mean, n) == (pytest.approx(0.575), 4)
    assert std == pytest.approx(np.std([0.6, 0.8, 0.4, 0.5]))
    assert table.to_markdown(digits=2).splitlines() == [
        "| Metric | 01 (n=2) | 07 (n=2) | Overall (n=4) |",
        "|---|---|---|---|",
        "| Dice | 0.70 ± 0.10 | 0.45 ± 0.05 | 0.57 ± 0.15 |",
        "| Sensitivity | 0.60 ± 0.10 | 0.30 (n=1) | 0.50 ± 0.16 (n=3) |",
        "",
        UNDEFINED_NOTE,
    ]


def test_one_scan_shows_its_value_not_a_zero_std():
    table = summarize([("01", _result(0.6, 0.5)), ("07", _result(0.4, math.nan))],
                      metrics=("dice", "sensitivity"))
    assert table.to_markdown().splitlines()[2:] == [
        "| Dice | 0.600 | 0.400 | 0.500 ± 0.100 |",
        "| Sensitivity | 0.500 | n/a | 0.500 (n=1) |",
        "",
        UNDEFINED_NOTE,
    ]
    assert mean_std([0.25]) == "0.250" and mean_std([0.2, 0.4]) == "0.300 ± 0.100"


def test_summary_csv():
    table = summarize([("08", _result(0.5, 0.25)), ("08", _result(0.7, 0.75))],
                      metrics=("dice",), ddof=1)
    lines = table.to_csv().splitlines()
    assert lines[0] == "metric,08 mean,08 std,08 n,Overall mean,Overall std,Overall n"
    assert lines[1] == "dice,0.600000,0.141421,2,0.600000,0.141421,2"


def test_no_note_when_every_cell_rests_on_all_its_scans():
    table = summarize([("01", _result(0.6, 0.5)), ("07", _result(0.4, 0.3))],
                      metrics=("dice", "sensitivity"))
    assert table.note() == "" and UNDEFINED_NOTE not in table.to_markdown()

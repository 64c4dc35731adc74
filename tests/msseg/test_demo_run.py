"""The demo end to end (``make demo``): under 10 minutes on a CPU, and the trained model beats
the threshold baseline clearly."""

import re
import time

import pytest
from msseg.commands.main import main


@pytest.mark.slow
def test_demo_beats_the_threshold_baseline_in_under_ten_minutes(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - start < 600
    report = (tmp_path / "results.md").read_text()
    dice = {}
    for line in report.splitlines():
        match = re.match(r"\| (threshold baseline|planar res-u-net, (?:average|middle-8))"
                         r"[^|]* \| ([0-9.]+) ± ", line)
        if match:
            dice[match.group(1)] = float(match.group(2))
    baseline = dice["threshold baseline"]
    assert 0.0 < baseline < 0.1
    for method in ("planar res-u-net, average", "planar res-u-net, middle-8"):
        assert dice[method] > 0.3 and dice[method] > 5 * baseline, (method, dice)
    assert (tmp_path / "round1" / "train" / "curves.png").is_file()
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 3
    assert (tmp_path / "table.md").read_text().startswith("| Metric | 01 | 07 | 08 | Overall |")
    assert "demo finished in" in capsys.readouterr().out

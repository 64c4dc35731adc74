"""The demo end to end (``make demo``): the trained model beats the threshold baseline clearly.
How long it takes is not asserted: the demo reports its run time in results.md, and the README
records it."""

import re

import pytest
from msseg.commands.main import main


@pytest.mark.slow
def test_demo_beats_the_threshold_baseline(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    report = (tmp_path / "results.md").read_text()
    dice = {}
    for line in report.splitlines():
        match = re.match(r"\| (threshold baseline|planar res-u-net, (?:average|middle-8))"
                         r"[^|]* \| 3 \| ([0-9.]+) ± ", line)
        if match:
            dice[match.group(1)] = float(match.group(2))
    baseline = dice["threshold baseline"]
    assert 0.0 < baseline < 0.1
    for method in ("planar res-u-net, average", "planar res-u-net, middle-8"):
        assert dice[method] > 0.3 and dice[method] > 5 * baseline, (method, dice)
    assert (tmp_path / "round1" / "train" / "curves.png").is_file()
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 3
    assert (tmp_path / "table.md").read_text().startswith(
        "| Metric | 01 (n=1) | 07 (n=1) | 08 (n=1) | Overall (n=3) |")
    out = capsys.readouterr().out
    assert "demo finished in" in out
    page = tmp_path / "report.html"
    assert out.rstrip().splitlines()[-1] == f"report (open it in a browser): {page.resolve()}"
    text = page.read_text()
    assert "threshold baseline" in text and "Round 1" in text and "Run time" in text
    assert all(f'id="scan-{patient}"' in text for patient in ("01016SACH", "07001MOEL",
                                                              "08002CHJE"))

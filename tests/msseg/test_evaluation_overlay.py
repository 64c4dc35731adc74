"""The overlay figure: FLAIR, consensus and the scored prediction, readable without the code."""

import numpy as np
import pytest
from msseg.evaluation.overlay import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    LEGEND,
    TRUE_POSITIVE,
    TRUTH,
    save_overlay,
)
from msseg.io.orientation import Geometry


def test_overlay_draws_both_rows_and_refuses_another_grid(tmp_path):
    shape = (10, 12, 8)
    geometry = Geometry.from_affine(shape, np.diag([-1.0, 2.0, 1.5, 1.0]))
    flair = np.random.default_rng(0).random(shape)
    truth = np.zeros(shape, bool)
    truth[4:6, 5:8, 3:5] = True
    path = save_overlay(flair, truth, np.roll(truth, 1, axis=1), geometry,
                        tmp_path / "o" / "scan.png", title="scan: Dice 0.67")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["scan.png"]
    with pytest.raises(ValueError, match="expected a stored-frame array of shape"):
        save_overlay(flair[:-1], truth[:-1], truth[:-1], geometry, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_score_colours_never_reuse_the_consensus_colour_and_have_a_legend():
    colours = [TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE]
    assert TRUTH not in colours and len(set(colours)) == 3
    assert [colour for _, colour in LEGEND] == [TRUTH, *colours]

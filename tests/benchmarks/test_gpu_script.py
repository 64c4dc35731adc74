"""benchmarks/gpu.sh, the one run that measures every GPU figure, works before a GPU is lent:
its dry run does every step on the CPU at tiny sizes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


@pytest.mark.slow
def test_the_gpu_script_runs_every_step_as_a_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / "figures.md"
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=1800,
        env={**os.environ, "PYTHON": sys.executable, "OUT_DRY": str(out)})
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    # each step printed its table: planar vs 2D three times (fp32, bf16 autocast, compile),
    # then the msseg configurations
    lines = text.splitlines()
    assert sum(line.startswith("## planar vs the 2D network on the N*D slices")
               for line in lines) == 3
    assert "bf16 autocast" in text and "torch.compile" in text
    # vision transformers: fp32 and bf16 autocast
    assert text.count("vision transformers: planar vs the 2D network on the N*D slices") == 2
    assert text.count("| configuration | s / step |") == 3  # paper, compiled, real-data recipe
    assert "real recipe" in text

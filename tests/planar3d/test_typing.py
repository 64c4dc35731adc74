"""A user's mypy run checks their calls: planar3d ships `py.typed`, and its options are `Literal`s.

mypy runs in a subprocess on a small user file, finding planar3d the way it finds an installed
package (which it reads only when the package has a `py.typed` marker). torch, timm and
torchvision are skipped (treated as `Any`) to keep the run to a few seconds; the checks here are
about planar3d's own signatures.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import planar3d

PACKAGE = Path(planar3d.__file__).parent

# Every line marked `# wrong` must get exactly one mypy error, naming the argument; no other line
# may get one (so the int axis and every valid literal type-check).
USER_CODE = """\
import planar3d
from torch import nn

model = nn.Conv2d(3, 8, 3)
planar3d.convert(model, mode="planar", axis="H", depth="pool", kernel_depth=3)
planar3d.convert(model, mode="acs", axis=3, depth="all")
planar3d.thicken(planar3d.convert(model), init="inflate")
planar3d.convert(model, depth_layers=("position", "attention"))
mode: planar3d.Mode = "center"
planar3d.convert(model, mode=mode)
planar3d.convert(model, mode="planer")  # wrong: mode
planar3d.convert(model, depth="none")  # wrong: depth
planar3d.convert(model, axis="Z")  # wrong: axis
planar3d.thicken(model, init="acs")  # wrong: init
planar3d.convert(model, depth_layers=("time",))  # wrong: depth_layers
planar3d.planar_kernel(model.weight, axis="X")  # wrong: axis
"""

MYPY_CONFIG = """\
[mypy]
warn_unused_configs = True

[mypy-torch.*,timm.*,torchvision.*]
follow_imports = skip
ignore_missing_imports = True
"""


def test_the_package_ships_a_py_typed_marker():
    assert (PACKAGE / "py.typed").is_file(), (
        f"{PACKAGE / 'py.typed'} is missing: without it mypy ignores planar3d's annotations"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (it is in the project's test dependencies)",
)
def test_mypy_reports_a_wrong_mode_depth_axis_or_init_in_user_code(tmp_path):
    (tmp_path / "user.py").write_text(USER_CODE)
    (tmp_path / "mypy.ini").write_text(MYPY_CONFIG)
    # mypy asks the interpreter for its import path: put this planar3d first on it.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE.parent), env.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", ".mypy_cache",
         "--python-executable", sys.executable, "--show-error-codes", "--no-error-summary",
         "user.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    expected = {
        number: line.split("# wrong: ")[1]
        for number, line in enumerate(USER_CODE.splitlines(), start=1)
        if "# wrong: " in line
    }
    errors = {
        int(m["line"]): m["message"]
        for m in re.finditer(r"^user\.py:(?P<line>\d+): error: (?P<message>.*)$", output, re.M)
    }
    assert result.returncode == 1, output
    assert sorted(errors) == sorted(expected), output
    for number, argument in expected.items():
        assert f'Argument "{argument}"' in errors[number], output
        assert "[arg-type]" in errors[number], output

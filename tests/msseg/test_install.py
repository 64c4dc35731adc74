"""The example installs as a package with a console command: a fresh virtual environment gets
``pip install ./examples/msseg`` (a wheel build, offline) and runs ``msseg --help`` and a tiny
``msseg predict``."""

import os
import shutil
import site
import subprocess
import venv
from pathlib import Path

import msseg
import nibabel as nib
import numpy as np
import pytest
from msseg.training.engine import train
from msseg_helpers import save, tiny_config, tiny_datasets

import planar3d

EXAMPLE = Path(msseg.__file__).resolve().parents[2]  # examples/msseg


@pytest.mark.slow
def test_a_fresh_environment_installs_the_example_and_runs_its_command(tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
    # The new environment sees this one's packages (torch and the rest, pip, setuptools) and
    # planar3d, but not this checkout's editable msseg: that one it must install itself.
    parents = [*site.getsitepackages(), str(Path(planar3d.__file__).parents[1])]
    (Path(own_site) / "parent_environment.pth").write_text("\n".join(parents) + "\n")
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source = shutil.copytree(EXAMPLE, tmp_path / "source", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))  # the build writes next to the sources
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", str(source)], check=True, env=environ,
                   capture_output=True)
    command = env_dir / "bin" / "msseg"
    located = subprocess.run([python, "-c", "import msseg; print(msseg.__file__)"],
                             capture_output=True, text=True, check=True, env=environ)
    assert Path(located.stdout.strip()).is_relative_to(env_dir)  # the installed copy

    help_text = subprocess.run([command, "predict", "--help"], capture_output=True, text=True,
                               check=True, env=environ).stdout
    assert "-m MODEL, --model MODEL" in help_text and "--overwrite" in help_text

    checkpoint = train(tiny_config(tmp_path / "run", epochs=1), *tiny_datasets()).last_path
    flair = np.random.default_rng(0).uniform(100, 200, (12, 10, 9)).astype(np.float32)
    scan = save(tmp_path / "data" / "01016SACH" / "3DFLAIR.nii.gz", flair, np.eye(4))
    result = subprocess.run([command, "predict", "-m", str(checkpoint), "-i", str(scan.parent),
                             "-o", str(tmp_path / "pred"), "--device", "cpu"],
                            capture_output=True, text=True, env=environ)
    assert result.returncode == 0, result.stderr
    mask = nib.load(tmp_path / "pred" / "01016SACH_mask.nii.gz")
    assert mask.shape == flair.shape and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}

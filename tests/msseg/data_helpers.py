"""Helpers shared by the msseg data tests: synthetic NIfTI scans with chosen orientations.

(A module of its own, not conftest.py, so that ``from data_helpers import ...`` works next to
the repository's root conftest.)
"""

from pathlib import Path

import nibabel as nib
import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_DIRECTIONS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def oriented_affine(axcodes: str, voxel_mm=(1.0, 1.0, 1.0), shape=(8, 8, 8)) -> np.ndarray:
    """(4, 4) affine whose array axes point to `axcodes` (e.g. "LPS"), centred on the origin."""
    matrix = np.zeros((3, 3))
    for column, (code, size) in enumerate(zip(axcodes, voxel_mm, strict=True)):
        axis, sign = _DIRECTIONS[code]
        matrix[axis, column] = sign * size
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = -matrix @ ((np.array(shape) - 1) / 2)
    return affine


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write `data` as NIfTI with `affine` (qform and sform, code 1); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def blob_scan(shape=(12, 14, 10), seed=0):
    """A smooth random FLAIR-like volume and a mask with a couple of blobs (storage = RAS)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    flair = 100 + 20 * rng.random(shape)
    mask = np.zeros(shape, np.uint8)
    for _ in range(2):
        centre = rng.uniform(3, np.array(shape) - 3)
        blob = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 4
        mask[blob] = 1
        flair[blob] += 80
    return flair.astype(np.float32), mask

"""Canonical frame of a scan, found from its NIfTI affine, and the exact way back.

The pipeline works in nibabel's closest-canonical frame (RAS+): array axis 0 runs from the
patient's left to right, so slices along it are sagittal; axis 1 runs posterior → anterior and
axis 2 inferior → superior. The frame comes from the affine, never from the storage order, so a
scan stored axial, sagittal, LPS or with permuted axes reaches the same canonical array. Getting
there only flips and permutes array axes (no interpolation), which makes the inverse exact.

Public API:
    axes_matrix(axcodes, voxel_mm) -> (3, 3) voxel-to-world directions of a storage order
    canonical_ornt(affine) -> ornt (3, 2)
    Geometry                      a scan's native grid; .to_canonical / .from_canonical / JSON
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

_RAS = axcodes2ornt(("R", "A", "S"))
_DIRECTIONS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def axes_matrix(axcodes: str, voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
                ) -> np.ndarray:
    """The (3, 3) part of an affine whose array axes point to `axcodes`, e.g. "LPS".

    Args:
        axcodes: three letters, one per array axis, from R/L, A/P, S/I (each pair once).
        voxel_mm: the voxel size along each array axis.
    Returns:
        (3, 3) matrix: column i is array axis i's direction in world (RAS+) mm.
    Raises:
        ValueError: codes that are not one of each pair.
    """
    if len(axcodes) != 3 or sorted(_DIRECTIONS[c][0] for c in axcodes if c in _DIRECTIONS) != [
            0, 1, 2]:
        raise ValueError(f"axcodes must name each of R/L, A/P, S/I once, e.g. 'LPS'; found "
                         f"{axcodes!r}")
    matrix = np.zeros((3, 3))
    for column, (code, size) in enumerate(zip(axcodes, voxel_mm, strict=True)):
        axis, sign = _DIRECTIONS[code]
        matrix[axis, column] = sign * size
    return matrix


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """Orientation that takes a stored array to the canonical RAS+ axes.

    Args:
        affine: (4, 4) voxel-to-world matrix of the stored array. Oblique affines are allowed;
            each array axis goes to the world axis it is closest to.

    Returns:
        (3, 2) nibabel orientation array: row i = (canonical axis of stored axis i, flip ±1).

    Raises:
        ValueError: the affine is not (4, 4), not finite, or its 3x3 part is singular.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(
            f"affine must be a finite (4, 4) matrix; found shape {affine.shape} with "
            f"{int(np.sum(~np.isfinite(affine)))} non-finite entries. Fix the file's header."
        )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(
            "affine's 3x3 part is singular (zero voxel size or collinear axes), so the array "
            f"has no orientation:\n{affine}\nFix the file's qform/sform."
        )
    return io_orientation(affine)


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where a scan lives on disk: enough to map a canonical-frame array back exactly.

    Attributes:
        shape: the stored array's shape (X, Y, Z).
        affine: (4, 4) voxel-to-world matrix nibabel reports for the file.
        qform, qform_code, sform, sform_code: the header's two transforms and their codes,
            copied into written outputs so they overlay the input in any viewer.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    qform: np.ndarray = field(repr=False)
    qform_code: int
    sform: np.ndarray = field(repr=False)
    sform_code: int

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be 3 positive sizes; found {self.shape}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for name in ("affine", "qform", "sform"):
            matrix = np.array(getattr(self, name), dtype=np.float64)
            if matrix.shape != (4, 4):
                raise ValueError(f"{name} must be (4, 4); found {matrix.shape}")
            matrix.setflags(write=False)
            object.__setattr__(self, name, matrix)
        object.__setattr__(self, "_ornt", canonical_ornt(self.affine))

    @classmethod
    def from_affine(cls, shape: tuple[int, int, int], affine: np.ndarray) -> Geometry:
        """Geometry for an array with one affine used as both qform and sform (code 1)."""
        return cls(shape, affine, affine, 1, affine, 1)

    @property
    def ornt(self) -> np.ndarray:
        """(3, 2) orientation from stored to canonical axes (see `canonical_ornt`)."""
        return self._ornt.copy()

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Shape of the array after reorientation to the canonical frame."""
        out = [0, 0, 0]
        for size, (axis, _) in zip(self.shape, self._ornt, strict=True):
            out[int(axis)] = size
        return (out[0], out[1], out[2])

    def to_canonical(self, volume: np.ndarray) -> np.ndarray:
        """Flip/permute a stored array (X, Y, Z) into the canonical frame.

        Returns a new C-contiguous array of shape `canonical_shape`.

        Raises:
            ValueError: volume's shape differs from `shape`.
        """
        self._check_shape(volume, self.shape, "stored")
        return np.array(apply_orientation(volume, self._ornt), order="C", copy=True)

    def from_canonical(self, volume: np.ndarray) -> np.ndarray:
        """Exact inverse of `to_canonical`: canonical (R, A, S) array back to storage order.

        Returns a new C-contiguous array of shape `shape`.

        Raises:
            ValueError: volume's shape differs from `canonical_shape`.
        """
        self._check_shape(volume, self.canonical_shape, "canonical")
        back = ornt_transform(_RAS, self._ornt)
        return np.array(apply_orientation(volume, back), order="C", copy=True)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict; `from_json` restores an equal Geometry."""
        return {
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "qform": self.qform.tolist(),
            "qform_code": self.qform_code,
            "sform": self.sform.tolist(),
            "sform_code": self.sform_code,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of `to_json`."""
        return cls(
            shape=tuple(data["shape"]),
            affine=np.array(data["affine"]),
            qform=np.array(data["qform"]),
            qform_code=int(data["qform_code"]),
            sform=np.array(data["sform"]),
            sform_code=int(data["sform_code"]),
        )

    def same_as(self, other: Geometry) -> bool:
        """True when both describe the same grid and header transforms exactly."""
        return (
            self.shape == other.shape
            and self.qform_code == other.qform_code
            and self.sform_code == other.sform_code
            and all(
                np.array_equal(getattr(self, n), getattr(other, n))
                for n in ("affine", "qform", "sform")
            )
        )

    @staticmethod
    def _check_shape(volume: np.ndarray, expected: tuple[int, ...], frame: str) -> None:
        if np.shape(volume) != expected:
            raise ValueError(
                f"expected a {frame}-frame array of shape {expected}; found {np.shape(volume)}. "
                "Pass the array that belongs to this scan's geometry."
            )

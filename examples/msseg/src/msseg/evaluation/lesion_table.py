"""What a radiologist asks of a mask: how many lesions, how large, where, and how sure.

    analysis = analyse_lesions(prediction.mask, scan.geometry, probability=prediction.probability)
    analysis.count, analysis.total_ml                  # lesions kept, their volume in mL
    lesion_table_csv(analysis.lesions)                 # <id>_lesions.csv
    analysis.labels                                    # <id>_lesions.nii.gz, on the scan's grid

Lesions are the connected components of the mask, by the rule the lesion-wise metrics use
(`msseg.evaluation.lesions`: voxels joined through faces, more than 3 mm³), numbered by size: 1
is the largest lesion, lesions of one size in the order of their first voxel in the array, so a
mask always gives the same map. The connectivity (6, 18 or 26 neighbours) and the minimum volume
are options; their defaults are the metrics'.
Everything is measured on the scan's own grid: a voxel's volume is the absolute determinant of
the affine's 3 x 3 part (so anisotropic and oblique grids are measured as they are), a lesion's
centroid is the mean of its voxel indices taken through the affine to scanner (world) millimetres
(RAS+: x to the patient's right, y anterior, z superior, as NIfTI defines them), and its bounding
box is in voxel indices of the stored array, first and last inclusive, as a viewer shows them.
Components under the minimum size are not lesions here: they are left out of the map, the table,
the count and the total volume.

`summary.csv` has one row per predicted scan (`ScanSummary`, `summary_csv`): the input, the
lesion count, the total lesion volume, the grid, the lesions' rule, the model and recipe that
produced the mask, and the warnings raised for that scan. Both tables read back as written
(`read_lesion_table`, `read_summary`), which is how the report is drawn from the files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from msseg.evaluation.lesions import (
    CONNECTIVITIES,
    DEFAULT_CONNECTIVITY,
    MIN_LESION_MM3,
    label_lesions,
    voxel_mm3,
)
from msseg.io.orientation import Geometry

__all__ = ["Lesion", "LesionAnalysis", "ScanSummary",
           "analyse_lesions", "lesion_table_csv", "read_lesion_table", "read_summary",
           "summary_csv", "voxel_mm", "voxel_ml"]

_ML_PER_MM3 = 1e-3


def voxel_ml(affine: np.ndarray) -> float:
    """The volume of one voxel in mL (`msseg.evaluation.lesions.voxel_mm3` / 1000)."""
    return voxel_mm3(affine) * _ML_PER_MM3


def voxel_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """The voxel's edge lengths in mm along the stored array's axes (the columns' norms)."""
    sizes = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return tuple(float(s) for s in sizes)  # type: ignore[return-value]


@dataclass(frozen=True)
class Lesion:
    """One lesion: a row of ``<id>_lesions.csv`` (see the module docstring for the frames)."""

    label: int  # its value in the lesion map; 1 = the largest
    voxels: int
    volume_ml: float
    x_mm: float  # centroid, scanner coordinates (RAS+, mm)
    y_mm: float
    z_mm: float
    i: float  # centroid, voxel indices of the stored array
    j: float
    k: float
    i_first: int  # bounding box, voxel indices, first and last inclusive
    i_last: int
    j_first: int
    j_last: int
    k_first: int
    k_last: int
    mean_probability: float  # over the lesion's voxels; nan without a probability map
    max_probability: float


@dataclass(frozen=True, eq=False)
class LesionAnalysis:
    """The lesions of one mask.

    Attributes:
        labels: (X, Y, Z) int32 lesion map on the scan's grid, 0 outside lesions.
        lesions: one `Lesion` per label, largest first.
        voxel_ml: the volume of one voxel.
        min_lesion_mm3, connectivity: the rule that made them (neighbours: 6, 18 or 26).
    """

    labels: np.ndarray
    lesions: tuple[Lesion, ...]
    voxel_ml: float
    min_lesion_mm3: float
    connectivity: int

    @property
    def count(self) -> int:
        return len(self.lesions)

    @property
    def total_ml(self) -> float:
        """The volume of all lesions, in mL."""
        return sum(lesion.voxels for lesion in self.lesions) * self.voxel_ml

    def map_array(self) -> np.ndarray:
        """The lesion map in the smallest unsigned type that holds its labels (uint8/16/32)."""
        for dtype in (np.uint8, np.uint16, np.uint32):
            if self.count <= np.iinfo(dtype).max:
                return self.labels.astype(dtype)
        raise ValueError(f"{self.count} lesions do not fit a uint32 lesion map")


def analyse_lesions(
    mask: np.ndarray,
    geometry: Geometry,
    *,
    probability: np.ndarray | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    min_lesion_mm3: float = MIN_LESION_MM3,
) -> LesionAnalysis:
    """Label a mask's lesions and measure each one on the scan's grid.

    Args:
        mask: (X, Y, Z) binary mask on the scan's grid (bool or 0/1).
        geometry: the scan's grid (shape and affine).
        probability: (X, Y, Z) lesion probabilities on the same grid, or None (the probability
            columns are then nan).
        connectivity: 6, 18 or 26 neighbours join voxels into one lesion.
        min_lesion_mm3: components of this volume or less are not lesions (0 keeps all).
    Returns:
        A `LesionAnalysis`; the caller's arrays are not changed.
    Raises:
        ValueError: arrays that are not on the geometry's grid, or a bad connectivity.
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    arrays = {"mask": mask} if probability is None else {"mask": mask, "probability": probability}
    for name, array in arrays.items():
        if np.shape(array) != geometry.shape:
            raise ValueError(f"{name} has shape {np.shape(array)}, the scan's grid is "
                             f"{geometry.shape}; map it back to the scan's grid first")
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {tuple(CONNECTIVITIES)} neighbours; "
                         f"found {connectivity!r}")
    per_voxel = voxel_ml(geometry.affine)
    labels, count = label_lesions(mask, voxel_mm3=per_voxel / _ML_PER_MM3,
                                  min_mm3=min_lesion_mm3,
                                  connectivity=CONNECTIVITIES[connectivity])
    labels, sizes = _by_size(labels, count)
    index = np.arange(1, count + 1)
    centroids = np.asarray(ndimage.center_of_mass(labels > 0, labels,
                                                  index)).reshape(count, 3)
    world = centroids @ np.asarray(geometry.affine)[:3, :3].T + np.asarray(geometry.affine)[:3, 3]
    if probability is None:
        mean = peak = np.full(count, np.nan)
    else:
        values = np.asarray(probability, dtype=np.float64)
        mean = np.asarray(ndimage.mean(values, labels, index)).reshape(count)
        peak = np.asarray(ndimage.maximum(values, labels, index)).reshape(count)
    boxes = ndimage.find_objects(labels, max_label=count)
    lesions = tuple(
        Lesion(label=n + 1, voxels=int(sizes[n]), volume_ml=float(sizes[n] * per_voxel),
               x_mm=float(world[n, 0]), y_mm=float(world[n, 1]), z_mm=float(world[n, 2]),
               i=float(centroids[n, 0]), j=float(centroids[n, 1]), k=float(centroids[n, 2]),
               i_first=box[0].start, i_last=box[0].stop - 1, j_first=box[1].start,
               j_last=box[1].stop - 1, k_first=box[2].start, k_last=box[2].stop - 1,
               mean_probability=float(mean[n]), max_probability=float(peak[n]))
        for n, box in enumerate(boxes))
    return LesionAnalysis(labels, lesions, per_voxel, min_lesion_mm3, connectivity)


def _by_size(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered from the largest lesion (ties: first voxel first), and their sizes."""
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    voxels = np.flatnonzero(labels)  # ascending: a label's first hit is its first voxel
    _, first = np.unique(labels.ravel()[voxels], return_index=True)
    order = np.lexsort((voxels[first], -sizes))
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, count + 1, dtype=np.int32)
    return relabel[labels], sizes[order]


_DIGITS = {"volume_ml": 4, "x_mm": 1, "y_mm": 1, "z_mm": 1, "i": 1, "j": 1, "k": 1,
           "mean_probability": 3, "max_probability": 3}


def lesion_table_csv(lesions: Sequence[Lesion]) -> str:
    """``<id>_lesions.csv``: a header (the `Lesion` fields) and one row per lesion.

    Volumes keep 4 decimals (0.1 mm³), coordinates 1 (0.1 mm or voxel), probabilities 3.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([f.name for f in fields(Lesion)])
    for lesion in lesions:
        writer.writerow([_format(name, value) for name, value in asdict(lesion).items()])
    return text.getvalue()


def read_lesion_table(text: str) -> tuple[Lesion, ...]:
    """The lesions of a ``<id>_lesions.csv`` text (`lesion_table_csv`), as written.

    Raises:
        ValueError: a header that is not the lesion table's, or a value that is not a number.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [f.name for f in fields(Lesion)]
    if rows and list(rows[0]) != names:
        raise ValueError(f"not a lesion table: columns {list(rows[0])}, expected {names}")
    kinds = {f.name: (int if f.type == "int" else float) for f in fields(Lesion)}
    return tuple(Lesion(**{name: kinds[name](row[name]) for name in names}) for row in rows)


@dataclass(frozen=True)
class ScanSummary:
    """One row of ``summary.csv``: one predicted scan."""

    patient_id: str
    flair: str  # the input file
    lesions: int
    total_volume_ml: float
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    connectivity: int  # the lesions' rule: neighbours that join voxels, and the smallest volume
    min_lesion_mm3: float
    model: str  # the checkpoint that predicted the mask
    recipe: str  # the working space it was predicted in, in words
    warnings: tuple[str, ...] = ()  # every warning raised for this scan

    @classmethod
    def of(cls, patient_id: str, flair: str, analysis: LesionAnalysis, geometry: Geometry, *,
           model: str, recipe: str, warnings: Sequence[str] = ()) -> ScanSummary:
        """The summary of one scan's `analyse_lesions` result."""
        return cls(patient_id, flair, analysis.count, analysis.total_ml, geometry.shape,
                   voxel_mm(geometry.affine), analysis.connectivity, analysis.min_lesion_mm3,
                   model, recipe, tuple(warnings))


_SEPARATOR = " | "  # between the warnings of one scan


def summary_csv(rows: Sequence[ScanSummary]) -> str:
    """``summary.csv``: one row per scan; shape and voxel size as ``AxBxC``, warnings joined by
    `` | ``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([f.name for f in fields(ScanSummary)])
    for row in rows:
        writer.writerow([row.patient_id, row.flair, row.lesions, f"{row.total_volume_ml:.4f}",
                         "x".join(map(str, row.shape)),
                         "x".join(f"{size:.4g}" for size in row.voxel_mm), row.connectivity,
                         f"{row.min_lesion_mm3:g}", row.model, row.recipe,
                         _SEPARATOR.join(row.warnings)])
    return text.getvalue()


def read_summary(text: str) -> list[ScanSummary]:
    """The rows of a ``summary.csv`` text (`summary_csv`).

    Raises:
        ValueError: a header that is not the summary's, or a value of the wrong kind.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    names = [f.name for f in fields(ScanSummary)]
    if rows and list(rows[0]) != names:
        raise ValueError(f"not a summary.csv of msseg predict: columns {list(rows[0])}, "
                         f"expected {names}")
    return [ScanSummary(
        row["patient_id"], row["flair"], int(row["lesions"]), float(row["total_volume_ml"]),
        tuple(int(v) for v in row["shape"].split("x")),  # type: ignore[arg-type]
        tuple(float(v) for v in row["voxel_mm"].split("x")),  # type: ignore[arg-type]
        int(row["connectivity"]), float(row["min_lesion_mm3"]), row["model"], row["recipe"],
        tuple(row["warnings"].split(_SEPARATOR)) if row["warnings"] else ()) for row in rows]


def _format(name: str, value: float | int) -> str:
    if name in _DIGITS:
        return "nan" if np.isnan(value) else f"{value:.{_DIGITS[name]}f}"
    return str(value)

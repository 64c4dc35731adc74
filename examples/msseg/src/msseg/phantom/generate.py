"""Synthetic MSSEG-2016 look-alike: 15 patients, 3 centres, FLAIR + consensus lesion mask.

    records = write_phantom("data/phantom", scale=0.25, seed=0)        # `msseg phantom`

Writes ``<out>/<PATIENT>/3DFLAIR.nii.gz`` and ``Consensus.nii.gz`` for the 15 MSSEG training
patient ids. Each centre has the real data's array size (scaled by --scale, field of view kept),
its own voxel size, storage orientation, dtype, intensity scale, noise level and grey/white
contrast, so the loader's canonicalisation is really exercised:

| centre | array size (scale 1) | voxel (mm)    | stored as                           | lesions |
|--------|----------------------|---------------|-------------------------------------|---------|
| 01     | 144 x 512 x 512      | 1.2, 0.5, 0.5 | sagittal, axes L-A-S, int16         | ~0.26 % |
| 07     | 128 x 224 x 256      | 1.2, 0.9, 0.9 | axial slices first, I-R-A, uint16   | ~0.14 % |
| 08     | 261 x 336 x 336      | 0.7 isotropic | permuted LPS (S-P-L), 5°/4° oblique | ~0.145 %|

Every patient gets its own head (size, ventricle enlargement, gyri, pose within ±3°), lesion
load (the centre's mean ±20 %, kept within 0.1-0.3 % of the array's voxels; centre 01's real
0.311 % is capped at that band), a smooth multiplicative bias field (typically 0.86-1.2 over
the brain) and Rician noise. The anatomy is `msseg.phantom.anatomy`, the lesions
`msseg.phantom.lesions`.

Public API:
    CentreSpec, CENTRES
    scaled_grid(spec, scale) -> (shape, affine)
    make_patient(patient_id, *, scale=1.0, seed=0) -> (flair, mask, geometry)
    write_phantom(out, *, scale=1.0, seed=0, progress=True, overwrite=False) -> records
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from msseg.io.atomic import atomic_write_text, check_writable
from msseg.io.discovery import MSSEG_FLAIR, MSSEG_MASK, MSSEG_PATIENTS, ScanRecord, msseg_centre
from msseg.io.lock import folder_lock
from msseg.io.nifti import save_nifti
from msseg.io.orientation import Geometry, axes_matrix
from msseg.phantom.anatomy import TISSUE, render_head, rotation, sample_head
from msseg.phantom.grid import VoxelGrid
from msseg.phantom.lesions import add_lesions
from msseg.progress import progress_bar


@dataclass(frozen=True)
class CentreSpec:
    """Acquisition of one centre (see the module table)."""

    shape: tuple[int, int, int]  # array size at scale 1
    voxel_mm: tuple[float, float, float]  # voxel size at scale 1
    axcodes: str  # world direction each array axis increases towards, e.g. "LAS"
    tilt_deg: tuple[float, float, float]  # obliquity (yaw, pitch, roll) of the acquisition
    fov_centre_mm: tuple[float, float, float]  # head-frame point at the array's centre
    lesion_ratio: float  # mean lesion voxel fraction
    dtype: str  # stored data type
    intensity_scale: float  # stored value of white matter
    noise: float  # Rician sigma relative to white matter
    grey_white: float  # grey matter / white matter ratio
    fat: float  # scalp fat / white matter ratio


CENTRES: dict[str, CentreSpec] = {
    "01": CentreSpec((144, 512, 512), (1.2, 0.5, 0.5), "LAS", (0, 0, 0), (0, 4, -40),
                     0.0026, "int16", 900.0, 0.08, 1.22, 2.6),
    "07": CentreSpec((128, 224, 256), (1.2, 0.9, 0.9), "IRA", (0, 0, 0), (0, 2, 2),
                     0.0014, "uint16", 2500.0, 0.09, 1.15, 2.4),
    "08": CentreSpec((261, 336, 336), (0.7, 0.7, 0.7), "SPL", (5, 4, 0), (0, 2, -12),
                     0.00145, "float32", 1.0, 0.07, 1.25, 2.8),
}
RATIO_BAND = (0.0011, 0.0027)  # per-scan lesion load targets, inside the 0.1-0.3 % band


def scaled_grid(spec: CentreSpec, scale: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Array shape and affine of a centre at `scale` (same field of view, larger voxels).

    Returns:
        shape (X, Y, Z) and the (4, 4) voxel-to-scanner affine (mm).

    Raises:
        ValueError: scale is not in (0, 1].
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1] (1 = the real array sizes); found {scale}")
    shape = tuple(max(8, round(n * scale)) for n in spec.shape)
    voxel = [v * n / s for v, n, s in zip(spec.voxel_mm, spec.shape, shape, strict=True)]
    matrix = rotation(*spec.tilt_deg) @ axes_matrix(spec.axcodes, voxel)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = np.asarray(spec.fov_centre_mm) - matrix @ ((np.array(shape) - 1) / 2)
    return (shape[0], shape[1], shape[2]), affine


def make_patient(
    patient_id: str, *, scale: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Generate one phantom scan.

    Args:
        patient_id: an MSSEG id; its first two digits pick the centre in `CENTRES`.
        scale: array size factor in (0, 1]; 0.25 gives e.g. 36 x 128 x 128 for centre 01.
        seed: base seed; each patient draws from its own stream, so scans do not depend on
            which other patients are generated.

    Returns:
        flair (X, Y, Z) in the centre's dtype, mask (X, Y, Z) uint8 {0, 1}, and the geometry.

    Raises:
        ValueError: unknown centre or invalid scale.
    """
    centre = msseg_centre(patient_id)
    if centre not in CENTRES:
        raise ValueError(f"no phantom centre {centre!r} for {patient_id}; known: {list(CENTRES)}")
    spec = CENTRES[centre]
    shape, affine = scaled_grid(spec, scale)
    rng = np.random.default_rng([seed, *patient_id.encode()])
    pose = np.eye(4)
    pose[:3, :3] = rotation(*rng.uniform(-3, 3, 3))
    pose[:3, 3] = rng.uniform(-4, 4, 3)
    grid = VoxelGrid(shape, np.linalg.inv(pose) @ affine)
    head = sample_head(rng)
    tissue = dict(TISSUE, gm=spec.grey_white, fat=spec.fat)
    image, parenchyma = render_head(grid, head, tissue=tissue)
    ratio = float(np.clip(spec.lesion_ratio * rng.uniform(0.8, 1.2), *RATIO_BAND))
    mask = add_lesions(image, parenchyma, grid, head, rng, ratio=ratio)
    del parenchyma
    image *= _bias_field(grid, rng)
    noisy = _rician(image, spec.noise, rng) * np.float32(spec.intensity_scale)
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        noisy = np.clip(np.rint(noisy), 0, np.iinfo(spec.dtype).max)
    return noisy.astype(spec.dtype), mask, Geometry.from_affine(shape, affine)


def write_phantom(
    out: str | Path, *, scale: float = 1.0, seed: int = 0, progress: bool = True,
    overwrite: bool = False,
) -> list[ScanRecord]:
    """Write all 15 patients in the MSSEG layout, plus ``phantom.json`` with the settings.

    Each file is written atomically; an interrupted run leaves only complete files. Before any
    scan is made, `out` is checked: a folder that already holds files of the phantom's patients
    (real scans with those ids, or a phantom of other settings) is refused unless `overwrite`;
    the same phantom (its ``phantom.json`` has these settings) is written again unchanged, and
    other contents stay as they are.

    Returns:
        The written scans' records, sorted by patient id.
    Raises:
        FileExistsError: `out` holds files of the phantom's patients and `overwrite` is False.
        msseg.io.atomic.WriteError: `out` is not a writable folder.
        msseg.io.lock.FolderLockedError: another process writes into `out`.
    """
    out = Path(out)
    check_writable(out)
    settings = json.loads(json.dumps({"scale": scale, "seed": seed, "centres": {
        k: asdict(v) for k, v in CENTRES.items()}}))
    taken = [patient_id for patient_id in MSSEG_PATIENTS
             if any((out / patient_id / name).exists() for name in (MSSEG_FLAIR, MSSEG_MASK))]
    if taken and not overwrite and _settings(out) != settings:
        listed = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise FileExistsError(f"{out}: holds scans of the phantom's patients already ({listed}); "
                              f"writing the phantom would replace them: pass --overwrite to "
                              f"replace them (overwrite=True), or choose another folder")
    records = []
    with folder_lock(out, command="msseg phantom"):
        for patient_id in progress_bar(MSSEG_PATIENTS, desc="phantom", unit="scan",
                                       enabled=progress):
            flair, mask, geometry = make_patient(patient_id, scale=scale, seed=seed)
            folder = out / patient_id
            save_nifti(flair, geometry, folder / MSSEG_FLAIR)
            save_nifti(mask, geometry, folder / MSSEG_MASK)
            records.append(ScanRecord(patient_id, msseg_centre(patient_id),
                                      folder / MSSEG_FLAIR, folder / MSSEG_MASK))
        atomic_write_text(out / "phantom.json", json.dumps(settings, indent=2))
    return records


def _settings(out: Path) -> dict | None:
    """The settings of the phantom written into `out` earlier, or None."""
    try:
        return json.loads((out / "phantom.json").read_text())
    except (OSError, ValueError):
        return None


def _bias_field(grid: VoxelGrid, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(quadratic polynomial); typically 0.86-1.2 over the brain."""
    x, y, z = (c / np.float32(100) for c in grid.coordinates())
    linear = rng.normal(0, 0.12, 3)
    quadratic = rng.normal(0, 0.1, 6)
    log_field = (linear[0] * x + linear[1] * y + linear[2] * z + quadratic[0] * x * x
                 + quadratic[1] * y * y + quadratic[2] * z * z + quadratic[3] * x * y
                 + quadratic[4] * y * z + quadratic[5] * x * z)
    return np.exp(log_field.astype(np.float32))


def _rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (what an MR magnitude image shows)."""
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imaginary * imaginary)

"""Headers whose voxel grid cannot be trusted, or breaks an assumption of the pipeline: what
`msseg.io.nifti.load_scan` warns about (an error under ``msseg --strict``), never a silent guess.

`grid_problems` reads the header as the file holds it (`stored_header`: nibabel fixes a zero or
negative pixdim on loading, silently) and finds, each as a sentence that ends with the fix:
- no qform and no sform (both codes 0): nibabel then assumes an orientation and takes the
  pixdim voxel size;
- a zero or negative voxel size in the pixdim that the transform in use scales by (the qform,
  when there is no sform): nibabel silently takes 1 mm (its absolute value);
- a qform and an sform that disagree on the voxel grid (axis directions, or voxel sizes by more
  than `TRANSFORMS_AGREE`): msseg reads the sform, as nibabel does, and one of them is wrong;
- voxel axes sheared by more than `SHEAR_WARN_DEGREES`.

Voxel axes more than `OBLIQUE_WARN_DEGREES` off the scanner axes are a problem only where a
recipe cuts slabs along the closest axis (it never reslices, so they tilt with the axes):
`oblique_problem` words it by the recipe's slabs, and it is said where slabs are cut
(`msseg.io.nifti.warn_if_oblique`: training, prediction), not by every reader of a scan.

Public API:
    OBLIQUE_WARN_DEGREES, SHEAR_WARN_DEGREES, TRANSFORMS_AGREE
    stored_header(path, image) -> the header as stored
    grid_problems(header, affine) -> list[str]
    obliquity_degrees(affine) -> float
    oblique_problem(affine, *, slabs, recipe) -> str | None
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener
from nibabel.orientations import aff2axcodes

__all__ = ["OBLIQUE_WARN_DEGREES", "SHEAR_WARN_DEGREES", "TRANSFORMS_AGREE", "grid_problems",
           "oblique_problem", "obliquity_degrees", "stored_header"]

OBLIQUE_WARN_DEGREES = 20.0  # axes further than this from the scanner axes: slabs tilt with them
SHEAR_WARN_DEGREES = 1.0  # axes further than this from perpendicular: not a rectangular grid
TRANSFORMS_AGREE = 0.01  # qform and sform voxel sizes within 1 % of each other agree
_UNTRUSTED = ("its voxel size and orientation cannot be trusted, so the mask may not overlay "
              "the scan: fix the header (e.g. convert the DICOM series again), or pass --strict "
              "to refuse such scans")


def stored_header(path: str | Path, image: nib.Nifti1Image) -> nib.Nifti1Header:
    """The header of `image` (loaded from `path`) as the file holds it, before nibabel's fixes.

    Returns:
        A header of the image's class (NIfTI-1 or -2), read without checks.
    """
    size = int(image.header["sizeof_hdr"])
    with ImageOpener(path) as handle:
        block = handle.read(size)
    return type(image.header)(binaryblock=block, check=False)


def grid_problems(header: nib.Nifti1Header, affine: np.ndarray) -> list[str]:
    """Why a header's voxel grid cannot be trusted or breaks an assumption of the pipeline.

    Args:
        header: the header as stored (`stored_header`).
        affine: the (4, 4) affine nibabel gives the image (the sform, else the qform).
    Returns:
        One sentence per problem (see the module docstring), each ending with the fix; [] for
        a grid the header defines and the pipeline reads as it is.
    """
    problems = _transform_problems(header)
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = axes / np.linalg.norm(axes, axis=0)
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, k=1)]
    shear = float(np.degrees(np.arcsin(np.clip(cosines.max(), 0.0, 1.0))))
    if shear > SHEAR_WARN_DEGREES:
        problems.append(f"its voxel axes are sheared ({90 - shear:.1f} degrees apart instead of "
                        "90); the pipeline treats the voxels as a rectangular grid, so shapes "
                        "are distorted. Reslice the scan onto a rectangular grid.")
    return problems


def obliquity_degrees(affine: np.ndarray) -> float:
    """How far, in degrees, the voxel axes of `affine` are from the scanner axes (the largest
    of the three, nibabel's `obliquity`)."""
    return float(np.degrees(np.max(nib.affines.obliquity(np.asarray(affine, np.float64)))))


def oblique_problem(affine: np.ndarray, *, slabs: str, recipe: str) -> str | None:
    """The sentence about voxel axes more than `OBLIQUE_WARN_DEGREES` off the scanner axes,
    in the words of the recipe that cuts `slabs` along them; None for axes closer than that.

    Args:
        affine: the scan's (4, 4) affine.
        slabs: the recipe's network inputs in words (`msseg.recipes.recipe.Recipe.slabs`).
        recipe: the recipe's name.
    """
    oblique = obliquity_degrees(affine)
    if oblique <= OBLIQUE_WARN_DEGREES:
        return None
    return (f"its voxel axes are up to {oblique:.0f} degrees off the scanner axes (msseg warns "
            f"above {OBLIQUE_WARN_DEGREES:g}); recipe {recipe} cuts its {slabs} along the "
            "closest axis without reslicing, so they are tilted that much against the "
            "anatomy. Reslice the scan onto axis-aligned voxels for reliable results.")


def _transform_problems(header: nib.Nifti1Header) -> list[str]:
    """The first reason the header's qform and sform do not define the grid, or []."""
    qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
    zooms = [float(z) for z in header["pixdim"][1:4]]
    if qform_code <= 0 and sform_code <= 0:
        return ["has no qform or sform (both codes are 0), so nothing says where its voxels lie: "
                f"nibabel assumes an orientation and takes the pixdim voxel size; {_UNTRUSTED}"]
    if sform_code <= 0:  # the affine comes from the qform, which scales by pixdim
        bad = next((axis for axis, zoom in enumerate(zooms) if not zoom > 0), None)
        if bad is not None:
            return [f"pixdim gives {zooms[bad]:g} mm along array axis {bad}, and the qform (the "
                    f"transform in use, there is no sform) scales by it: nibabel silently takes "
                    f"{abs(zooms[bad]) or 1:g} mm; {_UNTRUSTED}"]
    if qform_code > 0 and sform_code > 0:
        grids = []
        for name in ("qform", "sform"):
            try:
                matrix = getattr(header, f"get_{name}")()
            except (ValueError, nib.spatialimages.HeaderDataError):
                return [f"its {name} is unusable (pixdim {zooms}); {_UNTRUSTED}"]
            grids.append(("".join(aff2axcodes(matrix)),
                          np.linalg.norm(matrix[:3, :3], axis=0)))
        (q_codes, q_sizes), (s_codes, s_sizes) = grids
        if q_codes != s_codes or not np.allclose(q_sizes, s_sizes, rtol=TRANSFORMS_AGREE,
                                                 atol=0):
            return [f"its qform and sform disagree on the voxel grid (qform {q_codes}, "
                    f"{_sizes(q_sizes)} mm; sform {s_codes}, {_sizes(s_sizes)} mm); msseg reads "
                    f"the sform, as nibabel does, and one of them is wrong; {_UNTRUSTED}"]
    return []


def _sizes(sizes: np.ndarray) -> str:
    return "x".join(f"{v:.3g}" for v in sizes)

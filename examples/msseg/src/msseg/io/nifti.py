"""Loading scans with full validation, and writing NIfTI files atomically.

Every problem with an input file raises an error whose message starts with the file's path and
says what was found, what was expected and how to fix it: a missing file (`FileNotFoundError`),
or an unreadable file, a header declaring more voxels than `max_voxels` (checked from the header,
before any voxel is decompressed), complex voxels, a volume that is not 3-D or has fewer than
`MIN_AXIS_VOXELS` along an axis (trailing axes of one voxel, as in (X, Y, Z, 1), are dropped),
colour (RGB) or other non-numeric voxels, a non-finite or
singular affine, NaN/inf voxels, a constant FLAIR, a file that `predict` wrote given as a FLAIR,
a FLAIR/mask grid mismatch (shape or affine), a non-binary or empty mask (`ScanError`, a
`ValueError`). A FLAIR that loads but whose grid cannot be trusted, or breaks an assumption of
the pipeline (`msseg.io.header_checks`), gives a `ScanWarning` naming the file (an error under
``msseg --strict``), never a silent guess; oblique axes, which tilt a recipe's slabs, are warned
about where slabs are cut (`warn_if_oblique`). Writes go through `msseg.io.atomic`, so a failure
never leaves a half-written file under the final name; `predict`'s outputs say so in their
header (`PREDICTION_DESCRIPTIONS`).

Public API:
    ScanError, ScanWarning
    Scan(record, flair, mask, geometry)
    load_scan(record, *, allow_empty_mask=False) -> Scan
    read_geometry(path) -> Geometry    a scan's grid from its header, checked as load_scan does
    warn_if_oblique(path, affine, *, slabs, recipe)    where a recipe cuts slabs
    max_voxels() -> int                the size limit (environment variable MSSEG_MAX_VOXELS)
    PREDICTION_DESCRIPTIONS            the header descrip of predict's outputs, by kind
    nifti_image(volume, geometry, *, description=None) -> nibabel.Nifti1Image
    save_nifti(volume, geometry, path, *, description=None) -> Path
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.imageglobals import logger as nibabel_logger

from msseg.io.atomic import atomic_path
from msseg.io.discovery import ScanRecord
from msseg.io.header_checks import grid_problems, oblique_problem, stored_header
from msseg.io.orientation import Geometry, canonical_ornt

_AFFINE_ATOL_MM = 1e-3
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)
MAX_VOXELS_VARIABLE = "MSSEG_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 2**28  # 268,435,456 voxels: 1 GiB as float32 (a 640³ scan fits)
MIN_AXIS_VOXELS = 4  # fewer along an axis (a 2-D image, 2x2x2): resampling only copies
# The header `descrip` of the files `predict` writes, by kind (`discovery.PREDICTION_KINDS`):
# such a file is an output, never a scan.
PREDICTION_DESCRIPTIONS = {"mask": "msseg mask", "prob": "msseg probability map",
                           "lesions": "msseg lesion map"}


class ScanError(ValueError):
    """An input scan exists but cannot be used; the message names the file and the problem."""


class ScanWarning(UserWarning):
    """A scan loads but breaks an assumption of the pipeline; the message names the file."""


def max_voxels() -> int:
    """The largest scan (in voxels) msseg reads: ``$MSSEG_MAX_VOXELS``, default 2**28.

    Raises:
        ValueError: the variable is set but not a positive integer.
    """
    text = os.environ.get(MAX_VOXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_VOXELS_VARIABLE}={text!r}: expected a positive whole number of "
                         f"voxels (default {DEFAULT_MAX_VOXELS:,}); fix or unset it")
    return int(text)


@dataclass(frozen=True, eq=False)
class Scan:
    """One loaded, validated scan in its file's own voxel order.

    Attributes:
        record: where it came from.
        flair: (X, Y, Z) float32, finite, not constant.
        mask: (X, Y, Z) uint8 with values {0, 1}, or None for prediction-only input.
        geometry: the FLAIR's grid, affine and header transforms.
    """

    record: ScanRecord
    flair: np.ndarray
    mask: np.ndarray | None
    geometry: Geometry


def load_scan(record: ScanRecord, *, allow_empty_mask: bool = False) -> Scan:
    """Load a FLAIR (and its mask, if the record has one) and validate both.

    Args:
        record: paths to load.
        allow_empty_mask: accept a mask without lesion voxels (default: error, since a training
            scan without lesions is usually a wrong file).

    Returns:
        The validated `Scan`.

    Raises:
        FileNotFoundError: a file does not exist.
        ScanError: the file is unreadable or invalid (see module docstring).
    """
    image = _open_flair(record.flair)
    flair = _read(record.flair, image, np.float32)
    _check_finite(record.flair, flair)
    if float(flair.max()) == float(flair.min()):
        raise ScanError(f"{record.flair}: FLAIR is constant (every voxel = {flair.flat[0]}); "
                        "expected an MRI volume. Check that the right file was exported.")
    geometry = _geometry(image)
    mask = None
    if record.mask is not None:
        mask = _load_mask(record.mask, geometry, record, allow_empty_mask, record.mask_labels)
    return Scan(record=record, flair=flair, mask=mask, geometry=geometry)


def read_geometry(path: str | Path) -> Geometry:
    """A FLAIR's grid from its header alone: the header checks of `load_scan` (a readable 3-D
    NIfTI within `max_voxels`, a usable orientation, not a prediction; the warnings about its
    grid), no voxel read.

    Raises:
        FileNotFoundError: the file does not exist.
        ScanError: as `load_scan`, for what the header shows.
    """
    return _geometry(_open_flair(Path(path)))


def _open_flair(path: Path) -> nib.Nifti1Image:
    """`_open` a FLAIR, refuse a prediction, warn about a grid that cannot be trusted."""
    image = _open(path, "FLAIR")
    _refuse_outputs(path, image)
    _warn_geometry(path, image)
    return image


def _geometry(image: nib.Nifti1Image) -> Geometry:
    header = image.header
    return Geometry(
        shape=image.shape,
        affine=image.affine,
        qform=header.get_qform(),
        qform_code=int(header["qform_code"]),
        sform=header.get_sform(),
        sform_code=int(header["sform_code"]),
    )


def save_nifti(volume: np.ndarray, geometry: Geometry, path: str | Path, *,
               description: str | None = None) -> Path:
    """Write a native-grid array as NIfTI-1 with the scan's affine and header transforms.

    Args:
        volume: (X, Y, Z) array in the scan's storage order; its dtype is kept.
        geometry: the scan's geometry (shape must match `volume`).
        path: destination (.nii or .nii.gz); parent folders are created.
        description: the header's descrip (e.g. a `PREDICTION_DESCRIPTIONS` value).

    Returns:
        The written path.

    Raises:
        ValueError: shape mismatch with the geometry.
    """
    image = nifti_image(volume, geometry, description=description)
    with atomic_path(path) as temporary:
        nib.save(image, temporary)
    return Path(path)


def nifti_image(volume: np.ndarray, geometry: Geometry, *,
                description: str | None = None) -> nib.Nifti1Image:
    """A native-grid array as a NIfTI-1 image with the scan's affine and header transforms.

    Args:
        volume: (X, Y, Z) array in the scan's storage order; its dtype is kept.
        geometry: the scan's geometry (shape must match `volume`).
        description: the header's descrip, at most 80 characters.
    Raises:
        ValueError: shape mismatch with the geometry.
    """
    volume = np.asarray(volume)
    if volume.shape != geometry.shape:
        raise ValueError(f"volume shape {volume.shape} does not match the scan grid "
                         f"{geometry.shape}; map predictions back with msseg.data.native first.")
    image = nib.Nifti1Image(volume, geometry.affine)
    image.set_qform(geometry.qform, code=geometry.qform_code)
    image.set_sform(geometry.sform, code=geometry.sform_code)
    image.header.set_data_dtype(volume.dtype)
    if description is not None:
        image.header["descrip"] = description
    return image


def _open(path: Path, role: str) -> nib.Nifti1Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {role} file not found; check the data folder.")
    try:
        with _quiet_nibabel():  # its notes on headers it fixed: `grid_problems` says more
            image = nib.load(path)
    except _READ_ERRORS as error:
        raise ScanError(f"{path}: cannot read {role} as NIfTI ({type(error).__name__}: "
                        f"{error}); expected a .nii or .nii.gz file. Re-export or re-copy "
                        "it.") from error
    if not isinstance(image, nib.Nifti1Image):
        raise ScanError(f"{path}: {role} is a {type(image).__name__}, expected NIfTI "
                        "(.nii/.nii.gz); convert it, e.g. with dcm2niix or nibabel.")
    _check_size(path, role, image)
    try:
        while len(image.shape) > 3 and image.shape[-1] == 1:  # (X, Y, Z, 1): one volume
            image = image.slicer[..., 0]
    except _READ_ERRORS as error:
        raise ScanError(f"{path}: voxel data unreadable ({type(error).__name__}: {error}); the "
                        "file is truncated or corrupt. Re-copy it.") from error
    if len(image.shape) != 3:
        raise ScanError(f"{path}: {role} has shape {image.shape} ({len(image.shape)}-D); "
                        "expected one 3-D volume. Extract a single volume first "
                        "(e.g. nibabel.funcs.four_to_three).")
    if min(image.shape) < MIN_AXIS_VOXELS:
        axis = int(np.argmin(image.shape))
        raise ScanError(f"{path}: {role} has shape {image.shape}, {image.shape[axis]} voxel(s) "
                        f"along array axis {axis}; expected a 3-D scan with at least "
                        f"{MIN_AXIS_VOXELS} along every axis (resampling to a cube would copy "
                        "those few slices many times). Use a 3-D acquisition of the head.")
    dtype = image.get_data_dtype()
    if dtype.names is not None:
        kind = "".join(dtype.names)
        what = f"{kind} colour" if kind in ("RGB", "RGBA") else "structured"
        raise ScanError(f"{path}: {role} holds {what} voxels ({dtype}); expected one grey level "
                        "per voxel. Convert it to a grey-level image (the FLAIR as exported by "
                        "the scanner, e.g. with dcm2niix) and use that file.")
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise ScanError(f"{path}: {role} holds voxels of type {dtype}, not numbers; expected a "
                        "grey-level image. Re-export it.")
    if np.issubdtype(dtype, np.complexfloating):
        raise ScanError(f"{path}: {role} holds complex voxels ({dtype}); expected real "
                        "intensities. Save the magnitude image (e.g. numpy.abs of the data) and "
                        "use that file.")
    try:
        canonical_ornt(image.affine)
    except ValueError as error:
        raise ScanError(f"{path}: {role} header is unusable: {error}") from error
    return image


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel's logger says nothing while the block runs (without handlers, Python's last
    resort would still print its warnings)."""
    disabled = nibabel_logger.disabled
    nibabel_logger.disabled = True
    try:
        yield
    finally:
        nibabel_logger.disabled = disabled


def _check_size(path: Path, role: str, image: nib.Nifti1Image) -> None:
    """Refuse a header that declares more voxels than `max_voxels`, before reading them."""
    voxels, limit = math.prod(image.shape), max_voxels()
    if voxels <= limit:
        return
    size = voxels * image.get_data_dtype().itemsize
    raise ScanError(f"{path}: {role} header declares {'x'.join(map(str, image.shape))} = "
                    f"{voxels:,} voxels ({size / 2**30:.1f} GiB of "
                    f"{image.get_data_dtype()}), more than the limit of {limit:,}: a damaged "
                    f"header, or not a head scan. If the scan is real, raise the limit, e.g. "
                    f"{MAX_VOXELS_VARIABLE}={voxels} msseg ...")


def _read(path: Path, image: nib.Nifti1Image, dtype: type) -> np.ndarray:
    try:
        return np.asarray(image.get_fdata(dtype=dtype))
    except _READ_ERRORS as error:
        raise ScanError(f"{path}: voxel data unreadable ({type(error).__name__}: {error}); "
                        "the file is truncated or corrupt. Re-copy it.") from error
    except MemoryError:
        raise ScanError(f"{path}: not enough memory to read {math.prod(image.shape):,} voxels; "
                        f"free memory, or lower {MAX_VOXELS_VARIABLE} to refuse such files "
                        "at once") from None


def warn_if_oblique(path: Path, affine: np.ndarray, *, slabs: str, recipe: str) -> None:
    """Warn (`header_checks.oblique_problem`) when a scan's voxel axes are oblique enough to
    tilt the `slabs` a recipe cuts: said where the network sees slabs (training, prediction),
    not where none are cut (the ceiling, the threshold baseline)."""
    problem = oblique_problem(affine, slabs=slabs, recipe=recipe)
    if problem is not None:
        warnings.warn(f"{path}: {problem}", ScanWarning, stacklevel=1)  # shown once per text


def _refuse_outputs(path: Path, image: nib.Nifti1Image) -> None:
    """A file `predict` wrote is never a scan."""
    text = image.header["descrip"].item().decode("latin-1").rstrip("\0")
    for what in PREDICTION_DESCRIPTIONS.values():
        if text == what:
            raise ScanError(f"{path}: FLAIR is a {what.removeprefix('msseg ')} written by msseg "
                            f"predict, not a scan; give the FLAIR it was predicted from")


def _warn_geometry(path: Path, image: nib.Nifti1Image) -> None:
    """Warn about each of `header_checks.grid_problems` (the header as the file holds it)."""
    for problem in grid_problems(stored_header(path, image), image.affine):
        warnings.warn(f"{path}: {problem}", ScanWarning, stacklevel=1)  # shown once per text


def _check_finite(path: Path, volume: np.ndarray) -> None:
    bad = ~np.isfinite(volume)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ScanError(f"{path}: {int(bad.sum())} voxels are NaN or infinite (first at index "
                        f"{first}); expected finite intensities. Fix or re-export the file.")


def _load_mask(path: Path, geometry: Geometry, record: ScanRecord, allow_empty: bool,
               labels: tuple[int, ...] | str | None = None) -> np.ndarray:
    flair_path = record.flair
    image = _open(path, "mask")
    if image.shape != geometry.shape:
        raise ScanError(f"{path}: mask grid {image.shape} differs from the FLAIR grid "
                        f"{geometry.shape} ({flair_path}); expected the same voxel grid. "
                        "Resample the mask onto the FLAIR.")
    if not np.allclose(image.affine, geometry.affine, rtol=0, atol=_AFFINE_ATOL_MM):
        raise ScanError(f"{path}: mask affine differs from the FLAIR's ({flair_path}) by up to "
                        f"{np.abs(image.affine - geometry.affine).max():.4g} mm; expected the "
                        f"same grid.\nmask:\n{image.affine}\nFLAIR:\n{geometry.affine}\n"
                        "Resample the mask onto the FLAIR.")
    mask = _read(path, image, np.float32)
    _check_finite(path, mask)
    if labels is not None:
        mask = (mask != 0) if labels == "nonzero" else np.isin(mask, labels)
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        values = np.unique(mask[~binary])
        raise ScanError(f"{path}: mask is not binary: {int((~binary).sum())} voxels with values "
                        f"such as {values[:5].tolist()}; expected only 0 and 1. Name the lesion "
                        "label(s) with --label N [N ...] or take every non-zero label with "
                        "--label nonzero.")
    if not allow_empty and not mask.any():
        raise ScanError(f"{path}: mask is empty (no lesion voxel); expected a lesion mask for "
                        f"training. Check the file, or leave the scan out of training "
                        f"(--exclude {record.patient_id}); evaluate accepts lesion-free scans")
    return mask.astype(np.uint8)

"""Paths made from input data: a scan id is a file name, never a path, and every path made from
one stays in its folder.

Patient ids come from the data (folder names, file names, a CSV's ``patient_id`` column) and
name what msseg writes: ``<id>_mask.nii.gz``, cache entries ``<id>-<key>/``, overlays
``<id>.png``. `check_id` refuses an id that could name anything but one visible file in one
folder (a separator, ``..``, a leading dot, a control character, an over-long name); every
`msseg.io.discovery.ScanRecord` checks its id when it is made. `output_path` joins a name to a
folder and refuses a result that lies outside it (a link included); every path msseg writes
that is made from an id goes through it.

`check_outside` keeps an output folder out of a data folder whose sub-folders are read as
scans (an MSSEG folder): a run, a cache or predictions there would be read as a patient next
time.

Public API:
    MAX_ID_LENGTH
    id_problem(patient_id) -> str | None
    check_id(patient_id, *, where="") -> str
    output_path(folder, name) -> Path
    check_outside(path, data, *, what) -> None
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

__all__ = ["MAX_ID_LENGTH", "check_id", "check_outside", "id_problem", "output_path"]

# "<id>_prob.nii.gz" under its temporary name ".<id>_prob.<pid>.partial.nii.gz" stays within
# the 255 bytes a file name may have
MAX_ID_LENGTH = 200
_SEPARATORS = ("/", "\\")
_CONTROL_NAMES = {0: "NUL", 9: "tab", 10: "line feed", 13: "carriage return"}


def id_problem(patient_id: object) -> str | None:
    """What keeps `patient_id` from being a plain file name, as a phrase, or None.

    Args:
        patient_id: the id as read from the data.
    Returns:
        e.g. ``"leads out of its folder ('..')"``, or None for a usable id.
    """
    if not isinstance(patient_id, str):
        return f"is a {type(patient_id).__name__}, not text"
    if not patient_id.strip():
        return "is empty"
    if any(part == ".." for part in patient_id.replace("\\", "/").split("/")):
        return "leads out of its folder ('..')"
    if any(separator in patient_id for separator in _SEPARATORS):
        return "is a path (it contains '/' or '\\'), not a name"
    if patient_id.startswith("."):
        return "starts with '.' (a hidden file name, or the folder itself)"
    control = next((c for c in patient_id if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        name = _CONTROL_NAMES.get(ord(control), f"U+{ord(control):04X}")
        return f"holds a control character ({name})"
    if len(patient_id.encode()) > MAX_ID_LENGTH:
        return (f"is {len(patient_id)} characters long ({len(patient_id.encode())} bytes), "
                f"more than the {MAX_ID_LENGTH} a file name leaves room for")
    return None


def check_id(patient_id: str, *, where: str = "") -> str:
    """Return `patient_id` if it is a plain file name (see `id_problem`).

    Args:
        patient_id: the id.
        where: what the message starts with, e.g. ``"scans.csv, line 3: "``.
    Returns:
        `patient_id`, unchanged.
    Raises:
        ValueError: naming the id, the problem and the fix.
    """
    problem = id_problem(patient_id)
    if problem is not None:
        raise ValueError(f"{where}patient_id {patient_id!r} {problem}; ids name the output "
                         f"files, so rename the scan (or its patient_id) to a plain name such "
                         f"as 01016SACH")
    return patient_id


def output_path(folder: str | Path, name: str) -> Path:
    """``folder / name``, checked to lie in `folder` once links are followed.

    Args:
        folder: the output folder (need not exist).
        name: one file or folder name, e.g. ``"01016SACH_mask.nii.gz"``.
    Returns:
        ``Path(folder) / name``.
    Raises:
        ValueError: `name` is not a single file name, or the path leads outside `folder`
            (e.g. through a link).
    """
    folder = Path(folder)
    if not name or name in (".", "..") or any(s in name for s in _SEPARATORS) or "\0" in name:
        raise ValueError(f"{name!r} is not a file name, so it cannot be written in {folder}; "
                         f"this is a bug: the name should come from a checked id")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"{path}: leads outside {folder} (to {path.resolve()}), so msseg does "
                         f"not write it; remove the link or choose another output folder")
    return path


def check_outside(path: str | Path, data: str | Path, *, what: str) -> None:
    """Refuse an output folder inside `data`, a folder whose sub-folders are read as scans.

    Args:
        path: the output folder (need not exist).
        data: the data folder (`msseg.io.discovery.patient_folders`).
        what: the output, for the message (e.g. "run folder").
    Raises:
        ValueError: `path` is `data` or lies inside it.
    """
    inside, folder = Path(path).resolve(), Path(data).resolve()
    if inside == folder or folder in inside.parents:
        raise ValueError(f"{path}: lies inside the data folder {data}, whose sub-folders are "
                         f"read as patients, so the {what} would be read as one next time; "
                         f"write it outside the data folder")

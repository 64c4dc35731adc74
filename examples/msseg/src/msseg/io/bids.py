"""BIDS datasets: FLAIRs from ``sub-*/[ses-*/]anat/``, lesion masks from a derivatives folder,
and outputs named as BIDS derivatives.

    records = find_bids_scans("data/bids")            # masks required (training, evaluation)
    bids_output_path("pred", "sub-01_ses-02", "mask")
    # pred/sub-01/ses-02/anat/sub-01_ses-02_space-orig_desc-lesion_mask.nii.gz

A scan is a ``<root>/sub-<S>/[ses-<T>/]anat/<entities>_FLAIR.nii[.gz]`` file; its id is
``<entities>`` (``sub-01_ses-02``, with ``_acq-...``/``_run-...`` when the file has them), which
says where its outputs go. Its lesion mask is the one file under ``<root>/derivatives/<pipeline>/``,
at the same ``sub-<S>/[ses-<T>/]anat/`` place, whose name starts with ``<entities>_``, ends
``_mask.nii[.gz]`` and has a ``label-`` or ``desc-`` entity naming a lesion (e.g.
``sub-01_ses-02_space-orig_desc-lesion_mask.nii.gz``); derivative datasets that msseg itself
generated (their ``dataset_description.json`` says so) are predictions, never masks. The centre
is the ``site`` (or ``centre``, ``center``) column of ``participants.tsv`` when it has one.

Outputs named as BIDS derivatives (`bids_output_path`) form a derivative dataset: the output
folder gets a ``dataset_description.json`` (`DESCRIPTION`) naming msseg as its generator.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from msseg.io.discovery import ScanRecord

__all__ = ["BIDS_SUFFIXES", "DESCRIPTION", "bids_output_path", "find_bids_scans", "is_bids_folder"]

# Per output kind: the entities and suffix after the scan's own entities.
BIDS_SUFFIXES = {"mask": "space-orig_desc-lesion_mask.nii.gz",
                 "prob": "space-orig_label-lesion_probseg.nii.gz",
                 "lesions": "space-orig_desc-lesions_dseg.nii.gz",
                 "table": "space-orig_desc-lesions_table.csv"}
DESCRIPTION = {"Name": "msseg lesion segmentations", "BIDSVersion": "1.9.0",
               "DatasetType": "derivative", "GeneratedBy": [{"Name": "msseg"}]}
_FLAIR = re.compile(r"^(?P<id>sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*)_FLAIR\.nii(\.gz)?$")
_ENTITY = re.compile(r"^[a-z]+-[A-Za-z0-9]+$")
_SITE_COLUMNS = ("site", "centre", "center")


def is_bids_folder(path: str | Path) -> bool:
    """Whether `path` holds a BIDS dataset: ``dataset_description.json`` or ``sub-*/`` folders."""
    path = Path(path)
    return path.is_dir() and ((path / "dataset_description.json").is_file()
                              or any(p.is_dir() and p.name.startswith("sub-")
                                     for p in path.iterdir()))


def find_bids_scans(root: str | Path, *, require_masks: bool = True) -> list[ScanRecord]:
    """The FLAIR scans of a BIDS dataset and their lesion masks (module docstring).

    Args:
        root: the dataset folder.
        require_masks: every scan needs its mask (training, evaluation).
    Returns:
        Records sorted by id.
    Raises:
        ValueError: no ``*_FLAIR.nii[.gz]`` under ``sub-*/[ses-*/]anat/``, or two masks for one
            scan (named).
        FileNotFoundError: a required mask is missing (the message says where it was looked for).
    """
    root = Path(root)
    flairs = sorted({*root.glob("sub-*/anat/*_FLAIR.nii*"),
                     *root.glob("sub-*/ses-*/anat/*_FLAIR.nii*")})
    matched = [(m.group("id"), p) for p in flairs if (m := _FLAIR.match(p.name))]
    if not matched:
        raise ValueError(f"{root}: no FLAIR in BIDS form; expected "
                         "sub-<S>/[ses-<T>/]anat/sub-<S>[_ses-<T>]_FLAIR.nii.gz files")
    sites = _sites(root)
    masks = _derivative_masks(root, [scan_id for scan_id, _ in matched])
    records = []
    for scan_id, flair in matched:
        found = masks.get(scan_id, [])
        if len(found) > 1:
            raise ValueError(f"{root}: {len(found)} lesion masks for {scan_id}: "
                             f"{', '.join(map(str, found))}; keep one (or move the others out "
                             "of derivatives/)")
        if not found and require_masks:
            place = flair.parent.relative_to(root)
            raise FileNotFoundError(
                f"{root}: no lesion mask for {scan_id}; expected derivatives/<pipeline>/{place}/"
                f"{scan_id}_{BIDS_SUFFIXES['mask']} (a _mask file with a label- or desc- entity "
                "naming a lesion)")
        subject = scan_id.split("_")[0]
        records.append(ScanRecord(scan_id, sites.get(subject), flair, found[0] if found else None))
    return records


def bids_output_path(out_dir: str | Path, scan_id: str, kind: str) -> Path:
    """Where an output of scan `scan_id` goes as a BIDS derivative (module docstring).

    Raises:
        ValueError: an id that is not BIDS entities (``sub-<S>[_<key>-<value>...]``) or an
            unknown kind.
    """
    parts = scan_id.split("_")
    if not parts[0].startswith("sub-") or not all(_ENTITY.match(p) for p in parts):
        raise ValueError(f"{scan_id!r} is not a BIDS scan id (sub-<S>[_ses-<T>...]); BIDS "
                         "names need scans read from a BIDS dataset")
    if kind not in BIDS_SUFFIXES:
        raise ValueError(f"kind must be one of {tuple(BIDS_SUFFIXES)}; found {kind!r}")
    folder = Path(out_dir, parts[0], *(p for p in parts[1:2] if p.startswith("ses-")), "anat")
    return folder / f"{scan_id}_{BIDS_SUFFIXES[kind]}"


def _derivative_masks(root: Path, scan_ids: list[str]) -> dict[str, list[Path]]:
    """Scan id -> the lesion masks for it in the derivatives of `root` (a mask belongs to the
    longest scan id its name starts with, so ``..._run-2_desc-lesion_mask`` is run 2's)."""
    longest_first = sorted(scan_ids, key=len, reverse=True)
    found: dict[str, list[Path]] = {}
    for pipeline in sorted(p for p in (root / "derivatives").glob("*") if p.is_dir()):
        if _generated_by_msseg(pipeline):
            continue
        for path in sorted(pipeline.glob("sub-*/**/anat/*_mask.nii*")):
            entities = path.name.split(".")[0].split("_")
            if not any(e.startswith(("label-", "desc-")) and "lesion" in e.lower()
                       for e in entities):
                continue
            owner = next((i for i in longest_first if path.name.startswith(i + "_")), None)
            if owner is not None:
                found.setdefault(owner, []).append(path)
    return found


def _generated_by_msseg(pipeline: Path) -> bool:
    try:
        meta = json.loads((pipeline / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return False
    return any(isinstance(g, dict) and g.get("Name") == "msseg"
               for g in meta.get("GeneratedBy", []) or [])


def _sites(root: Path) -> dict[str, str]:
    path = root / "participants.tsv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    column = next((c for c in _SITE_COLUMNS if rows and c in rows[0]), None)
    if column is None:
        return {}
    return {row["participant_id"]: row[column] for row in rows
            if row.get("participant_id") and row.get(column) not in (None, "", "n/a")}

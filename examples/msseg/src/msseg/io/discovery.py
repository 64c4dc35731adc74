"""Finding scans on disk, in every layout msseg reads, and naming what `predict` writes.

Layouts (`detect_layout` tells them apart; `discover_scans` and `find_inputs` read any of them):
- MSSEG 2016: ``<root>/<PATIENT>/3DFLAIR.nii.gz`` and ``<root>/<PATIENT>/Consensus.nii.gz``;
  the centre is the patient id's first two digits (``07003SATH`` → ``"07"``).
- nnU-Net raw: ``dataset.json``, ``imagesTr/<CASE>_0000.nii.gz``, ``labelsTr/<CASE>.nii.gz``,
  ``imagesTs/``: the FLAIR channel and the lesion label chosen by their names in dataset.json
  (`msseg.io.nnunet`).
- BIDS: ``sub-*/[ses-*/]anat/*_FLAIR.nii.gz``, masks from ``derivatives/`` (`msseg.io.bids`).
- Pattern: a FLAIR path pattern with one ``{id}`` field and shell wildcards, plus an optional mask
  pattern with the same field, e.g. ``data/{id}/flair.nii.gz`` and ``data/{id}/lesions.nii.gz``.
- CSV: a header with ``patient_id,flair`` and optionally ``mask`` and ``centre``; relative paths
  are resolved against the CSV's folder.
A folder that is none of these is refused in one line naming what each layout expects
(`LAYOUTS`).

Outputs are named in one of `OUTPUT_NAMINGS` (`prediction_path`): msseg's own
(``<id>_mask.nii.gz`` ...), nnU-Net's (``<CASE>.nii.gz`` masks alone in the folder, so nnU-Net's
evaluation reads it, the other maps in ``maps/``), or BIDS derivatives
(``sub-X/ses-Y/anat/sub-X_ses-Y_space-orig_desc-lesion_mask.nii.gz``).

Records are sorted by patient id (the paper's cross-validation is in alphabetical order). A
patient id names output files, so it must be a plain file name (`msseg.io.paths.check_id`): every
`ScanRecord` checks its own, and the readers check each where they read it, naming the folder,
file or CSV line. Hidden files and folders are never scans (a killed writer's temporary files
are hidden). Nothing is read here beyond directory listings and CSVs; `msseg.io.nifti.load_scan`
loads and validates the files.

Public API:
    ScanRecord(patient_id, centre, flair, mask)
    msseg_centre(patient_id) -> str
    find_msseg_scans(root, *, require_masks=True) -> list[ScanRecord]
    find_pattern_scans(flair_pattern, *, mask_pattern=None) -> list[ScanRecord]
    read_scan_csv(path, *, require_masks=True) -> list[ScanRecord]
    detect_layout(source) -> str                   one of LAYOUT_NAMES
    discover_scans(source, *, mask_pattern=None, require_masks=True) -> list[ScanRecord]
    find_inputs(source) -> list[ScanRecord]        the FLAIRs to predict (masks never read)
    prediction_path(out_dir, patient_id, kind="mask", *, naming="msseg") -> Path
                                                   where `predict` writes a scan's outputs
    find_prediction(pred_dir, patient_id) -> (Path, naming) | None   a mask, in any naming
    patient_folders(source) -> Path | None   the folder whose sub-folders are read as patients
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import re
from dataclasses import dataclass
from pathlib import Path

from msseg.io.paths import check_id, output_path

MSSEG_FLAIR = "3DFLAIR.nii.gz"
MSSEG_MASK = "Consensus.nii.gz"
MSSEG_PATIENTS: tuple[str, ...] = (
    "01016SACH", "01038PAGU", "01039VITE", "01040VANE", "01042GULE",
    "07001MOEL", "07003SATH", "07010NABO", "07040DORE", "07043SEME",
    "08002CHJE", "08027SYBR", "08029IVDI", "08031SEVE", "08037ROGU",
)  # fmt: skip
# What `predict` writes per scan, the mask first: the mask, the probability map, the lesion map,
# the lesion table (msseg naming: <id>_mask.nii.gz, _prob.nii.gz, _lesions.nii.gz, _lesions.csv).
PREDICTION_KINDS = ("mask", "prob", "lesions", "table")
OUTPUT_NAMINGS = ("msseg", "nnunet", "bids")
NNUNET_MAPS = "maps"  # nnU-Net naming: the folder of every NIfTI output but the masks
LAYOUT_NAMES = ("msseg", "nnunet", "bids", "csv", "pattern")
LAYOUTS = ("an MSSEG folder (<root>/<PATIENT>/3DFLAIR.nii.gz, Consensus.nii.gz), an nnU-Net "
           "dataset (dataset.json, imagesTr/<CASE>_0000.nii.gz, labelsTr/<CASE>.nii.gz), a BIDS "
           "dataset (sub-*/[ses-*/]anat/*_FLAIR.nii.gz, masks in derivatives/), a scan CSV "
           "(patient_id,flair,mask) or a FLAIR pattern with {id}")
_ID_FIELD = "{id}"
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class ScanRecord:
    """One scan to load.

    Attributes:
        patient_id: unique id, e.g. "01016SACH".
        centre: acquisition centre ("01", "07", "08" for MSSEG), or None when unknown.
        flair: path of the FLAIR NIfTI file.
        mask: path of the binary lesion mask, or None for prediction-only inputs.
        mask_labels: the mask's labels that mark lesion (a multi-label mask), or "nonzero" for
            all but 0; None: the mask must hold only 0 and 1.

    Raises:
        ValueError: a patient id that is not a plain file name (`msseg.io.paths.check_id`).
    """

    patient_id: str
    centre: str | None
    flair: Path
    mask: Path | None
    mask_labels: tuple[int, ...] | str | None = None

    def __post_init__(self) -> None:
        check_id(self.patient_id)


def msseg_centre(patient_id: str) -> str:
    """Centre of an MSSEG patient id: its first two characters, which must be digits.

    Raises:
        ValueError: the id does not start with two digits.
    """
    if len(patient_id) < 3 or not patient_id[:2].isdigit():
        raise ValueError(
            f"MSSEG patient ids start with a two-digit centre number (e.g. 01016SACH); found "
            f"{patient_id!r}. Use the pattern or CSV layout for other naming schemes."
        )
    return patient_id[:2]


def find_msseg_scans(root: str | Path, *, require_masks: bool = True) -> list[ScanRecord]:
    """List the patients of an MSSEG-2016 folder.

    Args:
        root: folder with one sub-folder per patient (hidden folders are ignored).
        require_masks: if True every patient needs Consensus.nii.gz; if False a missing mask
            gives mask=None (prediction-only input).

    Returns:
        Records sorted by patient id, centre = first two digits.

    Raises:
        FileNotFoundError: root missing, or a patient folder lacks 3DFLAIR.nii.gz (or the mask
            when required).
        ValueError: root has no patient folders, or a folder name is not an MSSEG id or not a
            plain file name.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: MSSEG data folder not found; expected a directory "
                                f"with one sub-folder per patient containing {MSSEG_FLAIR}.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root}: no patient folders found; expected <root>/<PATIENT>/"
                         f"{MSSEG_FLAIR} (e.g. create one with `msseg phantom`).")
    records = []
    for folder in folders:
        check_id(folder.name, where=f"{folder}: ")
        flair = folder / MSSEG_FLAIR
        if not flair.is_file():
            raise FileNotFoundError(f"{flair}: FLAIR file missing for patient {folder.name}; "
                                    f"every patient folder needs {MSSEG_FLAIR} (runs, caches "
                                    f"and predictions belong outside the data folder).")
        centre = msseg_centre(folder.name)
        mask = _mask_or_none(folder / MSSEG_MASK, require_masks, folder.name)
        records.append(ScanRecord(folder.name, centre, flair, mask))
    return records


def find_pattern_scans(
    flair_pattern: str, *, mask_pattern: str | None = None
) -> list[ScanRecord]:
    """Pair FLAIR and mask files by a shared ``{id}`` field in two path patterns.

    Args:
        flair_pattern: path with exactly one ``{id}`` and optional ``*``/``?`` wildcards,
            e.g. ``data/{id}/flair.nii.gz``.
        mask_pattern: the mask's path with the same ``{id}``; None for prediction-only input.

    Returns:
        Records sorted by id, centre None.

    Raises:
        ValueError: a pattern lacks ``{id}``, or no file matches.
        FileNotFoundError: a FLAIR has no mask at the expected path.
    """
    for name, pattern in (("flair_pattern", flair_pattern), ("mask_pattern", mask_pattern)):
        if pattern is not None and pattern.count(_ID_FIELD) != 1:
            raise ValueError(f"{name} must contain {_ID_FIELD} exactly once; found {pattern!r}")
    regex = re.compile(_pattern_regex(flair_pattern))
    found: dict[str, Path] = {}
    for path in sorted(glob.glob(flair_pattern.replace(_ID_FIELD, "*"))):
        match = regex.fullmatch(path)
        if match is None:
            continue
        if match.group("id") in found:
            raise ValueError(f"{flair_pattern!r} matches two FLAIR files for id "
                             f"{match.group('id')!r}: {found[match.group('id')]} and {path}; "
                             "make the pattern specific enough to give one file per id.")
        found[match.group("id")] = Path(path)
    if not found:
        raise ValueError(f"no FLAIR file matches {flair_pattern!r}; check the path and that "
                         f"{_ID_FIELD} marks the patient id part.")
    records = []
    for patient_id, flair in sorted(found.items()):
        check_id(patient_id, where=f"{flair}: ")
        mask = None
        if mask_pattern is not None:
            mask = _mask_or_none(Path(mask_pattern.replace(_ID_FIELD, patient_id)), True,
                                 patient_id)
        records.append(ScanRecord(patient_id, None, flair, mask))
    return records


def read_scan_csv(path: str | Path, *, require_masks: bool = True) -> list[ScanRecord]:
    """Read records from a CSV with columns patient_id, flair[, mask][, centre].

    Raises:
        FileNotFoundError: the CSV, a FLAIR, or a required mask is missing.
        ValueError: a file that is not UTF-8 CSV, a required column is absent, a row is empty,
            or an id is repeated or not a plain file name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scan list CSV not found.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: cannot read it as a CSV of scans ({error}); expected UTF-8 "
                         f"text with columns patient_id,flair,mask[,centre]") from None
    columns = set(rows[0]) if rows else set()
    missing = {"patient_id", "flair"} - columns
    if require_masks:
        missing |= {"mask"} - columns
    if missing:
        raise ValueError(f"{path}: CSV needs columns patient_id, flair, mask[, centre]; "
                         f"found {sorted(columns)}, missing {sorted(missing)}.")
    records: dict[str, ScanRecord] = {}
    for line, row in enumerate(rows, start=2):
        patient_id, flair_text = (row.get("patient_id") or "").strip(), row["flair"] or ""
        if not patient_id or not flair_text.strip():
            raise ValueError(f"{path}, line {line}: empty patient_id or flair value.")
        check_id(patient_id, where=f"{path}, line {line}: ")
        if patient_id in records:
            raise ValueError(f"{path}, line {line}: patient_id {patient_id!r} appears twice.")
        flair = path.parent / flair_text.strip()
        if not flair.is_file():
            raise FileNotFoundError(f"{flair}: FLAIR file listed in {path} (line {line}) "
                                    "not found.")
        mask_text = (row.get("mask") or "").strip()
        mask = _mask_or_none(path.parent / mask_text, True, patient_id) if mask_text else None
        if mask is None and require_masks:
            raise ValueError(f"{path}, line {line}: empty mask for {patient_id!r}; training and "
                             f"evaluation need one: give it, or leave the scan out of training "
                             f"(--exclude {patient_id}); `msseg predict` needs no mask")
        centre = (row.get("centre") or "").strip() or None
        records[patient_id] = ScanRecord(patient_id, centre, flair, mask)
    return [records[k] for k in sorted(records)]


def detect_layout(source: str | Path) -> str:
    """Which layout `source` is in (one of `LAYOUT_NAMES`), from its name and folder listings:
    a pattern has ``{id}``, a CSV ends ``.csv``, an nnU-Net dataset (or one of its images
    folders) has ``dataset.json``, a BIDS dataset ``sub-*/`` folders or
    ``dataset_description.json``; anything else is read as MSSEG."""
    from msseg.io.bids import is_bids_folder
    from msseg.io.nnunet import is_nnunet_folder

    text = str(source)
    if _ID_FIELD in text:
        return "pattern"
    if text.lower().endswith(".csv"):
        return "csv"
    if Path(source).is_dir() and is_nnunet_folder(source):
        return "nnunet"
    if Path(source).is_dir() and is_bids_folder(source):
        return "bids"
    return "msseg"


def discover_scans(
    source: str | Path, *, mask_pattern: str | None = None, require_masks: bool = True,
    mask_labels: tuple[int, ...] | str | None = None,
) -> list[ScanRecord]:
    """Read the scans of `source` in its layout (`detect_layout`).

    Args:
        source: CSV path, FLAIR pattern, MSSEG folder, nnU-Net dataset (its imagesTr/labelsTr)
            or one of its images folders (with the labels folder beside it), or BIDS dataset.
        mask_pattern: mask pattern for the pattern layout (ignored otherwise).
        require_masks: whether every scan needs a mask (training) or not (prediction).
        mask_labels: set on every record (see `ScanRecord`); None keeps the layout's (nnU-Net:
            the lesion label of dataset.json; others: masks of 0 and 1).

    Returns:
        Records sorted by patient id.

    Raises:
        FileNotFoundError, ValueError: as the layout's reader; a folder in no layout msseg
            reads is one ValueError naming what each layout expects.
    """
    from msseg.io.bids import find_bids_scans
    from msseg.io.nnunet import find_nnunet_scans

    text = str(source)
    layout = detect_layout(source)
    if layout == "pattern":
        if require_masks and mask_pattern is None:
            raise ValueError(f"the FLAIR pattern {text!r} needs a mask pattern with {_ID_FIELD} "
                             "(--mask-pattern); `msseg predict` takes FLAIRs alone")
        records = find_pattern_scans(text, mask_pattern=mask_pattern)
    elif layout == "csv":
        records = read_scan_csv(text, require_masks=require_masks)
    elif layout == "nnunet":
        records = find_nnunet_scans(source, require_masks=require_masks)
    elif layout == "bids":
        records = find_bids_scans(source, require_masks=require_masks)
    else:
        root = Path(source)
        if root.is_dir() and any(p.is_dir() for p in root.iterdir()) and not any(
                (p / MSSEG_FLAIR).is_file() for p in root.iterdir()):
            raise ValueError(f"{root}: not a dataset msseg reads; expected {LAYOUTS}")
        records = find_msseg_scans(root, require_masks=require_masks)
    if mask_labels is None:
        return records
    return [dataclasses.replace(r, mask_labels=mask_labels) for r in records]


def find_inputs(source: str | Path) -> list[ScanRecord]:
    """The FLAIR scans to predict, named by patient; their masks are neither needed nor read.

    Args:
        source: one NIfTI file (id: its name; an MSSEG ``<PATIENT>/3DFLAIR.nii.gz``: the
            patient; a BIDS ``<entities>_FLAIR.nii.gz``: its entities); one MSSEG patient folder
            (``<PATIENT>/3DFLAIR.nii.gz``: that patient); an nnU-Net dataset (its imagesTs, or
            imagesTr when it has no test images) or images folder (the FLAIR channel of each
            case); a BIDS dataset; a folder of NIfTI files (one scan each, id = file name); an
            MSSEG folder of patient folders; or a scan CSV.
    Returns:
        Records sorted by patient id, without masks.
    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: a folder in no layout msseg reads.
    """
    from msseg.io.nnunet import find_nnunet_scans

    source = Path(source)
    if source.is_file() and source.name.endswith(_NIFTI):
        return [ScanRecord(_input_id(source), None, source, None)]
    if (source / MSSEG_FLAIR).is_file():
        return [ScanRecord(source.name, None, source / MSSEG_FLAIR, None)]
    if not source.exists():
        raise FileNotFoundError(f"{source}: input not found; give a FLAIR .nii/.nii.gz file, a "
                                f"folder of them, or {LAYOUTS}")
    layout = detect_layout(source)
    if layout == "nnunet" and (source / "imagesTs").is_dir() and any(
            (source / "imagesTs").iterdir()):
        records = find_nnunet_scans(source / "imagesTs", require_masks=False)
    elif layout != "msseg" or not source.is_dir():
        records = discover_scans(source, require_masks=False)
    else:
        files = sorted(p for p in source.iterdir() if p.is_file() and p.name.endswith(_NIFTI)
                       and not p.name.startswith("."))
        if files:
            return [ScanRecord(_input_id(p), None, p, None) for p in files]
        records = discover_scans(source, require_masks=False)
    return [dataclasses.replace(r, mask=None) for r in records]


def patient_folders(source: str | Path) -> Path | None:
    """The folder whose sub-folders are read as patients (an MSSEG folder), when `source` is
    read that way; None for a file, a pattern, one patient folder, a folder of NIfTI files, an
    nnU-Net or a BIDS dataset (whose readers take their own folders only: images*, sub-*).

    An output written inside such a folder would be read as a patient next time.
    """
    path = Path(source)
    if not path.is_dir() or (path / MSSEG_FLAIR).is_file() or detect_layout(path) != "msseg":
        return None
    if any(p.is_file() and p.name.endswith(_NIFTI) and not p.name.startswith(".")
           for p in path.iterdir()):
        return None
    return path


def prediction_path(out_dir: str | Path, patient_id: str, kind: str = "mask", *,
                    naming: str = "msseg") -> Path:
    """Where `predict` writes a scan's output and `evaluate` reads its mask.

    Args:
        out_dir: the output folder.
        patient_id: the scan's id.
        kind: "mask", "prob" (probability map), "lesions" (lesion map) or "table" (the lesion
            table, CSV).
        naming: "msseg": ``<out>/<id>_<kind>.nii.gz`` (the table ``<id>_lesions.csv``);
            "nnunet": the mask ``<out>/<id>.nii.gz``, the other maps ``<out>/maps/<id>_<kind>
            .nii.gz``, the table ``<out>/<id>_lesions.csv``; "bids": BIDS derivative names
            (`msseg.io.bids.bids_output_path`).
    Raises:
        ValueError: an unknown kind or naming, an id that is not a plain file name
            (`msseg.io.paths.check_id`), or one that is not BIDS entities for "bids".
    """
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"kind must be one of {PREDICTION_KINDS}; found {kind!r}")
    if naming not in OUTPUT_NAMINGS:
        raise ValueError(f"naming must be one of {OUTPUT_NAMINGS}; found {naming!r}")
    check_id(patient_id)
    if naming == "bids":
        from msseg.io.bids import bids_output_path

        return bids_output_path(out_dir, patient_id, kind)
    if kind == "table":
        return output_path(out_dir, f"{patient_id}_lesions.csv")
    if naming == "nnunet":
        if kind == "mask":
            return output_path(out_dir, f"{patient_id}.nii.gz")
        return output_path(Path(out_dir) / NNUNET_MAPS, f"{patient_id}_{kind}.nii.gz")
    return output_path(out_dir, f"{patient_id}_{kind}.nii.gz")


def find_prediction(pred_dir: str | Path, patient_id: str) -> tuple[Path, str] | None:
    """A scan's predicted mask in `pred_dir` and the naming it was written in (the first of
    `OUTPUT_NAMINGS` that has it), or None."""
    for naming in OUTPUT_NAMINGS:
        try:
            path = prediction_path(pred_dir, patient_id, naming=naming)
        except ValueError:  # not a BIDS id
            continue
        if path.is_file():
            return path, naming
    return None


def _input_id(path: Path) -> str:
    """A FLAIR file's scan id: its name without extension; for MSSEG's fixed file name, the
    patient folder's name; for a BIDS ``<entities>_FLAIR`` file, its entities."""
    if path.name == MSSEG_FLAIR:
        return check_id(path.resolve().parent.name, where=f"{path}: ")
    stem = next(path.name[: -len(s)] for s in _NIFTI if path.name.endswith(s))
    if stem.startswith("sub-") and stem.endswith("_FLAIR"):
        stem = stem[: -len("_FLAIR")]
    return check_id(stem, where=f"{path}: ")


def _mask_or_none(path: Path, required: bool, patient_id: str) -> Path | None:
    if path.is_file():
        return path
    if required:
        raise FileNotFoundError(f"{path}: lesion mask missing; training and evaluation need "
                                f"it: add it, or leave the scan out of training (--exclude "
                                f"{patient_id}); `msseg predict` needs no mask")
    return None


def _pattern_regex(pattern: str) -> str:
    """Regex for a glob pattern whose {id} becomes the named group `id`."""
    before, after = pattern.split(_ID_FIELD)
    return _glob_regex(before) + r"(?P<id>[^/\\]+?)" + _glob_regex(after)


def _glob_regex(text: str) -> str:
    return "".join(
        r"[^/\\]*" if c == "*" else r"[^/\\]" if c == "?" else re.escape(c) for c in text
    )

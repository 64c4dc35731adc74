"""The nnU-Net raw dataset layout: which files are FLAIRs and masks, and the names nnU-Net reads.

    dataset = read_dataset_json("nnUNet_raw/Dataset001_MS")
    records = find_nnunet_scans("nnUNet_raw/Dataset001_MS")              # imagesTr + labelsTr
    records = find_nnunet_scans("nnUNet_raw/Dataset001_MS/imagesTs", require_masks=False)

A dataset folder holds ``dataset.json`` and ``imagesTr/`` (``labelsTr/``), maybe ``imagesTs/``
(and, in many datasets, ``labelsTs/``): images are ``<CASE>_<XXXX><ending>``, one file per input
channel XXXX, masks ``<CASE><ending>``; ``dataset.json`` names the channels (``channel_names``,
or ``modality`` in the first nnU-Net) and the labels (``labels``: name -> value, a list of
values for a region, or value -> name in the first nnU-Net) and gives ``file_ending``.

msseg reads one channel, the FLAIR: the channel whose name is "FLAIR" (any case), else the only
one whose name contains it. The lesion label is the only label other than background, else the
only one whose name contains "lesion"; a mask's voxels of that label (or of any of a region's
values) are lesion, every other value is not (`ScanRecord.mask_labels`). A dataset where either
choice is not clear is refused with the names found, so nothing is read from the wrong channel.

nnU-Net's own evaluation (``nnUNetv2_evaluate_folder`` / ``_simple``) scores every
``*<ending>`` file of a prediction folder against the reference file of the same name, so such a
folder holds the masks ``<CASE><ending>`` (voxels of the lesion label's value) and no other file
with that ending: `nnunet_mask_name` names them; other maps go in a sub-folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from msseg.io.discovery import ScanRecord

__all__ = ["DATASET_JSON", "NnunetDataset", "find_nnunet_scans", "is_nnunet_folder",
           "nnunet_mask_name", "read_dataset_json"]

DATASET_JSON = "dataset.json"
_IMAGES = re.compile(r"^images(?P<subset>\w*)$")  # imagesTr, imagesTs, imagesVal, ...


@dataclass(frozen=True)
class NnunetDataset:
    """What msseg reads from a ``dataset.json``."""

    root: Path
    channel: int  # the FLAIR's channel index (the XXXX of <CASE>_XXXX)
    channel_name: str
    lesion_labels: tuple[int, ...]  # the mask values that are lesion
    label_name: str
    file_ending: str  # ".nii.gz" unless dataset.json says otherwise

    def image_name(self, case: str) -> str:
        """The FLAIR file's name of a case: ``<CASE>_<XXXX><ending>``."""
        return f"{case}_{self.channel:04d}{self.file_ending}"


def is_nnunet_folder(path: str | Path) -> bool:
    """Whether `path` is an nnU-Net dataset folder (``dataset.json`` beside ``images*/``) or
    one of its ``images*/`` folders."""
    path = Path(path)
    if path.is_dir() and _IMAGES.match(path.name) and (path.parent / DATASET_JSON).is_file():
        return True
    return (path / DATASET_JSON).is_file() and any(
        p.is_dir() and _IMAGES.match(p.name) for p in path.iterdir())


def read_dataset_json(root: str | Path) -> NnunetDataset:
    """The FLAIR channel, the lesion label and the file ending of a dataset folder.

    Args:
        root: the dataset folder (holding ``dataset.json``).
    Returns:
        An `NnunetDataset`.
    Raises:
        FileNotFoundError: no ``dataset.json``.
        ValueError: unreadable JSON, no channel or label names, or no clear FLAIR channel or
            lesion label (the message lists the names found).
    """
    root = Path(root)
    path = root / DATASET_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; an nnU-Net dataset folder holds "
                                f"{DATASET_JSON}, imagesTr/ and labelsTr/")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not readable as JSON ({error}); fix or re-export the "
                         "file") from None
    channels = meta.get("channel_names") or meta.get("modality")
    if not isinstance(channels, dict) or not channels:
        raise ValueError(f"{path}: no 'channel_names' (or 'modality'); expected e.g. "
                         '"channel_names": {"0": "FLAIR"}')
    names = {int(k): str(v) for k, v in channels.items()}
    exact = [c for c, n in names.items() if n.strip().lower() == "flair"]
    near = [c for c, n in names.items() if "flair" in n.lower()]
    chosen = exact if len(exact) == 1 else near if len(near) == 1 else []
    if not chosen:
        raise ValueError(f"{path}: no single FLAIR channel in channel_names {channels}; "
                         "expected one channel named FLAIR (msseg reads FLAIR only)")
    label_values, label_name = _lesion_label(path, meta.get("labels"))
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in (".nii.gz", ".nii"):
        raise ValueError(f"{path}: file_ending {ending!r}; msseg reads NIfTI (.nii.gz, .nii) "
                         "only; convert the images to NIfTI")
    return NnunetDataset(root, chosen[0], names[chosen[0]], label_values, label_name, ending)


def find_nnunet_scans(folder: str | Path, *, require_masks: bool = True) -> list[ScanRecord]:
    """The cases of a dataset folder (its imagesTr/labelsTr) or of one of its images folders
    (``imagesTs/`` with ``labelsTs/`` beside it, when present).

    Args:
        folder: the dataset folder or an ``images*/`` folder in it.
        require_masks: every case needs its mask (training, evaluation).
    Returns:
        Records sorted by case (id = case, centre None), the lesion label as `mask_labels`.
    Raises:
        FileNotFoundError: no ``dataset.json``, no images folder, a missing mask.
        ValueError: as `read_dataset_json`, or an images folder without FLAIR files.
    """
    folder = Path(folder)
    root, images = ((folder.parent, folder) if _IMAGES.match(folder.name) and
                    not (folder / DATASET_JSON).is_file() else (folder, folder / "imagesTr"))
    dataset = read_dataset_json(root)
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: not found; an nnU-Net dataset folder holds "
                                "imagesTr/ (the training cases) and labelsTr/")
    labels = root / ("labels" + _IMAGES.match(images.name).group("subset"))
    suffix = f"_{dataset.channel:04d}{dataset.file_ending}"
    cases = sorted(p.name[:-len(suffix)] for p in images.iterdir()
                   if p.is_file() and p.name.endswith(suffix) and not p.name.startswith("."))
    if not cases:
        raise ValueError(f"{images}: no FLAIR file <CASE>{suffix} (channel {dataset.channel}, "
                         f"{dataset.channel_name!r}); expected the images of the FLAIR channel")
    found = []
    for case in cases:
        mask = labels / f"{case}{dataset.file_ending}"
        if not mask.is_file():
            if require_masks:
                raise FileNotFoundError(f"{mask}: the mask of case {case} is missing; training "
                                        f"and evaluation need one per image in {images}")
            mask = None
        found.append(ScanRecord(case, None, images / dataset.image_name(case), mask,
                                dataset.lesion_labels))
    return found


def nnunet_mask_name(case: str, dataset: NnunetDataset | None = None) -> str:
    """A predicted mask's file name in a folder nnU-Net's evaluation reads: ``<CASE><ending>``."""
    return f"{case}{'.nii.gz' if dataset is None else dataset.file_ending}"


def _lesion_label(path: Path, labels: object) -> tuple[tuple[int, ...], str]:
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: no 'labels'; expected e.g. "
                         '"labels": {"background": 0, "lesion": 1}')
    if all(str(k).isdigit() for k in labels) and all(isinstance(v, str) for v in labels.values()):
        labels = {name: int(value) for value, name in labels.items()}  # the first nnU-Net
    values = {str(name): tuple(int(v) for v in (value if isinstance(value, list) else [value]))
              for name, value in labels.items()}
    foreground = {n: v for n, v in values.items() if v != (0,)}
    lesion = {n: v for n, v in foreground.items() if "lesion" in n.lower()}
    chosen = foreground if len(foreground) == 1 else lesion if len(lesion) == 1 else {}
    if not chosen:
        raise ValueError(f"{path}: no single lesion label in labels {labels}; expected one "
                         "label besides background, or one whose name contains 'lesion' "
                         "(or name the mask values with --label N [N ...])")
    (name, value), = chosen.items()
    return value, name

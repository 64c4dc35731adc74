"""What a run trains on: its scans (by cache entry) and their intensity profiles, kept in its
checkpoints so that a resumed run says what changed and `predict` can tell a scan unlike them.

    data = training_data(train_entries, val_entries)      # `msseg train`, `cv`
    train(config, train_set, val_set, data=data)          # saved in every checkpoint
    changed_data(checkpoint_data(checkpoint, path), data) # on resume: None, or what changed

A cache entry's name is the patient id and a key of the content of its files and of the
preprocessing (`msseg.data.cache`), so a scan whose file changed has another entry name.

Public API:
    TrainingData(scans, intensity)         .to_dict()
    training_data(train_entries, val_entries) -> TrainingData
    checkpoint_data(checkpoint, path) -> TrainingData | None
    changed_data(saved, now) -> str | None
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msseg.data.cache import CacheEntry
from msseg.data.intensity_checks import intensity_profile
from msseg.training.checkpoint import FROM_TRAIN, CheckpointError

__all__ = ["TrainingData", "changed_data", "checkpoint_data", "training_data"]


@dataclass(frozen=True)
class TrainingData:
    """What a run trains on, saved in its checkpoints (plain values only).

    Attributes:
        scans: "train" and "val" -> patient id -> the name of its cache entry (which the
            content of its files and the preprocessing settings determine).
        intensity: one `msseg.data.intensity_checks.intensity_profile` per training scan.
    """

    scans: dict[str, dict[str, str]]
    intensity: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"scans": {split: dict(ids) for split, ids in self.scans.items()},
                "intensity": [list(map(float, p)) for p in self.intensity]}



def training_data(train_entries: Sequence[CacheEntry],
                  val_entries: Sequence[CacheEntry]) -> TrainingData:
    """The `TrainingData` of a run on these cache entries (each training volume is read once,
    for its `intensity_profile`).

    Raises:
        msseg.data.cache.CacheError: an entry that fails its checksums.
    """
    return TrainingData(
        scans={"train": {e.record.patient_id: e.path.name for e in train_entries},
               "val": {e.record.patient_id: e.path.name for e in val_entries}},
        intensity=[intensity_profile(e.load().flair) for e in train_entries])


def checkpoint_data(checkpoint: dict, path: str | Path) -> TrainingData | None:
    """The `TrainingData` a checkpoint holds, or None (written without it, or before it was kept).

    Raises:
        CheckpointError: a data entry that is not what `TrainingData.to_dict` writes.
    """
    values = checkpoint.get("data")
    if values is None:
        return None
    try:
        return TrainingData(scans={str(k): {str(i): str(n) for i, n in v.items()}
                                   for k, v in values["scans"].items()},
                            intensity=[[float(x) for x in p] for p in values["intensity"]])
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise CheckpointError(f"{path}: its data entry is unreadable ({type(error).__name__}: "
                              f"{error}); {FROM_TRAIN}") from None


def changed_data(saved: TrainingData, now: TrainingData) -> str | None:
    """What differs between the scans a checkpoint was trained on and the scans given now, as
    a phrase per split (e.g. "1 added (08002CHJE), 1 removed (08027SYBR)"), or None."""
    parts = []
    for split, name in (("train", "training"), ("val", "validation")):
        before, after = saved.scans.get(split, {}), now.scans.get(split, {})
        counts = [(sorted(set(after) - set(before)), "added"),
                  (sorted(set(before) - set(after)), "removed"),
                  (sorted(i for i in set(before) & set(after) if before[i] != after[i]),
                   "with other contents")]
        found = [f"{len(ids)} {what} ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"
                 for ids, what in counts if ids]
        if found:
            parts.append(f"the {name} scans changed since the checkpoint was saved: "
                         f"{', '.join(found)}")
    return "; ".join(parts) or None

"""On-disk cache of preprocessed scans, so training epochs never resample again.

    entries = fill_cache(records, PipelineConfig(size=64), "runs/cache")   # `msseg preprocess`

One folder per scan, ``<cache>/<patient_id>-<key>/`` with ``flair.npy`` (D, H, W) float32,
``mask.npy`` (D, H, W) uint8 (when the scan has a mask) and ``meta.json`` (the working grid with
the native geometry, settings, source files). The key hashes the FLAIR's and mask's *content*
(sha256), the mask labels taken as lesion, the settings that shape the working volume
(`PipelineConfig.settings`: recipe, size or spacing, orders, normalisation) and the cache format,
so editing a file or a setting makes a new entry and slab/window changes reuse the old one.
Entries are written as one folder through `msseg.io.atomic`: a crash leaves no partial entry.

Public API:
    CacheEntry(record, path)      .load(*, mmap=True) -> Preprocessed
    cache_key(record, config) -> str
    fill_cache(records, config, cache_dir, *, progress=True) -> list[CacheEntry]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.config import PipelineConfig
from msseg.data.preprocess import Preprocessed, preprocess_scan
from msseg.data.working import grid_from_json
from msseg.io.atomic import atomic_path
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.progress import progress_bar

CACHE_FORMAT = 2
_CHUNK = 1 << 22


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache folder for one scan."""

    record: ScanRecord
    path: Path

    def load(self, *, mmap: bool = True) -> Preprocessed:
        """Read the working volume back; with mmap=True the arrays are read-only memory maps.

        Returns:
            `Preprocessed` with flair (D, H, W) float32, mask (D, H, W) uint8 or None.
        """
        mode = "r" if mmap else None
        meta = json.loads((self.path / "meta.json").read_text())
        mask_file = self.path / "mask.npy"
        return Preprocessed(
            flair=np.load(self.path / "flair.npy", mmap_mode=mode),
            mask=np.load(mask_file, mmap_mode=mode) if mask_file.exists() else None,
            grid=grid_from_json(meta["grid"]),
        )


def cache_key(record: ScanRecord, config: PipelineConfig) -> str:
    """Hex sha256 of the cache format, the settings, the mask labels and the files' content.

    Raises:
        FileNotFoundError: the FLAIR or the mask does not exist.
    """
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, **config.settings(),
                "mask_labels": _labels_json(record.mask_labels)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path, role in ((record.flair, "FLAIR"), (record.mask, "mask")):
        digest.update(b"none" if path is None else _file_digest(path, role).encode())
    return digest.hexdigest()


def fill_cache(
    records: list[ScanRecord],
    config: PipelineConfig,
    cache_dir: str | Path,
    *,
    progress: bool = True,
) -> list[CacheEntry]:
    """Preprocess every scan not yet cached; return the entries of all scans, in order.

    Args:
        records: scans to cache.
        config: pipeline settings (only `settings` matter here).
        cache_dir: cache root, created if needed.
        progress: show a progress bar while filling (on a terminal).

    Returns:
        One `CacheEntry` per record.

    Raises:
        FileNotFoundError, msseg.io.nifti.ScanError: a scan is missing or invalid; entries already
            complete stay, nothing partial is left behind.
    """
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for record in progress_bar(records, desc="preprocess", unit="scan", enabled=progress):
        path = root / f"{record.patient_id}-{cache_key(record, config)[:20]}"
        if not path.is_dir():
            _write_entry(path, record, preprocess_scan(load_scan(record), config), config)
        entries.append(CacheEntry(record, path))
    return entries


def _write_entry(
    path: Path, record: ScanRecord, cube: Preprocessed, config: PipelineConfig
) -> None:
    meta = {
        "patient_id": record.patient_id,
        "centre": record.centre,
        "flair": str(record.flair),
        "mask": None if record.mask is None else str(record.mask),
        "mask_labels": _labels_json(record.mask_labels),
        "settings": config.settings(),
        "grid": cube.grid.to_json(),
    }
    try:
        with atomic_path(path) as temporary:
            temporary.mkdir()
            np.save(temporary / "flair.npy", cube.flair)
            if cube.mask is not None:
                np.save(temporary / "mask.npy", cube.mask)
            (temporary / "meta.json").write_text(json.dumps(meta, indent=2))
    except OSError:
        if not path.is_dir():  # not a concurrent writer finishing first: a real failure
            raise


def _labels_json(labels: tuple[int, ...] | str | None) -> list[int] | str | None:
    return list(labels) if isinstance(labels, tuple) else labels


def _file_digest(path: Path, role: str) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: {role} file not found; check the data folder.")
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

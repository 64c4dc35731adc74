"""On-disk cache of preprocessed scans, so training epochs never resample again.

    entries = fill_cache(records, PipelineConfig(volume_size=64), "runs/cache")  # `preprocess`

One folder per scan, ``<cache>/<patient_id>-<key>/`` with ``flair.npy`` (D, H, W) float32,
``mask.npy`` (D, H, W) uint8 (when the scan has a mask) and ``meta.json`` (the working grid with
the native geometry, settings, source files, the sha256 of each array file, and a checksum of
itself). The key hashes the FLAIR's and mask's *content* (sha256), the mask labels taken as
lesion, the settings that shape the working volume (`PipelineConfig.settings`: recipe, its grid
settings, orders, normalisation) and the cache format, so editing a file or a setting makes a new
entry and slab/window changes reuse the old one. Entries are written as one folder through
`msseg.io.atomic`: a crash leaves no partial entry. An entry edited, truncated or damaged after
it was written fails its checksums: `fill_cache` rebuilds it (with a warning naming the file),
`CacheEntry.load` refuses it (`CacheError`, naming the file).

Public API:
    CacheError
    CacheEntry(record, path)      .load(*, mmap=True) -> Preprocessed, .verify()
    cache_key(record, config) -> str
    grid_from_json(data) -> WorkingGrid      the working grid meta.json holds
    fill_cache(records, config, cache_dir, *, progress=True) -> list[CacheEntry]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.config import RECIPES, PipelineConfig
from msseg.data.preprocess import Preprocessed, preprocess_scan
from msseg.io.atomic import atomic_path, check_writable, partial_path, remove_stale_partials
from msseg.io.checksum import file_digest, values_digest
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import load_scan
from msseg.io.orientation import Geometry
from msseg.io.paths import output_path
from msseg.progress import progress_bar
from msseg.recipes.recipe import WorkingGrid

# 2: meta.json holds checksums of the arrays and of itself; 3: the working grid of either recipe
CACHE_FORMAT = 3

log = logging.getLogger(__name__)


class CacheError(ValueError):
    """A cache entry was changed or damaged after it was written; the message names the file."""


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache folder for one scan."""

    record: ScanRecord
    path: Path

    def verify(self) -> dict:
        """Check the entry against the checksums written with it; returns its meta.json.

        Raises:
            CacheError: a file of the entry is missing, unreadable, truncated or changed.
        """
        meta_file = self.path / "meta.json"
        try:
            meta = json.loads(meta_file.read_text())
            saved = meta.pop("checksum")
            files = meta["files"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise self._damaged(meta_file, f"unreadable ({type(error).__name__}: {error})"
                                ) from None
        if values_digest(meta) != saved:
            raise self._damaged(meta_file, "changed after it was written (checksum mismatch)")
        for name, digest in files.items():
            try:
                found = file_digest(self.path / name)
            except OSError:
                raise self._damaged(self.path / name, "missing") from None
            if found != digest:
                raise self._damaged(self.path / name, "truncated or changed after it was "
                                    "written (checksum mismatch)")
        return meta

    def load(self, *, mmap: bool = True) -> Preprocessed:
        """Verify the entry (`verify`) and read the working volume back; with mmap=True the
        arrays are read-only memory maps.

        Returns:
            `Preprocessed` with flair (D, H, W) float32, mask (D, H, W) uint8 or None.
        Raises:
            CacheError: as `verify`.
        """
        mode = "r" if mmap else None
        meta = self.verify()
        arrays = {name: np.load(self.path / name, mmap_mode=mode) for name in meta["files"]}
        return Preprocessed(
            flair=arrays["flair.npy"],
            mask=arrays.get("mask.npy"),
            grid=grid_from_json(meta["grid"]),
        )

    def _damaged(self, file: Path, problem: str) -> CacheError:
        return CacheError(f"{file}: cache file {problem}; delete {self.path} or run `msseg "
                          f"preprocess` (or train) again, which rebuilds it")


def grid_from_json(data: dict) -> WorkingGrid:
    """Inverse of `WorkingGrid.to_json`: the grid of the recipe ``data["recipe"]`` names.

    Raises:
        ValueError: an unknown recipe (a cache of a newer version).
    """
    recipe = RECIPES.get(data.get("recipe"))
    if recipe is None:
        raise ValueError(f"unknown working grid recipe {data.get('recipe')!r}; expected one of "
                         f"{tuple(RECIPES)} (written by a newer msseg?)")
    return recipe.grid_type.from_json(data, Geometry.from_json(data["geometry"]))


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
        digest.update(b"none" if path is None else file_digest(path, role=role).encode())
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
        msseg.io.atomic.WriteError: `cache_dir` is not a writable folder.
    """
    root = Path(cache_dir)
    check_writable(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(root)  # a killed writer's entry, even when nothing is written now
    entries = []
    for record in progress_bar(records, desc="preprocess", unit="scan", enabled=progress):
        name = f"{record.patient_id}-{cache_key(record, config)[:20]}"
        entry = CacheEntry(record, output_path(root, name))
        if entry.path.is_dir():
            try:
                entry.verify()
            except CacheError as error:
                log.warning("%s; rebuilding it", error)
                _remove_entry(entry.path)
        if not entry.path.is_dir():
            _write_entry(entry.path, record, preprocess_scan(load_scan(record), config), config)
        entries.append(entry)
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
    arrays = {"flair.npy": cube.flair, "mask.npy": cube.mask}
    try:
        with atomic_path(path) as temporary:
            temporary.mkdir()
            for name, array in arrays.items():
                if array is not None:
                    np.save(temporary / name, array)
            meta["files"] = {name: file_digest(temporary / name)
                             for name, array in arrays.items() if array is not None}
            meta = json.loads(json.dumps(meta))  # the values as meta.json gives them back
            meta["checksum"] = values_digest(meta)
            (temporary / "meta.json").write_text(json.dumps(meta, indent=2))
    except OSError:
        if not path.is_dir():  # not a concurrent writer finishing first: a real failure
            raise


def _remove_entry(path: Path) -> None:
    """Take a damaged entry out of the way in one step, then delete it."""
    doomed = partial_path(path.with_name(f"{path.name}-damaged"))
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _labels_json(labels: tuple[int, ...] | str | None) -> list[int] | str | None:
    return list(labels) if isinstance(labels, tuple) else labels

"""The preprocessing cache: content + settings keys, reuse, atomic entries, memory maps."""

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from msseg.config import PipelineConfig
from msseg.data import cache as cache_module
from msseg.data.cache import CacheError, cache_key, fill_cache
from msseg.data.preprocess import preprocess_scan
from msseg.io.atomic import partial_path
from msseg.io.discovery import find_msseg_scans
from msseg.io.nifti import load_scan

SMALL = PipelineConfig(volume_size=16)


def test_entries_hold_the_preprocessed_cube(msseg_root, tmp_path):
    records = find_msseg_scans(msseg_root)
    entries = fill_cache(records, SMALL, tmp_path / "cache", progress=False)
    assert [e.record for e in entries] == records
    for entry in entries:
        cached = entry.load()
        fresh = preprocess_scan(load_scan(entry.record), SMALL)
        assert isinstance(cached.flair, np.memmap) and not cached.flair.flags.writeable
        np.testing.assert_array_equal(cached.flair, fresh.flair)
        np.testing.assert_array_equal(cached.mask, fresh.mask)
        assert cached.geometry.same_as(fresh.geometry)
        assert cached.grid.to_json() == fresh.grid.to_json()
        meta = json.loads((entry.path / "meta.json").read_text())
        assert meta["patient_id"] == entry.record.patient_id and meta["settings"]["size"] == 16
        assert type(entry.load(mmap=False).flair) is np.ndarray


def test_second_fill_reads_nothing_again(msseg_root, tmp_path, monkeypatch):
    records = find_msseg_scans(msseg_root)
    first = fill_cache(records, SMALL, tmp_path / "cache", progress=False)
    monkeypatch.setattr(cache_module, "preprocess_scan", pytest.fail)
    again = fill_cache(records, PipelineConfig(volume_size=16), tmp_path / "cache",
                       progress=False)
    assert [e.path for e in again] == [e.path for e in first]


def test_key_follows_content_and_cube_settings(msseg_root):
    record = find_msseg_scans(msseg_root)[0]
    key = cache_key(record, SMALL)
    assert cache_key(record, PipelineConfig(volume_size=16)) == key
    assert cache_key(record, PipelineConfig(volume_size=24)) != key
    assert cache_key(record, PipelineConfig(volume_size=16, mask_order=1)) != key
    assert cache_key(record, PipelineConfig(volume_size=16,
                                            normalisation="percentile")) != key
    assert cache_key(record, PipelineConfig(recipe="spacing", spacing_mm=1.0)) != key
    assert cache_key(dataclasses.replace(record, mask_labels=(2,)), SMALL) != key
    data = record.mask.read_bytes()
    record.mask.write_bytes(data + b"\0")  # same file names, different content
    assert cache_key(record, SMALL) != key


def test_prediction_only_scans_are_cached_without_mask(msseg_root, tmp_path):
    (msseg_root / "07001MOEL" / "Consensus.nii.gz").unlink()
    records = find_msseg_scans(msseg_root, require_masks=False)
    entries = fill_cache(records, SMALL, tmp_path / "cache", progress=False)
    assert entries[1].load().mask is None and entries[0].load().mask is not None


def test_failure_while_writing_leaves_no_entry(msseg_root, tmp_path, monkeypatch):
    records = find_msseg_scans(msseg_root)
    real_save = np.save
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("no space left on device")
        real_save(path, array)

    cache = tmp_path / "cache"
    monkeypatch.setattr(cache_module.np, "save", failing_save)
    with pytest.raises(OSError, match="no space left"):
        fill_cache(records, SMALL, cache, progress=False)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(cache_module.np, "save", real_save)
    entries = fill_cache(records, SMALL, cache, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(e.path.name for e in entries)


def test_progress_bar_only_on_a_terminal(msseg_root, tmp_path, capsys, monkeypatch):
    fill_cache(find_msseg_scans(msseg_root), SMALL, tmp_path / "cache")
    assert capsys.readouterr().err == ""  # captured: not a terminal, no bar in logs

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    fill_cache(find_msseg_scans(msseg_root), SMALL, tmp_path / "cache")
    assert "preprocess: 100%" in sys.stderr.getvalue()
    sys.stderr = Terminal()
    fill_cache(find_msseg_scans(msseg_root), SMALL, tmp_path / "cache", progress=False)
    assert sys.stderr.getvalue() == ""


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(255 - b for b in data[-100:])
    path.write_bytes(bytes(data))


def _edit_geometry(path):
    meta = json.loads(path.read_text())
    meta["grid"]["geometry"]["affine"][0][3] += 5.0  # predictions would map back 5 mm off
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("name", "damage"), [("flair.npy", _truncate), ("mask.npy", _flip),
                                              ("meta.json", _edit_geometry),
                                              ("flair.npy", Path.unlink)])
def test_a_damaged_entry_is_refused_on_load_and_rebuilt_by_fill(msseg_root, tmp_path, msseg_log,
                                                                name, damage):
    records = find_msseg_scans(msseg_root)
    entry = fill_cache(records, SMALL, tmp_path / "cache", progress=False)[0]
    fresh = {p.name: p.read_bytes() for p in entry.path.iterdir()}
    damage(entry.path / name)
    with pytest.raises(CacheError) as caught:
        entry.load()
    message = str(caught.value)
    assert message.startswith(f"{entry.path / name}: cache file ") and "\n" not in message
    assert f"delete {entry.path} or run `msseg preprocess`" in message
    again = fill_cache(records, SMALL, tmp_path / "cache", progress=False)[0]
    assert again.path == entry.path and f"{entry.path / name}: cache file" in msseg_log.text
    assert {p.name: p.read_bytes() for p in again.path.iterdir()} == fresh  # rebuilt the same
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        e.path.name for e in fill_cache(records, SMALL, tmp_path / "cache", progress=False))


def test_a_killed_writers_entry_goes_even_when_everything_is_cached(msseg_root, tmp_path):
    records = find_msseg_scans(msseg_root)
    entries = fill_cache(records, SMALL, tmp_path / "cache", progress=False)
    finished = subprocess.Popen(["true"])  # a process that no longer runs
    finished.wait()
    stale = partial_path(tmp_path / "cache" / entries[0].path.name, pid=finished.pid)
    (stale / "flair.npy").parent.mkdir()
    (stale / "flair.npy").write_bytes(b"half an array")
    fill_cache(records, SMALL, tmp_path / "cache", progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        e.path.name for e in entries)

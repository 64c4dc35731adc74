"""The one way msseg writes a file or a folder: complete under its final name, or not at all.

    with atomic_path("pred/01016SACH_mask.nii.gz") as temporary:
        nibabel.save(image, temporary)          # any writer, given a path
    atomic_write_text("runs/x/config.json", text)

The writer works on ``.<stem>.<pid>.partial<suffixes>`` in the target's folder (the suffixes
kept, so nibabel, numpy and matplotlib still see ``.nii.gz``, ``.npy``, ``.png``); when the block
succeeds the temporary file (or every file of a temporary folder) is flushed to disk, checked to
be there and not empty, and renamed onto the target with `os.replace`, which readers see as one
step. A failure removes the temporary. A process killed mid-write (out of memory, SIGKILL, a
preempted job) cannot clean up: its partial file stays, named with its process id, and the next
write into that folder removes the partials of processes that no longer run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "partial_path", "remove_stale_partials"]

_PARTIAL = re.compile(r"^\.(?P<stem>[^.]+)\.(?P<pid>\d+)\.partial(?P<suffixes>\..*)?$")


def partial_path(path: str | Path, *, pid: int | None = None) -> Path:
    """The temporary name `atomic_path` writes `path` under: ``.<stem>.<pid>.partial<suffixes>``.

    Args:
        path: the target, e.g. ``pred/scan_mask.nii.gz``.
        pid: the writing process (default: this one).
    Returns:
        e.g. ``pred/.scan_mask.4711.partial.nii.gz``.
    """
    path = Path(path)
    stem, dot, suffixes = path.name.partition(".")
    return path.with_name(f".{stem}.{os.getpid() if pid is None else pid}.partial{dot}{suffixes}")


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove the partial files and folders in `folder` whose writing process no longer runs.

    Partials of running processes (this one included) are left alone: they may be in progress.

    Returns:
        The paths removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _PARTIAL.match(entry.name)
        if match is None or _running(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the block succeeds.

    The block writes a file, or creates a folder and fills it, at the yielded path. Parent
    folders are created, and stale partials of dead processes in the parent are removed first.

    Args:
        path: the target file or folder. A file target is replaced; a folder target must not
            exist yet (`os.replace` refuses a non-empty folder: the OSError propagates).
    Yields:
        The temporary path (same folder, same suffixes).
    Raises:
        OSError: the block wrote nothing or an empty file (``"... is empty"``), or the rename
            failed. Any exception of the block propagates; the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent)
    temporary = partial_path(path)
    try:
        yield temporary
        _flush(temporary)
        os.replace(temporary, path)
        _flush_folder(path.parent)
    finally:
        if temporary.is_dir() and not temporary.is_symlink():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through `atomic_path`; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def _flush(temporary: Path) -> None:
    """fsync the written file, or every file of the written folder; refuse nothing or empty."""
    if temporary.is_dir():
        files = [p for p in temporary.rglob("*") if p.is_file()]
        if not files:
            raise OSError(f"{temporary}: the writer left an empty folder; nothing was written")
    elif temporary.is_file():
        files = [temporary]
        if temporary.stat().st_size == 0:
            raise OSError(f"{temporary}: the writer left an empty file; nothing was written")
    else:
        raise OSError(f"{temporary}: the writer did not create it; write to the yielded path")
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _flush_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (POSIX only)."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True

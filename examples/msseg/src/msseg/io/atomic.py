"""The one way msseg writes a file or a folder: complete under its final name, or not at all.

    with atomic_path("pred/01016SACH_mask.nii.gz") as temporary:
        nibabel.save(image, temporary)          # any writer, given a path
    atomic_write_text("runs/x/config.json", text)
    with atomic_paths([prob_path, mask_path]) as (prob_tmp, mask_tmp):   # a group, mask last
        ...

The writer works on ``.<stem>.<pid>.partial<suffixes>`` in the target's folder (the suffixes
kept, so nibabel, numpy and matplotlib still see ``.nii.gz``, ``.npy``, ``.png``); when the block
succeeds the temporary file (or every file of a temporary folder) is flushed to disk, checked to
be there and not empty, and renamed onto the target with `os.replace`, which readers see as one
step. A failure removes the temporary and raises `WriteError` (an `OSError`), one line naming the
target, the reason (e.g. no space left on the device) and the fix. A process killed mid-write
(out of memory, SIGKILL, a preempted job) cannot clean up: its partial file stays, named with its
process id, and the next write into that folder removes the partials of processes that no longer
run. `check_writable` tells, before long work, whether a folder takes files at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "WriteError",
    "atomic_path",
    "atomic_paths",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "partial_path",
    "remove_stale_partials",
]

_PARTIAL = re.compile(r"^\.(?P<stem>[^.]+)\.(?P<pid>\d+)\.partial(?P<suffixes>\..*)?$")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


class WriteError(OSError):
    """A file or folder could not be written; the message names it, the reason and the fix.
    `errno` is the underlying error's (e.g. `errno.ENOSPC`)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


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
        _discard(entry)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the block succeeds.

    The block writes a file, or creates a folder and fills it, at the yielded path. Parent
    folders are created, and stale partials of dead processes in the parent are removed first.

    Args:
        path: the target file or folder. A file target is replaced; a folder target must not
            exist yet (`os.replace` refuses a non-empty folder: a `WriteError` says so).
    Yields:
        The temporary path (same folder, same suffixes).
    Raises:
        WriteError: the block failed to write (e.g. ``No space left on device``), wrote nothing
            or an empty file, or the rename failed; the target is left untouched. Any other
            exception of the block propagates unchanged.
    """
    with atomic_paths([path]) as (temporary,):
        yield temporary


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | Path], *,
                 remove: Sequence[str | Path] = ()) -> Iterator[list[Path]]:
    """Write several files as one group whose last file marks it complete.

    Every file is written to its temporary and flushed before any target changes. Then the last
    target (the marker) and the `remove` paths are deleted, the other targets replaced in order,
    and the marker renamed last: wherever the marker exists, the files beside it come from the
    same write, and a crash in between leaves the group visibly incomplete (no marker) rather
    than mixed. With one path and nothing to remove this is `atomic_path`: the target is
    replaced in one step and never missing.

    Args:
        paths: the targets, the marker last (e.g. ``[<id>_prob.nii.gz, <id>_mask.nii.gz]``).
        remove: files of an earlier write that the new group does not replace (deleted with the
            marker, before the new files appear).
    Yields:
        The temporary paths, in the order of `paths`.
    Raises:
        WriteError: as `atomic_path`; no target has changed when the block or a flush failed.
    """
    targets = [Path(p) for p in paths]
    temporaries = [partial_path(p) for p in targets]
    folders = list(dict.fromkeys(p.parent for p in targets))
    try:
        try:
            for folder in folders:
                _make_folder(folder, targets[0])
                remove_stale_partials(folder)
            yield temporaries
            for temporary in temporaries:
                _flush(temporary)
            if len(targets) > 1 or remove:
                for stale in (targets[-1], *remove):
                    Path(stale).unlink(missing_ok=True)
            for temporary, target in zip(temporaries, targets):
                os.replace(temporary, target)
            for folder in folders:
                _flush_folder(folder)
        except WriteError:
            raise
        except OSError as error:
            failed = _failed_target(error, targets, temporaries)
            if failed is None:
                raise
            raise _write_error(failed, error) from error
    finally:
        for temporary in temporaries:
            _discard(temporary)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through `atomic_path`; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through `atomic_path`; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def check_writable(folder: str | Path, *, need_bytes: int = 0) -> None:
    """Check, before long work, that files can be written in `folder` and its disk has room.

    A folder that does not exist yet is not created: its nearest existing ancestor is checked,
    by writing and removing a one-byte partial file (permissions alone do not tell: root, ACLs,
    read-only mounts).

    Args:
        folder: where the files will go.
        need_bytes: free space the files need on that disk.
    Raises:
        WriteError: the folder (or its ancestor) is not a writable folder, or the disk has less
            than `need_bytes` free.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise WriteError(f"{folder}: {existing} is a file, expected a folder; choose another "
                         f"output folder", code=errno.ENOTDIR)
    probe = partial_path(existing / "write-probe")
    try:
        with open(probe, "xb") as handle:
            handle.write(b"\0")
    except OSError as error:
        raise _write_error(folder, error) from error
    finally:
        probe.unlink(missing_ok=True)
    free = shutil.disk_usage(existing).free
    if free < need_bytes:
        raise WriteError(f"{folder}: {free / 2**20:.1f} MiB free on its disk, the outputs need "
                         f"about {need_bytes / 2**20:.1f} MiB; free space there or choose "
                         f"another output folder", code=errno.ENOSPC)


def _make_folder(folder: Path, target: Path) -> None:
    """Create `folder` (and its parents); a file in the way is named in a `WriteError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), folder)
        raise WriteError(f"{target}: {blocker} is a file, expected a folder; choose another "
                         f"folder", code=errno.ENOTDIR) from error


def _write_error(target: Path, error: OSError) -> WriteError:
    """One line: the target, what went wrong, and the fix."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in _FULL:
        fix = "the disk (or your quota) is full: free space there or choose another folder"
    elif error.errno in _DENIED:
        fix = "the folder is not writable: fix its permissions or choose another folder"
    else:
        fix = "check the folder and the disk"
    return WriteError(f"{target}: cannot write it ({reason}); {fix}", code=error.errno)


def _failed_target(error: OSError, targets: list[Path], temporaries: list[Path]) -> Path | None:
    """The target an OSError is about: the one whose temporary or final name it names, the
    group's (first) target when it names no file, None when it names a file outside the write
    (an error of the block's own, e.g. an input it could not read)."""
    for name in (error.filename, getattr(error, "filename2", None)):
        if name is None:
            continue
        for target, temporary in zip(targets, temporaries):
            if Path(name) in (target, temporary) or temporary in Path(name).parents:
                return target
        if any(Path(name) in target.parents for target in targets):
            return targets[0]
        return None
    return targets[0]


def _flush(temporary: Path) -> None:
    """fsync the written file, or every file of the written folder; refuse nothing or empty."""
    if temporary.is_dir():
        files = [p for p in temporary.rglob("*") if p.is_file()]
        if not files:
            raise WriteError(f"{temporary}: the writer left an empty folder; nothing was written")
    elif temporary.is_file():
        files = [temporary]
        if temporary.stat().st_size == 0:
            raise WriteError(f"{temporary}: the writer left an empty file; nothing was written")
    else:
        raise WriteError(f"{temporary}: the writer did not create it; write to the yielded path")
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


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True

"""One writer per output folder: a lock that names its holder.

    with folder_lock("pred/", command="msseg predict"):
        ...                                   # write the outputs into pred/

The lock is the file ``<folder>/.msseg.lock``, held with an exclusive `fcntl.flock` while the
block runs; it holds the holder's process id and command. A second writer into the folder is
refused at once with a `FolderLockedError` that names the holder. The kernel releases a lock
when its process ends, however it ends, so a killed run never blocks the next one (its lock
file stays until the next run removes it); the file is removed when the block ends.

A reader that must not see a folder half-written (`evaluate` reading predictions) calls
`check_unlocked`, which asks the lock without creating anything (the folder may be read-only).

Public API:
    LOCK_NAME
    FolderLockedError
    folder_lock(folder, *, command) -> context manager yielding the lock file's path
    check_unlocked(folder) -> None
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "FolderLockedError", "check_unlocked", "folder_lock"]

LOCK_NAME = ".msseg.lock"


class FolderLockedError(OSError):
    """Another process writes into the folder; the message names it and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.EBUSY


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, command: str) -> Iterator[Path]:
    """Hold the folder's lock while the block runs (the folder is created).

    Args:
        folder: the output folder.
        command: what the holder runs, for the message a second writer gets.
    Yields:
        The lock file's path.
    Raises:
        FolderLockedError: another process holds the lock.
        OSError: the folder cannot be created or written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = _acquire(path, folder)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()} {command}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still holding it: a process waiting for this file retries
        os.close(handle)


def check_unlocked(folder: str | Path) -> None:
    """Refuse to read a folder that another process is writing into (its lock is held).

    Nothing is created: a folder without a lock file, or whose lock file cannot be opened, is
    taken as not being written.

    Raises:
        FolderLockedError: another process holds the folder's lock.
    """
    folder = Path(folder)
    try:
        handle = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise _locked(folder, handle, "writing into it, so it is not complete yet") from None
    finally:
        os.close(handle)


def _locked(folder: Path, handle: int, what: str) -> FolderLockedError:
    """The error naming the holder that `handle` (the lock file) records."""
    os.lseek(handle, 0, os.SEEK_SET)
    pid, _, command = os.read(handle, 4096).decode(errors="replace").strip().partition(" ")
    return FolderLockedError(f"{folder}: another msseg process (pid {pid or '?'}, "
                             f"`{command or 'msseg'}`) is {what}; wait until it ends, or choose "
                             f"another folder")


def _acquire(path: Path, folder: Path) -> int:
    """An open, exclusively locked descriptor of the lock file that `path` names now."""
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(handle)
                raise
            locked = _locked(folder, handle, "writing into it")
            os.close(handle)
            raise locked from None
        try:
            same = os.fstat(handle).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # the holder before us removed it as we opened it
            same = False
        if same:
            return handle
        os.close(handle)

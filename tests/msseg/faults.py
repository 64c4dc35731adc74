"""Fault injection for the reliability tests: a process killed with SIGKILL at a chosen point of
a chosen file's write, a process whose files cannot grow (a full disk), a process without write
access.

Every file msseg writes goes through `msseg.io.atomic`: the writer fills a temporary, which is
flushed (`_flush`) and renamed onto the target (`os.replace`). A forked child patches those two
steps and kills itself, with SIGKILL as the kernel would, at one of `STAGES` of the n-th write
of a file name:
- "writing": the temporary holds half of the file;
- "written": the temporary is complete and flushed, the rename has not happened;
- "renamed": the file is in place, nothing after it has run.
Nothing of the child's `finally` blocks or exit handlers runs, as after a real kill -9. The
child is forked from the test process, so it needs no new interpreter (imports are done).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from msseg.io import atomic

STAGES = ("writing", "written", "renamed")


@dataclass(frozen=True)
class Outcome:
    """How a child process ended, and what it printed."""

    exitcode: int  # negative: killed by that signal
    out: str
    err: str


def run_killed(function: Callable[[], object], *, target: str, stage: str,
               occurrence: int = 1) -> Outcome:
    """Run `function` in a child that SIGKILLs itself at `stage` of the `occurrence`-th write of
    a file named `target`; fail unless it died there."""
    outcome = run_child(function, _kill_at, target, stage, occurrence)
    assert outcome.exitcode == -signal.SIGKILL, (
        f"the child did not die at {stage} of write {occurrence} of {target} (exit code "
        f"{outcome.exitcode}): {outcome.err[-2000:]}")
    return outcome


def run_with_file_limit(function: Callable[[], object], *, limit_bytes: int) -> Outcome:
    """Run `function` in a child whose writes fail beyond `limit_bytes` per file, as on a full
    disk (EFBIG: the kernel's file-size limit, SIGXFSZ ignored)."""
    return run_child(function, _limit_files, limit_bytes)


def run_unprivileged(function: Callable[[], object]) -> Outcome:
    """Run `function` in a child without root's power to write where permissions say no (as
    user nobody when the tests run as root)."""
    return run_child(function, _drop_root)


def run_child(function: Callable[[], object], prepare: Callable[..., None],
              *args: object) -> Outcome:
    """Fork, `prepare(*args)` in the child, run `function` there; its return value (an exit
    code, or None for 0) or exception decides the exit code."""
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "out", Path(folder) / "err"
        process = multiprocessing.get_context("fork").Process(
            target=_child, args=(function, prepare, args, str(out), str(err)))
        process.start()
        process.join()
        return Outcome(process.exitcode, _read(out), _read(err))


def partials(folder: Path) -> list[str]:
    """The names of the partial files and folders in `folder` (and its sub-folders)."""
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)


def _child(function, prepare, args, out: str, err: str) -> None:
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the child's stdout)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    prepare(*args)
    try:
        code = function()
    except SystemExit as error:
        code = error.code
    except BaseException as error:  # reported in err, then the exit code says it failed
        import traceback

        traceback.print_exception(error)
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))


def _kill_at(target: str, stage: str, occurrence: int) -> None:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    flush, replace = atomic._flush, os.replace
    count = {"flushes": 0, "renames": 0}

    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def flushing(temporary: Path) -> None:
        if _target_name(temporary) == target:
            count["flushes"] += 1
            if stage == "writing" and count["flushes"] == occurrence:
                size = temporary.stat().st_size if temporary.is_file() else 0
                if size:
                    os.truncate(temporary, size // 2)
                kill()
        flush(temporary)

    def renaming(source, destination) -> None:
        if Path(destination).name == target:
            count["renames"] += 1
            if count["renames"] == occurrence and stage == "written":
                kill()
            replace(source, destination)
            if count["renames"] == occurrence and stage == "renamed":
                kill()
            return
        replace(source, destination)

    atomic._flush = flushing
    os.replace = renaming


def _limit_files(limit_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def _drop_root() -> None:
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)


def _target_name(temporary: Path) -> str | None:
    match = atomic._PARTIAL.match(Path(temporary).name)
    return None if match is None else match["stem"] + (match["suffixes"] or "")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""

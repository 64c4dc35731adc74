"""The `msseg` command line (also ``python examples/msseg`` and ``python -m msseg``).

Each command is a module of this folder with::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

It parses flags and calls library code; it never imports another command, and it imports the
library (torch, timm, scipy, nibabel) inside `run` only, so ``msseg <command> --help`` answers
at once. To add a command, append one `Command` line to `COMMANDS`.

Messages go through `logging` (logger "msseg"): information to stdout, warnings and errors to
stderr as ``warning: ...`` / ``error: ...``, one line each; ``--quiet`` keeps only warnings and
errors, ``--verbose`` adds debugging detail. Python warnings (a random encoder, a scan that
breaks an assumption) are logged the same way; ``--strict`` makes the warnings about a scan
(`msseg.io.nifti.ScanWarning`: a grid the header does not define, intensities the model cannot
read) errors. Bad input and failed writes (`OSError`, `ValueError`, whose messages name the
file, the problem and the fix; an operating-system error that names only a path is given its
fix here) and running out of memory end in one ``error:`` line and exit code 1; Ctrl-C ends in
one line and exit code 130.

SIGTERM (a scheduler preempting the job) is acknowledged at once by a ``warning:`` line (a
thread watches for it, so even a long computation does not delay it) and ends the command like
Ctrl-C, so temporary files are removed on the way out; when the main thread is inside a long
computation that does not return within `STOP_GRACE_S` seconds, the process exits there
(exit code 143 either way): every file msseg writes is complete under its final name or not
there, and the next write removes a killed writer's temporary files.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "STOP_GRACE_S", "Command", "build_parser", "configure_logging",
           "describe_error", "main"]

log = logging.getLogger("msseg")

STOP_GRACE_S = 5.0  # after a SIGTERM, seconds the main thread has to stop before the process exits


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the module implementing it, and a one-line help."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("phantom", "msseg.commands.phantom",
            "write a synthetic 15-patient MSSEG-layout dataset"),
    Command("preprocess", "msseg.commands.preprocess",
            "fill the preprocessing cache (the recipe's working volumes)"),
    Command("baseline", "msseg.commands.baseline",
            "Dice of the best single global intensity threshold"),
    Command("summary", "msseg.commands.summary", "architecture and parameter counts of a config"),
    Command("train", "msseg.commands.train",
            "train the planar res-u-net (CPU, GPU, torchrun DDP)"),
    Command("predict", "msseg.commands.predict",
            "FLAIR NIfTI in, lesion mask NIfTI out (native grid)"),
    Command("evaluate", "msseg.commands.evaluate",
            "Dice, sensitivity, lesion-wise scores; Table 2 layout"),
    Command("ceiling", "msseg.commands.ceiling",
            "a perfect model's Dice: masks through the pipeline and back"),
    Command("cv", "msseg.commands.cv",
            "the paper's 5-round cross-validation, Table 2 and overlays"),
    Command("demo", "msseg.commands.demo",
            "phantom -> training -> prediction -> evaluation on a CPU"),
)


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Parser listing every command; only `chosen` gets its options (its module is imported)."""
    parser = argparse.ArgumentParser(
        prog="msseg",
        description="MS lesion segmentation from raw FLAIR (Kolarik et al., ICPR 2020).",
    )
    verbosity = argparse.ArgumentParser(add_help=False)
    group = verbosity.add_argument_group("messages").add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    group.add_argument("-v", "--verbose", action="store_true", help="also debugging detail")
    verbosity.add_argument("--strict", action="store_true",
                           help="refuse a scan that would only be warned about (a grid its "
                                "header does not define, intensities the model cannot read)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help,
                                  parents=[verbosity])
        if command.name == chosen:
            importlib.import_module(command.module).add_arguments(sub)
    return parser


def configure_logging(level: int) -> None:
    """Send the "msseg" logger's messages to stdout (below WARNING) and stderr (the rest)."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    info.setFormatter(logging.Formatter("%(message)s"))
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    problems.setFormatter(_Prefixed("%(message)s"))
    log.addHandler(info)
    log.addHandler(problems)
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command.

    Returns:
        The command's exit code; 1 after logging ``error: <message>`` for bad input (OSError
        or ValueError, whose messages name the file and the fix) or a lack of memory.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {c.name: c for c in COMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in names else None).parse_args(argv)
    configure_logging(logging.WARNING if args.quiet else
                      logging.DEBUG if args.verbose else logging.INFO)
    with warnings.catch_warnings(), _stop_on_sigterm(args.command):
        warnings.showwarning = _log_warning
        strict: tuple[type[Warning], ...] = ()
        if args.strict:
            from msseg.io.nifti import ScanWarning

            warnings.simplefilter("error", ScanWarning)
            strict = (ScanWarning,)
        try:
            return importlib.import_module(names[args.command].module).run(args)
        except (OSError, ValueError) as error:
            log.error("%s", describe_error(error))
            return 1
        except strict as error:
            log.error("%s; refused under --strict", error)
            return 1
        except MemoryError:
            log.error("out of memory running `msseg %s`; free memory, use smaller inputs or a "
                      "smaller --batch-size", args.command)
            return 1
        except KeyboardInterrupt:
            log.error("msseg %s stopped (Ctrl-C); complete files stay, a file being written is "
                      "discarded", args.command)
            return 128 + signal.SIGINT


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """A Python warning as one ``warning: ...`` line of the "msseg" logger."""
    log.warning("%s", message)


def describe_error(error: BaseException) -> str:
    """An error as one line that names the file, the problem and the fix.

    msseg's own errors say all of that already; an operating-system error that reached here
    unexplained (``[Errno 20] Not a directory: 'runs/x/config.json'``) gets its fix: a path
    through a file says which file, others say what to check.
    """
    text = str(error)
    if not (isinstance(error, OSError) and text.startswith("[Errno") and error.filename):
        return text
    path = Path(os.fsdecode(error.filename))
    existing = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
    reason = error.strerror or text
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and existing is not None and \
            existing.is_file():
        return f"{path}: {existing} is a file, expected a folder; choose another path"
    fixes = {errno.ENOENT: "check the path", errno.EACCES: "fix its permissions or choose "
             "another path", errno.EPERM: "fix its permissions or choose another path",
             errno.EROFS: "the disk is read-only: choose another path", errno.ENOSPC:
             "the disk is full: free space there or choose another path", errno.EISDIR:
             "it is a folder: give a file", errno.ENAMETOOLONG: "use a shorter name"}
    return f"{path}: {reason}; {fixes.get(error.errno, 'check the path and the disk')}"


@contextlib.contextmanager
def _stop_on_sigterm(command: str) -> Iterator[None]:
    """While the command runs, SIGTERM raises SystemExit(143) in the main thread (so `finally`
    blocks remove temporary files), a watching thread acknowledges it at once, and the process
    exits after `STOP_GRACE_S` seconds if the main thread has not stopped by then. Nothing is
    changed where signals cannot be set (not the main thread)."""
    acknowledge = _Acknowledgement(command)

    def terminate(signum: int, frame: object) -> None:
        acknowledge()  # the main thread may get here before the watching thread reads it
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        yield
        return
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    previous_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    if not _FORKS_FORGET_THE_WATCHER:  # a forked child (a DataLoader worker) must not wake it
        os.register_at_fork(after_in_child=_forget_watcher)
        _FORKS_FORGET_THE_WATCHER.append(True)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(reader, command, done, acknowledge),
                               daemon=True, name="msseg-sigterm")
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous)
        os.close(writer)  # the watcher reads the end of the pipe and returns


_FORKS_FORGET_THE_WATCHER: list[bool] = []


def _forget_watcher() -> None:
    """In a forked child: signals no longer write to the parent's watching pipe."""
    with contextlib.suppress(ValueError):  # forked from another thread: nothing was set
        signal.set_wakeup_fd(-1)


class _Acknowledgement:
    """Says once that a stop was requested, from whichever thread sees the signal first."""

    def __init__(self, command: str) -> None:
        self.command, self.said, self.lock = command, False, threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            if self.said:
                return
            self.said = True
        log.warning("stop requested (SIGTERM): stopping msseg %s; complete files stay, a file "
                    "being written is discarded", self.command)


def _watch(reader: int, command: str, done: threading.Event,
           acknowledge: _Acknowledgement) -> None:
    """Acknowledge a SIGTERM as soon as the signal arrives; exit if the main thread has not
    stopped `STOP_GRACE_S` seconds later."""
    try:
        while data := os.read(reader, 64):
            if signal.SIGTERM in data and not done.is_set():
                acknowledge()
                if not done.wait(STOP_GRACE_S):
                    log.warning("msseg %s did not stop within %g s (inside a long computation): "
                                "exiting now", command, STOP_GRACE_S)
                    logging.shutdown()
                    os._exit(128 + signal.SIGTERM)
                return
    finally:
        os.close(reader)


class _Prefixed(logging.Formatter):
    """``error: ...``, ``warning: ...``: the level in lower case before the message."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"

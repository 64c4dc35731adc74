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
breaks an assumption) are logged the same way. Bad input and failed writes (`OSError`,
`ValueError`, whose messages name the file, the problem and the fix) and running out of memory
end in one ``error:`` line and exit code 1; SIGTERM (a scheduler preempting the job) ends the
command like Ctrl-C, so temporary files are removed on the way out.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "build_parser", "configure_logging", "main"]

log = logging.getLogger("msseg")


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
    with warnings.catch_warnings():
        warnings.showwarning = _log_warning
        previous = _end_on_sigterm()
        try:
            return importlib.import_module(names[args.command].module).run(args)
        except (OSError, ValueError) as error:
            log.error("%s", error)
            return 1
        except MemoryError:
            log.error("out of memory running `msseg %s`; free memory, use smaller inputs or a "
                      "smaller --batch-size", args.command)
            return 1
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    """A Python warning as one ``warning: ...`` line of the "msseg" logger."""
    log.warning("%s", message)


def _end_on_sigterm() -> Callable | int | None:
    """Make SIGTERM raise SystemExit(143) in the main thread, so `finally` blocks (temporary
    files) run; returns the previous handler, or None where signals cannot be set here."""
    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        return None


class _Prefixed(logging.Formatter):
    """``error: ...``, ``warning: ...``: the level in lower case before the message."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"

"""Command line of the MSSEG example: ``python examples/msseg <command> [options]``.

Each command lives in its own module, which provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

To add a command, append one `Command` line to `COMMANDS`. Only the chosen command's module is
imported, so ``phantom`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the module implementing it, and a one-line help."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("phantom", "msseg.phantom.generate", "write a synthetic 15-patient MSSEG-layout dataset"),
    Command("preprocess", "msseg.data.cache", "fill the preprocessing cache (canonical S³ cubes)"),
    Command("baseline", "msseg.evaluation.baseline", "Dice of the best single global intensity threshold"),
    Command("summary", "msseg.model.summary", "architecture and parameter counts of a config"),
    Command("train", "msseg.commands.train", "train the planar res-u-net (CPU, GPU, torchrun DDP)"),
    Command("predict", "msseg.commands.predict", "FLAIR NIfTI in, lesion mask NIfTI out (native grid)"),
    Command("evaluate", "msseg.evaluation.scoring", "Dice, sensitivity, lesion-wise scores; Table 2 layout"),
    Command("cv", "msseg.evaluation.cross_validation", "the paper's 5-round cross-validation, Table 2 and overlays"),
    Command("demo", "msseg.evaluation.demo", "phantom -> training -> prediction -> evaluation on a CPU"),
)


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Parser listing every command; only `chosen` gets its options (its module is imported)."""
    parser = argparse.ArgumentParser(
        prog="python examples/msseg",
        description="MS lesion segmentation from raw FLAIR (Kolarik et al., ICPR 2020).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        if command.name == chosen:
            importlib.import_module(command.module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command.

    Returns:
        The command's exit code; 1 after printing ``error: <message>`` for bad input
        (OSError or ValueError, whose messages name the file and the fix).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {c.name: c for c in COMMANDS}
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in names else None).parse_args(argv)
    try:
        return importlib.import_module(names[args.command].module).run(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

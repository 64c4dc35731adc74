"""Flags shared by several commands, with help texts taken from the presets and defaults.

Not a command: the commands import it, it imports only `msseg.config` (no torch), and every
default a help text names is read from the object that owns it, so help and behaviour agree.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from msseg.config import NORMALISATIONS, PRECISIONS, PRESETS, PipelineConfig, TrainConfig, preset

__all__ = [
    "add_config_arguments",
    "add_data_arguments",
    "add_device_arguments",
    "add_pipeline_arguments",
    "by_preset",
    "pipeline_config",
    "train_config",
]

DATA_HELP = "MSSEG folder (<PATIENT>/3DFLAIR.nii.gz + Consensus.nii.gz), scan CSV " \
            "(patient_id,flair,mask[,centre]) or FLAIR pattern with {id}"


def by_preset(field: str) -> str:
    """A field's value in every preset, e.g. ``paper 100, demo 20`` for "epochs"."""
    return ", ".join(f"{name} {getattr(config, field)}" for name, config in PRESETS.items())


def add_data_arguments(parser: argparse.ArgumentParser, *, help: str = DATA_HELP) -> None:
    """``-i/--data`` and ``--mask-pattern``: where the scans are."""
    parser.add_argument("-i", "--data", required=True, help=help)
    parser.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")


def add_device_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                         default: str | None = "auto") -> None:
    """``--device`` and ``--precision`` (one vocabulary for training and prediction)."""
    default_text = "the preset's" if default is None else default
    parser.add_argument("--device", default=default,
                        help=f"'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1' "
                             f"(default {default_text})")
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help=f"autocast precision; 'auto' = bf16 on a GPU that has it, else "
                             f"fp32 (default {default_text})")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that build a `TrainConfig` (``train`` and ``cv``); unset flags keep the preset."""
    model = parser.add_argument_group("model")
    model.add_argument("--config", choices=sorted(PRESETS), default="paper",
                       help="preset: 'paper' (ICPR 2020, 256³, needs a GPU) or 'demo' (64³, "
                            "CPU) (default paper)")
    model.add_argument("--encoder", help=f"timm CNN for the encoder (default: the preset's: "
                                         f"{by_preset('encoder')})")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path,
                         help="local 2D ImageNet checkpoint for the encoder (timm/torchvision)")
    weights.add_argument("--pretrained", action="store_true",
                         help="ImageNet weights from the timm hub (needs network access)")
    model.add_argument("--trainable-bottleneck", action="store_true",
                       help="train the bottleneck convs (the paper's code freezes them)")
    model.add_argument("--train-encoder", action="store_true",
                       help="fine-tune the encoder too (the paper freezes it)")
    optim = parser.add_argument_group("optimisation (default: the preset's)")
    optim.add_argument("--epochs", type=int, help=f"maximum epochs ({by_preset('epochs')})")
    optim.add_argument("--patience", type=int,
                       help=f"early-stopping patience in epochs ({by_preset('patience')})")
    optim.add_argument("--batch-size", type=int,
                       help=f"global batch size ({by_preset('batch_size')})")
    optim.add_argument("--lr", type=float, help=f"Adam learning rate ({by_preset('lr')})")
    optim.add_argument("--seed", type=int,
                       help=f"seed of the initialisation and data order ({by_preset('seed')})")
    runtime = parser.add_argument_group("runtime")
    add_device_arguments(runtime, default=None)
    runtime.add_argument("--compile", action="store_true", help="torch.compile the model")
    runtime.add_argument("--workers", type=int,
                         help=f"DataLoader worker processes ({by_preset('num_workers')})")
    runtime.add_argument("--no-progress", action="store_true", help="no progress bars")
    runtime.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                         help="any other TrainConfig field, e.g. volume_size=128 "
                              "decoder_filters=64,32,16,8")


def train_config(args: argparse.Namespace, *, base: TrainConfig | None = None,
                 **fixed: Any) -> TrainConfig:
    """The preset `args.config` (or `base`) with the flags, ``--set`` values and `fixed` applied.

    Raises:
        ValueError: an unknown or invalid field, or a malformed ``--set`` item.
    """
    changes: dict[str, Any] = dict(_parse_set(args.set))
    flags = {"encoder": args.encoder, "epochs": args.epochs, "patience": args.patience,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "precision": args.precision, "num_workers": args.workers,
             "weights": str(args.weights) if args.weights else None}
    changes.update({k: v for k, v in flags.items() if v is not None})
    for flag, field in (("pretrained", "pretrained"), ("trainable_bottleneck", "train_bottleneck"),
                        ("train_encoder", "train_encoder"), ("compile", "compile")):
        if getattr(args, flag):
            changes[field] = True
    if args.no_progress:
        changes["progress"] = False
    if args.weights:
        changes["pretrained"] = False
    changes.update(fixed)
    try:
        return (base or preset(args.config)).replace(**changes)
    except TypeError as error:  # an unknown --set field
        raise ValueError(str(error)) from error


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size``, ``--normalisation``, ``--percentiles``, with `PipelineConfig`'s defaults."""
    default = PipelineConfig()
    group = parser.add_argument_group("preprocessing (defaults = paper)")
    group.add_argument("--size", type=int, default=default.size,
                       help=f"cube edge S (default {default.size})")
    group.add_argument("--normalisation", choices=NORMALISATIONS, default=default.normalisation,
                       help=f"FLAIR scaling to [-1, 1] (default {default.normalisation})")
    group.add_argument("--percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="clip percentiles for --normalisation percentile (0.5 99.5)")


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The `PipelineConfig` of `add_pipeline_arguments` flags.

    Raises:
        ValueError: an invalid combination (see PipelineConfig).
    """
    percentiles = tuple(args.percentiles) if args.percentiles is not None else None
    return PipelineConfig(size=args.size, normalisation=args.normalisation,
                          percentiles=percentiles)


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    defaults = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in defaults:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{sorted(defaults)}")
        values[name] = _parse_value(name, text, getattr(PRESETS["paper"], name))
    return values


def _parse_value(name: str, text: str, example: Any) -> Any:
    try:
        if isinstance(example, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(example, tuple):
            kind = type(example[0])
            return tuple(kind(part) for part in text.split(","))
        if isinstance(example, (int, float)):
            return type(example)(text)
    except ValueError:
        raise ValueError(f"--set {name}={text}: expected a value like {example!r}") from None
    return None if text.lower() == "none" else text

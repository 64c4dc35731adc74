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

from msseg.config import PRECISIONS, PRESETS, RECIPES, TrainConfig, preset, recipe_named
from msseg.recipes.recipe import NORMALISATIONS

__all__ = [
    "DEFAULT_PRESET",
    "add_config_arguments",
    "add_data_arguments",
    "add_device_arguments",
    "add_label_argument",
    "add_recipe_arguments",
    "add_recompose_argument",
    "add_threads_argument",
    "by_preset",
    "check_before_training",
    "check_outputs_outside",
    "mask_labels",
    "recipe_config",
    "set_threads",
    "train_config",
]

DEFAULT_PRESET = "real"  # the command line's preset: the real-data recipe

DATA_HELP = "MSSEG folder (<PATIENT>/3DFLAIR.nii.gz + Consensus.nii.gz), scan CSV " \
            "(patient_id,flair,mask[,centre]) or FLAIR pattern with {id}"


def by_preset(field: str) -> str:
    """A field's value in every preset, e.g. ``paper 100, demo 20`` for "epochs"."""
    return ", ".join(f"{name} {getattr(config, field)}" for name, config in PRESETS.items())


def add_data_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                       help: str = DATA_HELP) -> None:
    """``-i/--data``, ``--mask-pattern`` and ``--label``: where the scans are, what is lesion."""
    parser.add_argument("-i", "--data", required=True, help=help)
    parser.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")
    add_label_argument(parser)


def add_label_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--label``: which labels of a multi-label mask are lesion (`mask_labels` reads it)."""
    parser.add_argument("--label", nargs="+", metavar="N",
                        help="lesion label(s) of multi-label masks (e.g. tumour classes), or "
                             "'nonzero' for every label but 0 (default: masks must be 0/1)")


def mask_labels(args: argparse.Namespace) -> tuple[int, ...] | str | None:
    """The ``--label`` values as `ScanRecord.mask_labels`.

    Raises:
        ValueError: values that are neither integers nor the single word "nonzero".
    """
    if not args.label:
        return None
    if args.label == ["nonzero"]:
        return "nonzero"
    try:
        return tuple(int(value) for value in args.label)
    except ValueError:
        raise ValueError(f"--label {' '.join(args.label)}: expected integer labels (e.g. "
                         f"--label 2 3) or the word 'nonzero'") from None


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads``: torch's CPU threads for this process."""
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's, one per core; on a loaded "
                             "machine 1 can be many times faster)")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (nothing when it is not given).

    Raises:
        ValueError: a thread count below 1.
    """
    if args.threads is None:
        return
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)


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


def add_recompose_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                           help: str) -> None:
    """``--recompose``: a blend of overlapping predictions, one of the model's recipe's; `help`
    is followed by each recipe's blends."""
    offered = "; ".join(f"recipe {name}: " + ", ".join(f"'{m}' = {text}" for m, text in
                                                       recipe.recompositions.items())
                        for name, recipe in RECIPES.items())
    parser.add_argument("--recompose", help=help + offered,
                        choices=sorted({m for r in RECIPES.values() for m in r.recompositions}))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that build a `TrainConfig` (``train`` and ``cv``); unset flags keep the preset."""
    model = parser.add_argument_group("model")
    model.add_argument("--config", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                       help=f"preset: 'real' (the real-data recipe: target spacing, windows, "
                            f"robust intensities), 'paper' (ICPR 2020 exactly: 256³ cubes) or "
                            f"'demo' (the paper's recipe at 64³ on a CPU) (default "
                            f"{DEFAULT_PRESET})")
    model.add_argument("--normalisation", choices=NORMALISATIONS,
                       help=f"FLAIR to [-1, 1]: 'minmax' (the paper) or 'percentile' (robust: "
                            f"percentiles of the head, clipped) ({by_preset('normalisation')})")
    model.add_argument("--encoder", help=f"timm CNN for the encoder (default: the preset's: "
                                         f"{by_preset('encoder')})")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path,
                         help="local 2D ImageNet weights for the encoder: a timm/torchvision "
                              "state dict (.pth), or for vgg16 the Keras VGG-16 as .onnx (the "
                              "paper's weights: `python -c 'from msseg.model.keras_vgg16 import "
                              "offline_vgg16; print(offline_vgg16())'` prints where the "
                              "installed file is)")
    weights.add_argument("--pretrained", action="store_true",
                         help="ImageNet weights from the timm hub (needs network access)")
    model.add_argument("--trainable-bottleneck", action="store_true",
                       help="train the bottleneck convs (the paper's code freezes them)")
    model.add_argument("--train-encoder", action="store_true",
                       help="fine-tune the encoder too (the paper freezes it)")
    optim = parser.add_argument_group("optimisation (default: the preset's)")
    optim.add_argument("--epochs", type=int, help=f"maximum epochs ({by_preset('epochs')})")
    optim.add_argument("--samples-per-epoch", type=int, metavar="N",
                       help="train on N samples (slabs or windows) per epoch, a different part "
                            "of the data each epoch, instead of all of them (a large dataset's "
                            "epoch made affordable; the plan printed before training says how "
                            "many there are)")
    optim.add_argument("--patience", type=int,
                       help=f"early-stopping patience in epochs ({by_preset('patience')})")
    optim.add_argument("--batch-size", type=int,
                       help=f"global batch size ({by_preset('batch_size')})")
    optim.add_argument("--lr", type=float, help=f"Adam learning rate ({by_preset('lr')})")
    optim.add_argument("--seed", type=int,
                       help=f"seed of the initialisation and data order ({by_preset('seed')})")
    runtime = parser.add_argument_group("runtime")
    add_device_arguments(runtime, default=None)
    add_threads_argument(runtime)
    runtime.add_argument("--compile", action="store_true", help="torch.compile the model")
    runtime.add_argument("--workers", type=int,
                         help=f"DataLoader worker processes ({by_preset('num_workers')})")
    runtime.add_argument("--no-progress", action="store_true", help="no progress bars")
    runtime.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                         help="any other TrainConfig field, e.g. volume_size=128 "
                              "decoder_filters=64,32,16,8")


def check_before_training(config: TrainConfig, out: Path) -> None:
    """What ``train`` and ``cv`` check before any work: the device and precision, the encoder's
    weights (the file read and fitted to the 2D encoder; the hub reachable), and the output
    folder (writable, not a file).

    Raises:
        ValueError: an unusable device or precision, or a weights file that is not one or does
            not fit (the message names the file and the fix).
        ConnectionError: ``--pretrained`` with no reachable hub.
        msseg.io.atomic.WriteError: the output folder cannot be written.
    """
    from msseg.device import resolve_compute
    from msseg.io.atomic import check_writable
    from msseg.model.encoder import create_encoder_2d
    from msseg.model.hub import check_pretrained_available

    resolve_compute(config.device, config.precision)
    if config.pretrained:
        check_pretrained_available(config.encoder)
    if config.weights is not None:
        create_encoder_2d(config.encoder, stages=config.encoder_stages, weights=config.weights)
    check_writable(out)


def check_outputs_outside(data: str | Path, **outputs: Path | None) -> None:
    """Refuse, before any work, an output folder inside a data folder whose sub-folders are
    read as patients (`msseg.io.paths.check_outside`); `outputs` by what they are, e.g.
    ``run_folder=args.out, cache=args.cache``.

    Raises:
        ValueError: naming the output, the data folder and the fix.
    """
    from msseg.io.discovery import patient_folders
    from msseg.io.paths import check_outside

    folder = patient_folders(data)
    if folder is None:
        return
    for what, path in outputs.items():
        if path is not None:
            check_outside(path, folder, what=what.replace("_", " "))


def train_config(args: argparse.Namespace, *, base: TrainConfig | None = None,
                 **fixed: Any) -> TrainConfig:
    """The preset `args.config` (or `base`) with the flags, ``--set`` values and `fixed` applied.

    Raises:
        ValueError: an unknown or invalid field, or a malformed ``--set`` item.
    """
    changes: dict[str, Any] = dict(_parse_set(args.set))
    flags = {"encoder": args.encoder, "epochs": args.epochs, "patience": args.patience,
             "samples_per_epoch": args.samples_per_epoch,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "precision": args.precision, "num_workers": args.workers,
             "normalisation": args.normalisation,
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


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``-m/--model`` and ``--set``: the preprocessing of a preset, or of a
    trained model, as ``train`` and ``predict`` run it."""
    group = parser.add_argument_group("recipe (the preprocessing of a preset or of a model)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--config", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"preset whose recipe to use (default {DEFAULT_PRESET}: "
                             f"{_recipe_of(DEFAULT_PRESET)}; paper: {_recipe_of('paper')})")
    source.add_argument("-m", "--model", type=Path, metavar="CKPT",
                        help="use the recipe a checkpoint was trained with instead")
    group.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                       help="change a TrainConfig field, e.g. volume_size=64, spacing_mm=0.8, "
                            "recipe=paper, normalisation=minmax")


def recipe_config(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` whose `pipeline` the `add_recipe_arguments` flags ask for.

    Raises:
        ValueError: an unknown or invalid field; FileNotFoundError: a missing checkpoint.
    """
    changes = _parse_set(args.set)
    if args.model is not None:
        from msseg.training.checkpoint import checkpoint_config, load_checkpoint

        base = checkpoint_config(load_checkpoint(args.model, keys=("config",)), args.model)
        return base.replace(**changes)
    return preset(args.config, **changes)


def _recipe_of(name: str) -> str:
    config = PRESETS[name]
    return recipe_named(config.recipe).describe(config)


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    defaults = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in defaults:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{sorted(defaults)}")
        example = getattr(PRESETS["paper"], name)
        kind = str(defaults[name].type)
        if example is None and text.lower() != "none" and ("float" in kind or "int" in kind):
            example = 0.0 if "float" in kind else 0  # an optional number (spacing_mm, ...)
        values[name] = _parse_value(name, text, example)
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

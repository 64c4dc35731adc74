"""``python examples/msseg train``: preprocess (cached), split, and train the planar res-u-net.

    python examples/msseg train --data data/msseg --out runs/paper --weights vgg16.pth
    python examples/msseg train --data data/phantom --out runs/demo --config demo --epochs 3
    torchrun --nproc_per_node=4 examples/msseg/__main__.py train --data ... --out ...  # DDP
    python examples/msseg train --data data/msseg --out runs/paper --resume runs/paper/last.pt

Steps: the preset (`--config`) with the flags applied on top (or, with `--resume`, the
checkpoint's config with the flags on top) -> every scan preprocessed into the cube cache
(`--cache`, shared between runs: entries are keyed by file content and cube settings) -> the
scans split into training and validation (`--val`, default: the last scan in alphabetical order
of those not excluded with `--exclude`) -> `msseg.training.engine.train`, which writes last.pt, best.pt,
history.csv and curves.png into `--out`. The resolved config is printed and saved as
``<out>/config.json``; every checkpoint holds it too.

Any TrainConfig field without a flag of its own can be set with ``--set FIELD=VALUE``
(``--set decoder_filters=32,16,8,4 volume_size=128``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from msseg.config import PRESETS, TrainConfig, preset
from msseg.data.cache import CacheEntry, fill_cache
from msseg.data.preprocess import PipelineConfig
from msseg.data.slab_dataset import SlabDataset
from msseg.io.discovery import ScanRecord, discover_scans
from msseg.io.atomic import atomic_write_text
from msseg.training.checkpoint import load_checkpoint
from msseg.training.engine import train
from msseg.training.runtime import distributed_session

__all__ = [
    "add_config_arguments",
    "config_from_args",
    "format_config",
    "load_slab_datasets",
    "pipeline_config",
    "split_scans",
]

_AMP = {"bf16": "bf16", "fp16": "fp16", "none": "fp32"}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that build a `TrainConfig` (shared by ``train`` and ``cv``)."""
    model = parser.add_argument_group("model")
    model.add_argument("--config", choices=sorted(PRESETS), default="paper",
                       help="preset: 'paper' (ICPR 2020, 256³, needs a GPU) or 'demo' (64³, CPU)")
    model.add_argument("--encoder", help="timm CNN for the encoder (default: the preset's vgg16)")
    weights = model.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path,
                         help="local 2D ImageNet checkpoint for the encoder (timm/torchvision)")
    weights.add_argument("--pretrained", action="store_true",
                         help="ImageNet weights from the timm hub (needs network access)")
    model.add_argument("--trainable-bottleneck", action="store_true",
                       help="train the bottleneck convs (the paper's code freezes them)")
    model.add_argument("--train-encoder", action="store_true",
                       help="fine-tune the encoder too (the paper freezes it)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int, help="maximum epochs (paper 100, demo 12)")
    optim.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    optim.add_argument("--batch-size", type=int, help="global batch size (paper 2)")
    optim.add_argument("--lr", type=float, help="Adam learning rate (paper 5e-5)")
    optim.add_argument("--seed", type=int, help="seed of the initialisation and data order")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", help="'auto' (default: cuda if available), 'cpu', 'cuda'")
    runtime.add_argument("--amp", choices=sorted(_AMP),
                         help="autocast precision (default: bf16 on a GPU that has it, else none)")
    runtime.add_argument("--compile", action="store_true", help="torch.compile the model")
    runtime.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    runtime.add_argument("--no-progress", action="store_true", help="no progress bars")
    runtime.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                         help="any other TrainConfig field, e.g. volume_size=128 "
                              "decoder_filters=64,32,16,8")


def config_from_args(args: argparse.Namespace, *, base: TrainConfig | None = None,
                     **fixed: Any) -> TrainConfig:
    """The preset `args.config` (or `base`) with the given flags, `--set` values and `fixed`.

    Raises:
        ValueError: an unknown or invalid field, or a malformed ``--set`` item.
    """
    changes: dict[str, Any] = dict(_parse_set(args.set))
    flags = {"encoder": args.encoder, "epochs": args.epochs, "patience": args.patience,
             "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "num_workers": args.workers,
             "precision": _AMP.get(args.amp),
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


def format_config(config: TrainConfig) -> str:
    """One `field = value` line per config field."""
    return "\n".join(f"  {k:<18} = {v}" for k, v in config.to_dict().items())


def pipeline_config(config: TrainConfig) -> PipelineConfig:
    """The data pipeline settings a model was trained with (cube size, slabs; min-max scaling)."""
    return PipelineConfig(size=config.volume_size, slab=config.slab, step=config.slab_step)


def split_scans(
    records: Sequence[ScanRecord], *, val: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[ScanRecord], list[ScanRecord]]:
    """(training, validation) records: `exclude` left out; `val` validates (default: the last
    remaining scan in alphabetical order, as the paper's cross-validation); the rest train.

    Raises:
        ValueError: an unknown patient id, or fewer than one training and one validation scan.
    """
    ids = [r.patient_id for r in records]
    unknown = sorted((set(val) | set(exclude)) - set(ids))
    if unknown:
        raise ValueError(f"unknown patient id(s) {unknown}; the data has {ids}")
    kept = sorted((r for r in records if r.patient_id not in exclude), key=lambda r: r.patient_id)
    chosen = set(val) if val else {kept[-1].patient_id} if kept else set()
    validation = [r for r in kept if r.patient_id in chosen]
    training = [r for r in kept if r.patient_id not in chosen]
    if not training or not validation:
        raise ValueError(f"need at least one training and one validation scan; got "
                         f"{len(training)} and {len(validation)} from {len(records)} scans "
                         f"(excluded {list(exclude)})")
    return training, validation


def load_slab_datasets(
    config: TrainConfig, entries: dict[str, CacheEntry], training: Sequence[ScanRecord],
    validation: Sequence[ScanRecord],
) -> tuple[SlabDataset, SlabDataset]:
    """(training, validation) `SlabDataset`s of cached cubes (`entries`: patient id -> entry)."""

    def dataset(records: Sequence[ScanRecord]) -> SlabDataset:
        cubes = [entries[r.patient_id].load(mmap=False) for r in records]
        return SlabDataset([c.flair for c in cubes], [c.mask for c in cubes], slab=config.slab,
                           step=config.slab_step)

    return dataset(training), dataset(validation)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python examples/msseg train``."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True,
                      help="MSSEG folder (<PATIENT>/3DFLAIR.nii.gz + Consensus.nii.gz), scan CSV "
                           "(patient_id,flair,mask[,centre]) or FLAIR pattern with {id}")
    data.add_argument("--mask-pattern", help="mask pattern with {id} (pattern layout only)")
    data.add_argument("--out", type=Path, required=True,
                      help="run folder: checkpoints, history.csv, curves.png, config.json")
    data.add_argument("--cache", type=Path, default=Path("runs/cache"),
                      help="preprocessed-cube cache, shared by runs (default runs/cache)")
    data.add_argument("--val", nargs="+", default=[], metavar="PATIENT",
                      help="validation scans (default: the last remaining one alphabetically)")
    data.add_argument("--exclude", nargs="+", default=[], metavar="PATIENT",
                      help="scans to leave out entirely (e.g. your test scans)")
    data.add_argument("--resume", type=Path, metavar="CKPT",
                      help="continue a run from its last.pt (its config, then these flags)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train; print the resolved config, the split and the best epoch."""
    base = None
    if args.resume is not None:
        base = TrainConfig.from_dict(load_checkpoint(args.resume)["config"])
    config = config_from_args(args, base=base, out_dir=str(args.out))
    records = discover_scans(args.data, mask_pattern=args.mask_pattern)
    training, validation = split_scans(records, val=args.val, exclude=args.exclude)

    with distributed_session():
        main = not dist.is_initialized() or dist.get_rank() == 0
        if main:
            print(f"config ({'resumed from ' + str(args.resume) if base else args.config}):")
            print(format_config(config))
            print(f"training on {len(training)} scans: {[r.patient_id for r in training]}")
            print(f"validating on {[r.patient_id for r in validation]}")
            atomic_write_text(args.out / "config.json", json.dumps(config.to_dict(), indent=2))
        entries = fill_cache([*training, *validation], pipeline_config(config), args.cache,
                             progress=main and config.progress)
        by_id = {e.record.patient_id: e for e in entries}
        train_set, val_set = load_slab_datasets(config, by_id, training, validation)
        result = train(config, train_set, val_set, resume=args.resume)
    if main:
        stop = "stopped early" if result.stopped_early else f"{len(result.history)} epochs"
        print(f"done ({stop}); best validation loss {result.best_val_loss:.4f} at epoch "
              f"{result.best_epoch}: {result.best_path}")
    return 0

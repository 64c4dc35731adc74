"""``msseg train``: preprocess (cached), split, and train the planar res-u-net.

    msseg train -i data/msseg -o runs/real --weights vgg16.onnx          # the real-data recipe
    msseg train -i data/msseg -o runs/paper --config paper --weights vgg16.onnx
    msseg train -i data/phantom -o runs/demo --config demo --epochs 3
    torchrun --nproc_per_node=4 -m msseg train -i data/msseg -o runs/ddp ...     # DDP
    msseg train -i data/msseg -o runs/paper --resume runs/paper/last.pt
    msseg train -i data/msseg -o runs/paper --overwrite                         # start again

Steps: the preset (``--config``, default ``real``) with the flags applied on top (or, with
``--resume``, the checkpoint's config with the flags on top) -> the scans split into training
and validation (``--val``, default: the last scan in alphabetical order of those not excluded
with ``--exclude``) -> recipe "spacing" without a ``spacing_mm``: the median in-plane voxel size
of the training scans -> every scan preprocessed into the cache (``--cache``, default
``<out>/cache``; entries are keyed by file content and settings, so runs can share one) ->
`msseg.training.engine.train`, which writes last.pt, best.pt, history.csv (validation Dice in
the working space) and curves.png into the output folder -> the best checkpoint's Dice on the
validation scans' own grids (`msseg.workflows.validation`), logged and saved as
``<out>/validation.json``. The resolved config is logged and saved as ``<out>/config.json``;
every checkpoint holds it too. At the end ``<out>/report.html`` shows the run in a browser
(curves, validation scores, history, config). An output folder that holds a run is refused
before any work unless ``--resume`` continues it or ``--overwrite`` replaces it.

Any TrainConfig field without a flag of its own can be set with ``--set FIELD=VALUE``
(``--set decoder_filters=32,16,8,4 volume_size=128``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from msseg.commands.options import (
    add_config_arguments,
    add_data_arguments,
    check_before_training,
    check_outputs_outside,
    mask_labels,
    set_threads,
    train_config,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg train``."""
    data = parser.add_argument_group("data")
    add_data_arguments(data)
    data.add_argument("-o", "--out", type=Path, required=True,
                      help="run folder: checkpoints, history.csv, curves.png, config.json")
    data.add_argument("--cache", type=Path,
                      help="preprocessing cache; runs may share one (default <out>/cache)")
    data.add_argument("--val", nargs="+", default=[], metavar="PATIENT",
                      help="validation scans (default: the last remaining one alphabetically)")
    data.add_argument("--exclude", nargs="+", default=[], metavar="PATIENT",
                      help="scans to leave out entirely (e.g. your test scans)")
    data.add_argument("--resume", type=Path, metavar="CKPT",
                      help="continue a run from its last.pt (its config, then these flags)")
    data.add_argument("--overwrite", action="store_true",
                      help="replace the run the output folder holds (default: refuse)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train; log the resolved config, the split and the best epoch."""
    import json

    import torch.distributed as dist

    from msseg.data.cache import fill_cache
    from msseg.data.slab_dataset import SlabDataset
    from msseg.data.splits import split_scans
    from msseg.inference.predictor import load_predictor
    from msseg.io.atomic import atomic_write_text
    from msseg.io.discovery import discover_scans
    from msseg.report.runs import write_training_report
    from msseg.training.checkpoint import checkpoint_config, load_checkpoint
    from msseg.training.engine import train
    from msseg.training.logbook import check_run_folder
    from msseg.training.run_data import training_data
    from msseg.training.runtime import distributed_session
    from msseg.workflows.validation import native_validation

    check_run_folder(args.out, resume=args.resume, overwrite=args.overwrite)
    set_threads(args)
    base = None
    if args.resume is not None:
        base = checkpoint_config(load_checkpoint(args.resume), args.resume)
    config = train_config(args, base=base, out_dir=str(args.out))
    check_before_training(config, args.out)
    check_outputs_outside(args.data, run_folder=args.out, cache=args.cache)
    records = discover_scans(args.data, mask_pattern=args.mask_pattern,
                             mask_labels=mask_labels(args))
    training, validation = split_scans(records, val=args.val, exclude=args.exclude)
    config = config.with_data(training)
    cache = args.cache or args.out / "cache"

    with distributed_session():
        main = not dist.is_initialized() or dist.get_rank() == 0
        if main:
            log.info("config (%s):\n%s", f"resumed from {args.resume}" if base else args.config,
                     config.describe())
            log.info("training on %d scans: %s", len(training),
                     [r.patient_id for r in training])
            log.info("validating on %s", [r.patient_id for r in validation])
            atomic_write_text(args.out / "config.json", json.dumps(config.to_dict(), indent=2))
        entries = {e.record.patient_id: e for e in
                   fill_cache([*training, *validation], config.pipeline, cache,
                              progress=main and config.progress)}
        train_entries, val_entries = ([entries[r.patient_id] for r in split]
                                      for split in (training, validation))
        train_set, val_set = (SlabDataset.for_config(split, config)
                              for split in (train_entries, val_entries))
        result = train(config, train_set, val_set, resume=args.resume,
                       overwrite=args.overwrite,
                       data=training_data(train_entries, val_entries))
    if main:
        stop = "stopped early" if result.stopped_early else f"{len(result.history)} epochs"
        log.info("done (%s); best validation loss %.4f at epoch %d: %s", stop,
                 result.best_val_loss, result.best_epoch, result.best_path)
        if result.best_path is not None:
            predictor = load_predictor(result.best_path, device=config.device,
                                       precision=config.precision).predictor
            scores = native_validation(predictor, config,
                                       [entries[r.patient_id] for r in validation],
                                       checkpoint=result.best_path)
            atomic_write_text(args.out / "validation.json", json.dumps(scores, indent=2))
            log.info("best checkpoint (epoch %d), validation Dice on the scans' own grids: %s "
                     "(mean %.3f)", result.best_epoch,
                     ", ".join(f"{k} {v:.3f}" for k, v in scores["dice"].items()),
                     scores["mean_dice"])
        log.info("report: %s", write_training_report(args.out))
    return 0

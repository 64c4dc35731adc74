"""``msseg summary``: the architecture of a preset and its parameter counts.

    msseg summary --config paper
    msseg summary --config demo --encoder resnet34 --trainable-bottleneck
"""

from __future__ import annotations

import argparse
import logging

from msseg.commands.options import by_preset
from msseg.config import PRESETS, preset

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``msseg summary``."""
    parser.add_argument("--config", choices=sorted(PRESETS), default="paper",
                        help="preset to describe (default paper)")
    parser.add_argument("--encoder", help=f"timm CNN for the encoder (default: the preset's: "
                                          f"{by_preset('encoder')})")
    parser.add_argument("--trainable-bottleneck", action="store_true",
                        help="count the bottleneck as trainable (the paper's code freezes it)")
    parser.add_argument("--train-encoder", action="store_true",
                        help="count the encoder as trainable (the paper freezes it)")


def run(args: argparse.Namespace) -> int:
    """Log the architecture, the feature shapes of one slab and the parameter counts."""
    import warnings

    from msseg.config import recipe_named
    from msseg.model.encoder import RandomEncoderWarning
    from msseg.model.resunet import build_model
    from msseg.model.summary import summary

    changes = {"train_bottleneck": True} if args.trainable_bottleneck else {}
    if args.train_encoder:
        changes["train_encoder"] = True
    if args.encoder:
        changes["encoder"] = args.encoder
    config = preset(args.config, **changes)
    with warnings.catch_warnings():  # weights do not change the counts
        warnings.simplefilter("ignore", RandomEncoderWarning)
        model = build_model(config)
    log.info("config %r, encoder %s", args.config, config.encoder)
    input_shape = (1, 3, *recipe_named(config.recipe).input_shape(config))
    log.info("%s", summary(model, input_shape=input_shape))
    return 0

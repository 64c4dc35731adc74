"""Small configurations of the sweep's token families (vision transformers, MLP-mixers).

The registry's smallest model of these families is large for CI's 2 cores (gemma4_vit_167m on
768² images, samvit_base and beit_base on 224²), so the sweep builds each with fewer blocks, a
smaller image (64² where the family allows) and, where the width does not change the code path,
fewer channels: the same block and head code as the registry's model. Families whose registry
function fixes an argument the sweep shrinks are built from their class with the registry's
other arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import timm
from timm.models import gemma4_vit, hieradet_sam2, mlp_mixer, mvitv2, nest, volo
from torch import nn

Builder = Callable[[], nn.Module]

# family -> arguments for timm.create_model(<the family's model in timm_families.txt>, ...)
SMALL_ARGS: dict[str, dict] = {
    "beit": dict(img_size=64, depth=2, embed_dim=96, num_heads=3),
    "cait": dict(img_size=64, depth=2, depth_token_only=1),
    "coat": dict(img_size=64, serial_depths=(1, 1, 1, 1), parallel_depth=1),
    "convit": dict(img_size=64, depth=2),
    "crossvit": dict(img_size=120, depth=((1, 1, 0),)),
    "deit": dict(img_size=64, depth=2),
    "efficientformer": dict(depths=(1, 1, 1, 1), num_vit=1),
    "efficientvim": dict(depths=(1, 1, 1)),
    "eva": dict(img_size=64, depth=2),
    "hiera": dict(img_size=64, stages=(1, 1, 1, 1)),
    "levit": dict(img_size=64),
    "naflexvit": dict(img_size=64, depth=2, embed_dim=96, num_heads=3),
    "pit": dict(img_size=64, depth=(1, 1, 1)),
    "tnt": dict(img_size=64, depth=2),
    "twins": dict(img_size=64, depths=(1, 1, 1, 1)),
    "visformer": dict(img_size=64),
    "vision_transformer": dict(),
    "vision_transformer_hybrid": dict(img_size=64, depth=2),
    "vision_transformer_relpos": dict(img_size=64),
    "vision_transformer_sam": dict(img_size=64, depth=2, embed_dim=96, num_heads=3,
                                   global_attn_indexes=(1,), window_size=2),
    "vitamin": dict(img_size=64, depth=2),
    "xcit": dict(img_size=64, depth=2),
}

# families whose registry function fixes what the sweep shrinks: built from the class
SMALL_CLASSES: dict[str, tuple[str, Builder]] = {
    "gemma4_vit": ("Gemma4VitClassifier(img_size=64, embed_dim=64, depth=2)",
                   lambda: gemma4_vit.Gemma4VitClassifier(
                       img_size=64, embed_dim=64, depth=2, num_heads=2, head_dim=32,
                       intermediate_size=128)),
    "hieradet_sam2": ("HieraDet(stages=(1, 2, 1, 1), global_att_blocks=(2,))",
                      lambda: hieradet_sam2.HieraDet(stages=(1, 2, 1, 1),
                                                     global_att_blocks=(2,))),
    "mlp_mixer": ("MlpMixer(gMLP blocks, img_size=64, num_blocks=2)",
                  lambda: mlp_mixer.MlpMixer(
                      img_size=64, patch_size=16, num_blocks=2, embed_dim=128, mlp_ratio=6,
                      block_layer=mlp_mixer.SpatialGatingBlock, mlp_layer=mlp_mixer.GatedMlp)),
    "mvitv2": ("MultiScaleVit(depths=(1, 1, 1, 1), img_size=64)",
               lambda: mvitv2.MultiScaleVit(mvitv2.MultiScaleVitCfg(depths=(1, 1, 1, 1)),
                                            img_size=(64, 64))),
    "nest": ("Nest(img_size=64, depths=(1, 1, 1))",
             lambda: nest.Nest(img_size=64, embed_dims=(96, 192, 384), num_heads=(3, 6, 12),
                               depths=(1, 1, 1))),
    "volo": ("VOLO(img_size=64, layers=(1, 1, 1, 1))",
             lambda: volo.VOLO(img_size=64, layers=(1, 1, 1, 1),
                               embed_dims=(192, 384, 384, 384), num_heads=(6, 12, 12, 12))),
}


def small_token_model(family: str, name: str) -> tuple[str, Builder] | None:
    """(label, builder) of the small configuration of a token family whose registry model is
    `name`; None for families the sweep builds as the registry does."""
    if family in SMALL_CLASSES:
        return SMALL_CLASSES[family]
    if family not in SMALL_ARGS:
        return None
    kwargs = SMALL_ARGS[family]
    label = name + "".join(f" ({k}={v})" for k, v in kwargs.items())
    return label, lambda: timm.create_model(name, pretrained=False, **kwargs)

"""The transformers sweep's cases: every CNN-like vision model class of HuggingFace transformers.

Each model family that computes on feature maps (convolutions, pooling, or attention within a
map) with its `*Model`, `*ForImageClassification`, `*ForSemanticSegmentation`,
`*ForDepthEstimation` and `*Backbone` classes where they exist; built from small configs with
random weights (nothing is downloaded), checked like the network sweep (`network_check`).
Token models (Swin, FocalNet, CvT, LeViT) are in the sweep too: those whose root pools tokens
transposed to (B, C, L) are refused, as the case says.

A case's `head` is where P0's head pool lives: the module whose own code pools globally (the
root of ConvNeXt's `*Model`), or the pooling layer.
"""

from __future__ import annotations

from collections.abc import Callable

import transformers as hf
from networks import Case
from torch import nn

TOKENS = ("its root pools tokens it transposed to (B, C, L) with AdaptiveAvgPool1d: the "
          "token volume (N, S, L, C) transposed is not the slices' (B, C, L)")
SWIN_BACKBONE = ("its encoder returns its stages' maps reshaped from window tokens, which it "
                 "builds with hooks and reshapes that no per-slice run reproduces")
SLICE_CLS = ("its pooler output is each slice's first token (B, C), a per-slice vector with no "
             "volume layout, and the pool that makes that token also makes per-slice tokens")


def _hf(model: str, config: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return getattr(hf, model)(getattr(hf, config)(**kwargs))
    return build


def _cases(family: str, config: str, kwargs: dict, variants: dict[str, str | tuple | None], *,
           size: int = 32, refusal: str | None = None) -> list[Case]:
    """One case per model class: variants maps the class name to its head (see the module
    docstring; a tuple for several), or to None."""
    return [Case(f"hf_{family}_{model.removeprefix(prefix).lower() or 'model'}", "transformers",
                 _hf(model, config, **kwargs), size=size, head=head, refusal=refusal)
            for model, head in variants.items()
            for prefix in [config.removesuffix("Config")]]


_LABELS = {"num_labels": 3}
RESNET = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic",
          "out_features": ["stage1", "stage2"], **_LABELS}
CONVNEXT = {"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2,
            "out_features": ["stage1", "stage2"], **_LABELS}
BIT = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "num_groups": 2,
       "out_features": ["stage1", "stage2"], **_LABELS}
EFFICIENTNET = {"width_coefficient": 0.25, "depth_coefficient": 0.2, "hidden_dim": 320,
                "image_size": 32, **_LABELS}
SEGFORMER = {"num_encoder_blocks": 2, "depths": [1, 1], "sr_ratios": [2, 1],
             "hidden_sizes": [8, 16], "num_attention_heads": [1, 2], "decoder_hidden_size": 16,
             "mlp_ratios": [2, 2], **_LABELS}
MOBILEVIT = {"image_size": 64, "hidden_sizes": [8, 8, 8], "num_attention_heads": 2,
             "neck_hidden_sizes": [8, 8, 8, 8, 8, 8, 16], "aspp_out_channels": 8, **_LABELS}
MOBILEVITV2 = {"image_size": 64, "width_multiplier": 0.25, "aspp_out_channels": 16,
               "n_attn_blocks": [1, 1, 1], **_LABELS}
REGNET = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "groups_width": 8,
          **_LABELS}
MOBILENET = {"depth_multiplier": 0.25, "image_size": 32, **_LABELS}
POOLFORMER = {"hidden_sizes": [8, 16], "depths": [1, 1], "num_encoder_blocks": 2,
              "patch_sizes": [7, 3], "strides": [4, 2], "padding": [2, 1], **_LABELS}
FOCALNET = {"embed_dim": 8, "hidden_sizes": [16, 32], "depths": [1, 1],
            "focal_levels": [2, 2], "focal_windows": [3, 3],
            "out_features": ["stage1", "stage2"], **_LABELS}
SWIFTFORMER = {"depths": [1, 1, 1, 1], "embed_dims": [8, 16, 16, 32], **_LABELS}
HGNETV2 = {"embedding_size": 8, "depths": [1, 1], "hidden_sizes": [16, 32],
           "stem_channels": [3, 8, 8], "stage_in_channels": [8, 16],
           "stage_mid_channels": [8, 8], "stage_out_channels": [16, 32],
           "stage_num_blocks": [1, 1], "stage_downsample": [False, True],
           "stage_light_block": [False, True], "stage_kernel_size": [3, 5],
           "stage_numb_of_layers": [2, 2], "out_features": ["stage1", "stage2"], **_LABELS}
TEXTNET = {"stem_out_channels": 8, "hidden_sizes": [8, 8, 16, 16, 32],
           "conv_layer_kernel_sizes": [[[3, 3]], [[3, 3]], [[3, 3]], [[3, 3]]],
           "conv_layer_strides": [[1], [2], [2], [2]],
           "out_features": ["stage1", "stage2"], **_LABELS}
PPLCNET = {"scale": 0.25, "class_expand": 32, "out_features": ["stage1", "stage2"], **_LABELS}
PPLCNETV3 = {"scale": 0.35, "out_features": ["stage1", "stage2"]}
DINOV3_CONVNEXT = {"hidden_sizes": [8, 16], "depths": [1, 1],
                   "out_features": ["stage1", "stage2"]}
GLPN = {"num_encoder_blocks": 2, "depths": [1, 1], "sr_ratios": [2, 1], "hidden_sizes": [8, 16],
        "num_attention_heads": [1, 2], "mlp_ratios": [2, 2], "decoder_hidden_size": 8}
SWIN = {"embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4,
        "image_size": 32, "out_features": ["stage1", "stage2"], **_LABELS}
CVT = {"embed_dim": [8, 16, 16], "num_heads": [1, 2, 2], "depth": [1, 2, 3],
       "mlp_ratio": [2.0, 2.0, 2.0], **_LABELS}
PVTV2 = {"num_encoder_blocks": 2, "depths": [1, 1], "sr_ratios": [2, 1], "hidden_sizes": [8, 16],
         "num_attention_heads": [1, 2], "mlp_ratios": [2, 2], "patch_sizes": [7, 3],
         "strides": [4, 2], "out_features": ["stage1", "stage2"], **_LABELS}
LEVIT = {"image_size": 64, "hidden_sizes": [16, 32, 48], "num_attention_heads": [1, 2, 3],
         "depths": [1, 1, 1], "key_dim": [8, 8, 8], "mlp_ratio": [2, 2, 2],
         "attention_ratio": [2, 2, 2], **_LABELS}


def _upernet(backbone: str, backbone_kwargs: dict) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        config = hf.UperNetConfig(backbone_config=getattr(hf, backbone)(**backbone_kwargs),
                                  hidden_size=16, auxiliary_channels=8, auxiliary_in_channels=16,
                                  pool_scales=[1, 2], num_labels=3)
        return hf.UperNetForSemanticSegmentation(config)
    return build


CASES_LIST: list[Case] = [
    *_cases("resnet", "ResNetConfig", RESNET, {
        "ResNetModel": None, "ResNetForImageClassification": "resnet.pooler",
        "ResNetBackbone": None}),
    *_cases("convnext", "ConvNextConfig", CONVNEXT, {
        "ConvNextModel": "", "ConvNextForImageClassification": "convnext",
        "ConvNextBackbone": None}),
    *_cases("convnextv2", "ConvNextV2Config", CONVNEXT, {
        "ConvNextV2Model": "", "ConvNextV2ForImageClassification": "convnextv2",
        "ConvNextV2Backbone": None}),
    *_cases("efficientnet", "EfficientNetConfig", EFFICIENTNET, {
        "EfficientNetModel": "pooler", "EfficientNetForImageClassification":
        "efficientnet.pooler"}, size=64),
    *_cases("segformer", "SegformerConfig", SEGFORMER, {
        "SegformerModel": None, "SegformerForImageClassification": "",
        "SegformerForSemanticSegmentation": None}),
    *_cases("mobilevit", "MobileViTConfig", MOBILEVIT, {
        "MobileViTModel": "", "MobileViTForImageClassification": "mobilevit",
        "MobileViTForSemanticSegmentation": None},
        size=64),
    *_cases("mobilevitv2", "MobileViTV2Config", MOBILEVITV2, {
        "MobileViTV2Model": "", "MobileViTV2ForImageClassification": "mobilevitv2",
        "MobileViTV2ForSemanticSegmentation": None},
        size=64),
    *_cases("regnet", "RegNetConfig", REGNET, {
        "RegNetModel": None, "RegNetForImageClassification": "regnet.pooler"}),
    *_cases("bit", "BitConfig", BIT, {
        "BitModel": None, "BitForImageClassification": "bit.pooler", "BitBackbone": None}),
    *_cases("mobilenet_v1", "MobileNetV1Config", MOBILENET, {
        "MobileNetV1Model": "pooler", "MobileNetV1ForImageClassification":
        "mobilenet_v1.pooler"}, size=64),
    *_cases("mobilenet_v2", "MobileNetV2Config", MOBILENET, {
        "MobileNetV2Model": "pooler", "MobileNetV2ForImageClassification":
        "mobilenet_v2.pooler", "MobileNetV2ForSemanticSegmentation": None}, size=64),
    *_cases("poolformer", "PoolFormerConfig", POOLFORMER, {
        "PoolFormerModel": None, "PoolFormerForImageClassification": ""}),
    *_cases("focalnet", "FocalNetConfig", FOCALNET, {
        "FocalNetModel": "pooler", "FocalNetForImageClassification": "focalnet.pooler"},
        refusal=TOKENS),
    *_cases("focalnet", "FocalNetConfig", FOCALNET, {"FocalNetBackbone": None}),
    *_cases("swiftformer", "SwiftFormerConfig", SWIFTFORMER, {
        "SwiftFormerModel": None, "SwiftFormerForImageClassification": ""}),
    *_cases("hgnet_v2", "HGNetV2Config", HGNETV2, {
        "HGNetV2Backbone": None, "HGNetV2ForImageClassification": "avg_pool"}),
    *_cases("textnet", "TextNetConfig", TEXTNET, {
        "TextNetModel": None, "TextNetForImageClassification": "avg_pool",
        "TextNetBackbone": None}),
    *_cases("pp_lcnet", "PPLCNetConfig", PPLCNET, {
        "PPLCNetBackbone": None, "PPLCNetForImageClassification": "avg_pool"}),
    *_cases("pp_lcnet_v3", "PPLCNetV3Config", PPLCNETV3, {"PPLCNetV3Backbone": None}),
    *_cases("dinov3_convnext", "DINOv3ConvNextConfig", DINOV3_CONVNEXT, {
        "DINOv3ConvNextModel": ""}, refusal=SLICE_CLS),
    *_cases("dinov3_convnext", "DINOv3ConvNextConfig", DINOV3_CONVNEXT, {
        "DINOv3ConvNextBackbone": None}),
    *_cases("glpn", "GLPNConfig", GLPN, {"GLPNModel": None, "GLPNForDepthEstimation": None}),
    Case("hf_upernet_convnext", "transformers", _upernet("ConvNextConfig", {
        "hidden_sizes": [8, 8, 16, 16], "depths": [1, 1, 1, 1],
        "out_features": ["stage1", "stage2", "stage3", "stage4"]}), size=64),
    Case("hf_upernet_resnet", "transformers", _upernet("ResNetConfig", {
        "embedding_size": 8, "hidden_sizes": [8, 8, 16, 16], "depths": [1, 1, 1, 1],
        "layer_type": "basic", "out_features": ["stage1", "stage2", "stage3", "stage4"]}),
        size=64),
    *_cases("swin", "SwinConfig", SWIN, {
        "SwinModel": "", "SwinForImageClassification": "swin"}, refusal=TOKENS),
    *_cases("swin", "SwinConfig", SWIN, {"SwinBackbone": None}, refusal=SWIN_BACKBONE),
    *_cases("cvt", "CvtConfig", CVT, {"CvtModel": None, "CvtForImageClassification": ""}),
    *_cases("pvt_v2", "PvtV2Config", PVTV2, {
        "PvtV2Model": None, "PvtV2ForImageClassification": "", "PvtV2Backbone": None}),
    *_cases("levit", "LevitConfig", LEVIT, {
        "LevitModel": "", "LevitForImageClassification": ""}, size=64),
]

CASES: dict[str, Case] = {c.id: c for c in CASES_LIST}

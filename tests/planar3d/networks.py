"""The network sweep's cases: networks people convert beyond classifiers.

segmentation_models_pytorch (every architecture), MONAI 2D networks, torchvision segmentation
models, FPN backbones and fx feature extractors, timm variants, and modules typical of research
code (`research_blocks`, `research_nets`). Every model has random weights (nothing is
downloaded), made informative by `randomize`, and is seeded, so that a result reproduces.

A case says where the reference of docs/design.md P0 pools globally (`head`: the module whose own
code holds the head pool, whose global pools see the slices of each volume together), and which
refusals are the correct outcome (`refusal`: why no exact 3D network exists).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import monai.networks.nets as monai_nets
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
from p3d_helpers import randomize
from research_blocks import (
    CBAM,
    AddCoords,
    AddCoordsShapeFree,
    ASPPLite,
    BranchOnBatchMean,
    BranchOnFirstImage,
    ChannelShuffle,
    DropConnect,
    EdgeFilter,
    GeM,
    GlobalContext,
    LayerNorm2d,
    LinearAttention,
    LocalAttentionUnfold,
    NonLocalBlock,
    PatchMixer,
    ResidualWith,
    RollMix,
    ScaleByItem,
    ScaleByList,
    SEBlock,
    SpatialAttention,
    SpatialTransformer,
    ZeroMeanKernel,
    conv_bn,
    scale_output,
    shift_input,
)
from research_nets import (
    BranchWithEmbedding,
    ClassicClassifier,
    DictFeatures,
    FlattenLinearNoPool,
    ItemScaledHead,
    ItemScaledWithEmbedding,
    ListScaledWithEmbedding,
    MeanGatedClassifier,
    MeanGatedEmbedding,
    MeanGatedRoot,
    MinibatchStdDiscriminator,
    SegNetUnpool,
    SharedTwice,
    SmallUNet,
    TwoScaleOutputs,
)
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

SCRIPTED = ("a TorchScript module runs compiled code that conversion cannot see into; convert "
            "the eager model")
NO_POOL = "it flattens a feature map without a global pool: the result has no per-slice meaning"
DECIDES = ("its own code takes data-dependent decisions (.item(), .tolist(), `if` on a tensor) "
           "and it returns pooled tensors: it can run neither as it is nor per slice")


@dataclass(frozen=True)
class Case:
    """One network of the sweep.

    Attributes:
        id: stable identifier (the JSON file's name).
        source: "smp", "monai", "torchvision", "timm" or "research".
        build: returns the 2D model (random weights).
        channels, size: the input images (channels, size x size).
        head: path(s) of the modules holding P0's head pool ("" for the root), or None.
        refusal: why refusal is the correct outcome, or None when the network must be exact.
        batch_coupled: its eval output mixes the images of a batch (P2 against 2D images of one
            depth-constant volume does not hold; P0 does).
        with_example: pass the example batch to convert (False: its default).
    """

    id: str
    source: str
    build: Callable[[], nn.Module] = field(repr=False)
    channels: int = 3
    size: int = 32
    head: str | tuple[str, ...] | None = None
    refusal: str | None = None
    batch_coupled: bool = False
    with_example: bool = True

    def make(self) -> tuple[nn.Module, torch.Tensor, int, int]:
        """(2D model in eval mode, example batch of 2 images, channels, size); seeded."""
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = randomize(self.build()).eval()
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, self.channels, self.size, self.size, generator=generator)
        return model, example, self.channels, self.size


# -- segmentation_models_pytorch -------------------------------------------------------------
def _smp(arch: str, encoder: str = "resnet18", **kwargs) -> Callable[[], nn.Module]:
    def build():
        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=2,
                                  **kwargs)
    return build


_SMALL_DECODER = {"decoder_channels": (32, 16, 8, 8, 8)}
SMP = [
    Case("smp_unet_resnet18", "smp", _smp("Unet", **_SMALL_DECODER), size=64),
    Case("smp_unet_mobilenet_v2", "smp", _smp("Unet", "mobilenet_v2", **_SMALL_DECODER),
         size=64),
    Case("smp_unet_efficientnet_b0", "smp", _smp("Unet", "efficientnet-b0", **_SMALL_DECODER),
         size=64),
    Case("smp_unet_scse_in1", "smp", _smp("Unet", in_channels=1, decoder_attention_type="scse",
                                          decoder_channels=(32, 32, 16, 16, 16)),
         channels=1, size=64),
    Case("smp_unet_aux", "smp", _smp("Unet", aux_params={"classes": 3}, **_SMALL_DECODER),
         size=64, head="classification_head.0"),
    Case("smp_unetplusplus_resnet18", "smp", _smp("UnetPlusPlus", encoder_depth=4,
                                                  decoder_channels=(16, 8, 8, 8)), size=32),
    Case("smp_manet_resnet18", "smp", _smp("MAnet", decoder_pab_channels=16, **_SMALL_DECODER),
         size=64),
    Case("smp_linknet_resnet18", "smp", _smp("Linknet"), size=64),
    Case("smp_fpn_resnet18", "smp", _smp("FPN", decoder_pyramid_channels=32,
                                         decoder_segmentation_channels=32), size=64),
    Case("smp_fpn_timm_efficientnet", "smp", _smp("FPN", "tu-efficientnet_b0",
                                                  decoder_pyramid_channels=32,
                                                  decoder_segmentation_channels=32), size=64),
    Case("smp_pspnet_resnet18", "smp", _smp("PSPNet", psp_out_channels=16), size=64),
    Case("smp_pan_resnet18", "smp", _smp("PAN", decoder_channels=16), size=128),
    Case("smp_deeplabv3_resnet18", "smp", _smp("DeepLabV3", decoder_channels=16), size=64),
    Case("smp_deeplabv3plus_resnet18", "smp", _smp("DeepLabV3Plus", decoder_channels=16),
         size=64),
    Case("smp_upernet_resnet18", "smp", _smp("UPerNet", decoder_channels=16), size=64),
    Case("smp_segformer_mit_b0", "smp", _smp("Segformer", "mit_b0",
                                             decoder_segmentation_channels=16), size=64),
    Case("smp_dpt_vit_tiny", "smp", _smp("DPT", "tu-vit_tiny_patch16_224", dynamic_img_size=True,
                                         decoder_intermediate_channels=(16, 16, 16, 16),
                                         decoder_fusion_channels=16), size=32),
]


# -- MONAI (spatial_dims=2) -------------------------------------------------------------------
def _monai(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: getattr(monai_nets, name)(spatial_dims=2, **kwargs)


_IO = {"in_channels": 1, "out_channels": 2}
MONAI = [
    Case("monai_basicunet", "monai", _monai("BasicUNet", features=(8, 8, 16, 16, 32, 8), **_IO),
         channels=1),
    Case("monai_basicunetplusplus_ds", "monai", _monai(
        "BasicUNetPlusPlus", features=(8, 8, 16, 16, 32, 8), deep_supervision=True, **_IO),
        channels=1),
    Case("monai_unet_res", "monai", _monai("UNet", channels=(8, 16, 32), strides=(2, 2),
                                           num_res_units=2, **_IO), channels=1),
    Case("monai_unet_dropout_instance", "monai", _monai(
        "UNet", channels=(8, 16, 32), strides=(2, 2), num_res_units=1, dropout=0.2,
        norm="instance", **_IO), channels=1),
    Case("monai_dynunet", "monai", _monai(
        "DynUNet", kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
        filters=[8, 16, 32], **_IO), channels=1),
    Case("monai_dynunet_deep_supervision", "monai", _monai(
        "DynUNet", kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
        filters=[8, 16, 16, 32], deep_supervision=True, deep_supr_num=2, **_IO), channels=1),
    Case("monai_attention_unet", "monai", _monai("AttentionUnet", channels=(8, 16, 32),
                                                 strides=(2, 2), **_IO), channels=1),
    Case("monai_segresnet", "monai", _monai("SegResNet", init_filters=8, blocks_down=(1, 2, 2),
                                            blocks_up=(1, 1), **_IO), channels=1),
    Case("monai_segresnet_ds", "monai", _monai("SegResNetDS", init_filters=8,
                                               blocks_down=(1, 2, 2), dsdepth=2, **_IO),
         channels=1),
    Case("monai_flexible_unet_efficientnet", "monai", _monai(
        "FlexibleUNet", backbone="efficientnet-b0", pretrained=False,
        decoder_channels=(32, 16, 8, 8, 8), **_IO), channels=1),
    Case("monai_highresnet", "monai", _monai("HighResNet", **_IO), channels=1),
    Case("monai_mednext", "monai", _monai("MedNeXt", init_filters=8, kernel_size=3,
                                          blocks_down=(1, 1, 1, 1), blocks_bottleneck=1,
                                          blocks_up=(1, 1, 1, 1), **_IO), channels=1),
    Case("monai_patch_discriminator", "monai", _monai(
        "PatchDiscriminator", num_layers_d=2, channels=8, in_channels=1), channels=1),
    Case("monai_densenet121", "monai", _monai("DenseNet121", in_channels=1, out_channels=3),
         channels=1, size=64, head="class_layers.pool"),
    Case("monai_efficientnet_bn_b0", "monai", lambda: monai_nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=3),
        channels=1, head="_avg_pooling"),
    Case("monai_resnet18", "monai", lambda: monai_nets.resnet18(
        spatial_dims=2, n_input_channels=1, num_classes=3), channels=1, head="avgpool"),
    Case("monai_classifier", "monai", lambda: monai_nets.Classifier(
        in_shape=(1, 32, 32), classes=3, channels=(8, 16), strides=(2, 2)), channels=1,
        refusal=NO_POOL),
]


# -- torchvision ------------------------------------------------------------------------------
def _tv_seg(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models.segmentation, name)(
        weights=None, weights_backbone=None, num_classes=3, **kwargs)


class FPNOnExtractor(nn.Module):
    """torchvision's FeaturePyramidNetwork on an fx feature extractor of resnet18."""

    def __init__(self):
        super().__init__()
        nodes = {f"layer{i}": f"c{i}" for i in range(1, 5)}
        self.body = create_feature_extractor(torchvision.models.resnet18(), nodes)
        self.fpn = torchvision.ops.FeaturePyramidNetwork([64, 128, 256, 512], 16)

    def forward(self, x):
        return self.fpn(self.body(x))


def _extractor(model: Callable[[], nn.Module], nodes: dict) -> Callable[[], nn.Module]:
    return lambda: create_feature_extractor(model(), nodes)


TORCHVISION = [
    Case("tv_fcn_resnet50_aux", "torchvision", _tv_seg("fcn_resnet50", aux_loss=True)),
    Case("tv_deeplabv3_mobilenet_v3", "torchvision", _tv_seg("deeplabv3_mobilenet_v3_large"),
         size=64),
    Case("tv_deeplabv3_mobilenet_v3_aux", "torchvision", _tv_seg(
        "deeplabv3_mobilenet_v3_large", aux_loss=True), size=64),
    Case("tv_lraspp_mobilenet_v3", "torchvision", _tv_seg("lraspp_mobilenet_v3_large"),
         size=64),
    Case("tv_fpn_on_extractor", "torchvision", FPNOnExtractor, size=64),
    Case("tv_resnet_fpn_backbone", "torchvision", lambda: (
        torchvision.models.detection.backbone_utils.resnet_fpn_backbone(
            backbone_name="resnet18", weights=None, trainable_layers=5)), size=64),
    Case("tv_extractor_layer4_flatten", "torchvision", _extractor(
        torchvision.models.resnet18, {"layer4": "feat", "flatten": "emb"}), size=64,
        head="avgpool"),
    Case("tv_extractor_fc", "torchvision", _extractor(
        torchvision.models.resnet18, {"layer2": "c2", "fc": "logits"}), size=64, head="avgpool"),
    Case("tv_extractor_mobilenet_v3", "torchvision", _extractor(
        torchvision.models.mobilenet_v3_small, {"features.3": "c3", "features.8": "c8"}),
        size=64),
    Case("tv_extractor_efficientnet_dropout", "torchvision", _extractor(
        lambda: torchvision.models.efficientnet_b0(stochastic_depth_prob=0.2),
        {"features.4": "c4", "features.6": "c6"}), size=64),
]


# -- timm -------------------------------------------------------------------------------------
def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **kwargs)


TIMM = [
    Case("timm_resnet18_features_only", "timm", _timm("resnet18", features_only=True)),
    Case("timm_efficientnet_b0_expansion", "timm", _timm(
        "efficientnet_b0", features_only=True, feature_location="expansion")),
    Case("timm_mobilenetv3_expansion", "timm", _timm(
        "mobilenetv3_small_050", features_only=True, feature_location="expansion",
        out_indices=(1, 2, 3))),
    Case("timm_convnext_atto_features_droppath", "timm", _timm(
        "convnext_atto", features_only=True, drop_path_rate=0.1), size=64),
    Case("timm_resnet18_in_chans1", "timm", _timm("resnet18", in_chans=1), channels=1,
         head="global_pool.pool"),
    Case("timm_resnet18_in_chans1_default_example", "timm", _timm("resnet18", in_chans=1),
         channels=1, head="global_pool.pool", with_example=False),
    Case("timm_efficientnet_b0_num_classes0", "timm", _timm("efficientnet_b0", num_classes=0),
         head="global_pool.pool"),
    Case("timm_resnet18_catavgmax", "timm", _timm("resnet18", num_classes=4,
                                                  global_pool="catavgmax"),
         head="global_pool.pool"),
    Case("timm_resnet18_no_pool", "timm", _timm("resnet18", num_classes=0, global_pool="")),
    Case("timm_regnetx_no_pool", "timm", _timm("regnetx_002", num_classes=0, global_pool="")),
    Case("timm_mobilevit_features", "timm", _timm("mobilevitv2_050", features_only=True),
         size=64),
]


# -- research code ------------------------------------------------------------------------------
def _block(*middle: nn.Module, cin: int = 3, c: int = 8, out: int = 2) -> nn.Module:
    """conv_bn, the blocks under test, a 1x1 output conv."""
    return nn.Sequential(conv_bn(cin, c), *middle, nn.Conv2d(c, out, 1))


def _parametrized(kind: str) -> nn.Module:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    if kind == "weight_norm":
        conv = nn.utils.parametrizations.weight_norm(conv)
    elif kind == "spectral_norm":
        conv = nn.utils.parametrizations.spectral_norm(conv)
    elif kind == "old_spectral_norm":
        conv = nn.utils.spectral_norm(conv)
    elif kind == "old_weight_norm":
        conv = nn.utils.weight_norm(conv)
    else:
        nn.utils.parametrize.register_parametrization(conv, "weight", ZeroMeanKernel())
    return _block(conv, nn.ReLU())


def _hooked() -> nn.Module:
    model = _block(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    model[1].register_forward_hook(scale_output)
    model[0][0].register_forward_pre_hook(shift_input)
    model.register_forward_hook(scale_output)
    return model


def _scripted() -> nn.Module:
    return torch.jit.script(_block(nn.Conv2d(8, 8, 3, padding=1)))


def _traced() -> nn.Module:
    model = _block(nn.Conv2d(8, 8, 3, padding=1)).eval()
    return torch.jit.trace(model, torch.randn(2, 3, 32, 32))


def _glu(dim: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GLU(dim=dim), nn.Conv2d(
        4 if dim == 1 else 8, 2, 1))


R = "research"
RESEARCH = [
    Case("gem_flatten", R, lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), GeM(),
                                                nn.Flatten()), head="2"),
    Case("flatten_linear_no_pool", R, lambda: FlattenLinearNoPool(3, 32), refusal=NO_POOL),
    Case("classic_classifier_view", R, ClassicClassifier, head="pool"),
    Case("se_block_view", R, lambda: _block(SEBlock(8))),
    Case("cbam", R, lambda: _block(CBAM(8))),
    Case("spatial_attention", R, lambda: _block(SpatialAttention())),
    Case("coordconv", R, lambda: nn.Sequential(AddCoords(), conv_bn(5, 8), nn.Conv2d(8, 2, 1))),
    Case("coordconv_shape_free", R, lambda: nn.Sequential(
        AddCoordsShapeFree(), conv_bn(5, 8), nn.Conv2d(8, 2, 1))),
    Case("non_local", R, lambda: _block(NonLocalBlock(8))),
    Case("global_context", R, lambda: _block(GlobalContext(8))),
    Case("linear_attention", R, lambda: _block(LinearAttention(8))),
    Case("stn_grid_sample", R, lambda: _block(SpatialTransformer(8))),
    Case("unfold_local_attention", R, lambda: _block(LocalAttentionUnfold(8))),
    Case("nn_unfold_fold_mixer", R, lambda: _block(PatchMixer(8, 32))),
    Case("groupnorm_instancenorm", R, lambda: _block(
        nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.InstanceNorm2d(8, affine=True), nn.ReLU(),
        nn.InstanceNorm2d(8, track_running_stats=True), nn.LocalResponseNorm(3))),
    Case("layernorm_chw_and_channels", R, lambda: _block(
        nn.LayerNorm([8, 32, 32]), nn.Conv2d(8, 8, 3, padding=1), LayerNorm2d(8))),
    Case("padding_modes", R, lambda: _block(*(
        nn.Conv2d(8, 8, 3, padding=1, padding_mode=mode)
        for mode in ("reflect", "replicate", "circular")))),
    Case("padding_layers", R, lambda: _block(
        nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3), nn.ReplicationPad2d((1, 2, 0, 1)),
        nn.Conv2d(8, 8, (2, 4)), nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3))),
    Case("weight_norm", R, lambda: _parametrized("weight_norm")),
    Case("spectral_norm", R, lambda: _parametrized("spectral_norm")),
    Case("old_spectral_norm", R, lambda: _parametrized("old_spectral_norm")),
    Case("old_weight_norm", R, lambda: _parametrized("old_weight_norm")),
    Case("register_parametrization", R, lambda: _parametrized("zero_mean")),
    Case("branch_on_first_image", R, lambda: _block(BranchOnFirstImage(8))),
    Case("scale_by_item", R, lambda: _block(ScaleByItem(8))),
    Case("scale_by_tolist", R, lambda: _block(ScaleByList(8))),
    Case("branch_on_batch_mean", R, lambda: nn.Sequential(
        BranchOnBatchMean(3, 8), nn.ReLU(), nn.Conv2d(8, 2, 1)), batch_coupled=True),
    Case("glu_channels", R, lambda: _glu(1)),
    Case("glu_last_dim", R, lambda: _glu(-1)),
    Case("glu_dim2", R, lambda: _glu(2)),
    Case("glu_dim3", R, lambda: _glu(3)),
    Case("mean_gated_root", R, MeanGatedRoot, batch_coupled=True),
    Case("mean_gated_classifier", R, MeanGatedClassifier, head=("", "pool"),
         batch_coupled=True),
    Case("item_scaled_head", R, ItemScaledHead, refusal=DECIDES),
    Case("item_scaled_with_embedding", R, ItemScaledWithEmbedding, refusal=DECIDES),
    Case("branch_with_embedding", R, BranchWithEmbedding, refusal=DECIDES),
    Case("tolist_with_embedding", R, ListScaledWithEmbedding, refusal=DECIDES),
    Case("batch_roll_mix", R, lambda: _block(RollMix()), batch_coupled=True),
    Case("mean_gated_embedding", R, MeanGatedEmbedding, head="", batch_coupled=True),
    Case("minibatch_std_discriminator", R, MinibatchStdDiscriminator, batch_coupled=True),
    Case("batchnorm_no_running_stats", R, lambda: _block(
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False), nn.ReLU()),
        batch_coupled=True),
    Case("dropout_dropout2d", R, lambda: _block(
        nn.Dropout(0.2), nn.Conv2d(8, 8, 3, padding=1), nn.Dropout2d(0.2))),
    Case("droppath_timm", R, lambda: _block(ResidualWith(8, timm.layers.DropPath(0.2)))),
    Case("stochastic_depth_tv", R, lambda: _block(
        ResidualWith(8, torchvision.ops.StochasticDepth(0.2, "row")))),
    Case("dropblock_tv", R, lambda: _block(
        ResidualWith(8, torchvision.ops.DropBlock2d(0.2, 3)))),
    Case("drop_connect_monai", R, lambda: _block(ResidualWith(8, DropConnect(0.2)))),
    Case("dict_maps_and_embedding", R, DictFeatures, head=""),
    Case("hooks_before_conversion", R, _hooked),
    Case("small_unet", R, SmallUNet),
    Case("segnet_unpool", R, SegNetUnpool),
    Case("pixel_shuffle_sr", R, lambda: nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.Tanh(), nn.Conv2d(16, 12, 3, padding=1),
        nn.PixelShuffle(2), nn.Conv2d(3, 3, 3, padding=1))),
    Case("channel_shuffle_view", R, lambda: _block(
        nn.Conv2d(8, 8, 1, groups=2), ChannelShuffle(2), nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ChannelShuffle(4))),
    Case("aspp_image_pool", R, lambda: _block(ASPPLite(8))),
    Case("shared_weights_flip", R, SharedTwice),
    Case("two_scale_outputs", R, TwoScaleOutputs),
    Case("sobel_buffer_conv2d", R, lambda: nn.Sequential(EdgeFilter(), conv_bn(2, 8))),
    Case("fx_symbolic_trace_unet", R, lambda: torch.fx.symbolic_trace(SmallUNet())),
    Case("fx_symbolic_trace_classifier", R, lambda: torch.fx.symbolic_trace(ClassicClassifier()),
         head="pool"),
    Case("jit_script", R, _scripted, refusal=SCRIPTED),
    Case("jit_trace", R, _traced, refusal=SCRIPTED),
]

CASES: dict[str, Case] = {c.id: c for c in SMP + MONAI + TORCHVISION + TIMM + RESEARCH}

"""The planar-3D res-u-net of the paper (Kolarik et al., ICPR 2020), on any timm encoder.

    encoder (planar, from timm)  ->  bottleneck: 2 planar (1,3,3) convs, concat with its input
    decoder level, deepest first: ConvTranspose3d(f, k=s=factor) -> concat skip -> conv A
        (dilation (1,2,2)) + ReLU -> conv B + ReLU -> concat(level input after the skip, conv B)
    head: Conv3d(1, 1) giving logits (the sigmoid lives in the loss and in prediction)

The decoder upsampling factors come from the encoder's measured reductions, so VGG-16 gives the
paper's ConvTranspose3d(f, 2, stride 2) at every level and other encoders get what they need.
Conv kernels are (min(3, depth at the level), 3, 3): (2,3,3) at the paper's level 6, (3,3,3)
below. New layers use Keras' initialisation (Glorot-uniform kernels, zero biases) as the paper.

    model = build_model(preset("paper"))   # 22,870,881 parameters, 10,516,001 trainable
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import planar3d
from msseg.config import TrainConfig
from msseg.model.encoder import build_encoder

__all__ = ["DecoderLevel", "PlanarResUNet", "build_model"]

Triple = tuple[int, int, int]


def _keras_init(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class DecoderLevel(nn.Module):
    """One res-u-net decoder level.

    Args:
        in_channels: channels of the deeper level's output.
        skip_channels: channels of the encoder skip joined at this level.
        filters: f, the width of the transposed conv and of convs A and B.
        factor: (depth, height, width) upsampling factor (kernel = stride of the transposed conv).
        kernel_depth: depth of the conv kernels (in-plane 3x3); 'same' padding as Keras.

    Shapes:
        x (N, in_channels, D, H, W), skip (N, skip_channels, D*fd, H*fh, W*fw)
        -> (N, out_channels, D*fd, H*fh, W*fw), out_channels = 2 * filters + skip_channels.
    """

    def __init__(self, in_channels: int, skip_channels: int, filters: int, *, factor: Triple,
                 kernel_depth: int) -> None:
        super().__init__()
        kernel = (kernel_depth, 3, 3)
        joined = filters + skip_channels
        # 'same' padding; an even depth kernel pads one more slice after than before (as Keras)
        depth_pad = kernel_depth // 2 if kernel_depth % 2 else 0
        self.depth_pad = (0, 0) if kernel_depth % 2 else (kernel_depth // 2 - 1, kernel_depth // 2)
        self.up = nn.ConvTranspose3d(in_channels, filters, kernel_size=factor, stride=factor)
        self.conv_a = nn.Conv3d(joined, filters, kernel, padding=(depth_pad, 2, 2),
                                dilation=(1, 2, 2))
        self.conv_b = nn.Conv3d(filters, filters, kernel, padding=(depth_pad, 1, 1))
        self.act = nn.ReLU(inplace=True)
        self.out_channels = joined + filters
        _keras_init(self)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.up(x), skip], dim=1)
        y = self.act(self.conv_a(self._pad(joined)))
        y = self.act(self.conv_b(self._pad(y)))
        return torch.cat([joined, y], dim=1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, 0, *self.depth_pad)) if self.depth_pad[1] else x


class PlanarResUNet(nn.Module):
    """Planar-3D res-u-net. (N, C, D, H, W) -> logits (N, 1, D, H, W).

    Parts (for parameter counts and freezing): `encoder`, `bottleneck`, `decoder` (the levels,
    the optional `head_up` and the output `head`).

    Args:
        encoder: `build_encoder(...).module`: (N, C, D, H, W) -> [skips..., bottom volume].
        channels: channel counts of the encoder outputs.
        encoder_new_layers: paths, in `encoder`, of layers without pretrained weights (a
            columnar encoder's upsampling): they train even when the encoder is frozen.
        reductions: (rd, rh, rw) reduction of each encoder output.
        slab: input depth the decoder kernels are sized for.
        bottleneck_filters, decoder_filters: widths (decoder: deepest level first).
    """

    def __init__(self, encoder: nn.Module, *, channels: list[int], reductions: list[Triple],
                 slab: int, bottleneck_filters: int, decoder_filters: tuple[int, ...],
                 encoder_new_layers: tuple[str, ...] = ()) -> None:
        super().__init__()
        if len(decoder_filters) != len(channels) - 1:
            raise ValueError(
                f"the encoder has {len(channels) - 1} skips, decoder_filters has "
                f"{len(decoder_filters)} entries; give one filter count per skip"
            )
        self.encoder = encoder
        self.reductions = list(reductions)
        bottom = channels[-1]
        self.bottleneck = planar3d.convert(
            _keras_init(nn.Sequential(
                nn.Conv2d(bottom, bottleneck_filters, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(bottleneck_filters, bottleneck_filters, 3, padding=1),
                nn.ReLU(inplace=True),
            )),
            example_input=torch.randn(2, bottom, 4, 4, generator=torch.Generator().manual_seed(0)),
        )
        width = bottom + bottleneck_filters
        levels = []
        for skip, filters, deep, shallow in zip(
            reversed(channels[:-1]), decoder_filters, reversed(reductions[1:]),
            reversed(reductions[:-1]),
        ):
            level = DecoderLevel(width, skip, filters, factor=_ratio(deep, shallow),
                                 kernel_depth=min(3, max(1, slab // shallow[0])))
            levels.append(level)
            width = level.out_channels
        self.decoder = nn.ModuleList(levels)
        self.head_up = None
        if reductions[0] != (1, 1, 1):
            factor = reductions[0]
            self.head_up = _keras_init(nn.ConvTranspose3d(
                width, decoder_filters[-1], kernel_size=factor, stride=factor))
            width = decoder_filters[-1]
        self.head = _keras_init(nn.Conv3d(width, 1, kernel_size=1))
        self.frozen = {"encoder": False, "bottleneck": False}
        self.encoder_new_layers = tuple(encoder_new_layers)

    @property
    def divisor(self) -> Triple:
        """Input (D, H, W) must be divisible by these (the deepest reduction)."""
        return self.reductions[-1]

    def set_trainable(self, *, encoder: bool, bottleneck: bool) -> None:
        """Freeze (requires_grad False, always in eval mode) or unfreeze the two parts. The
        encoder's new layers (a columnar encoder's upsampling, `encoder_new_layers`) have no
        pretrained weights and always train."""
        for name, trainable in (("encoder", encoder), ("bottleneck", bottleneck)):
            getattr(self, name).requires_grad_(trainable)
            self.frozen[name] = not trainable
        for path in self.encoder_new_layers:
            self.encoder.get_submodule(path).requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> PlanarResUNet:
        super().train(mode)
        for name, frozen in self.frozen.items():
            if frozen:
                getattr(self, name).eval()
        for path in self.encoder_new_layers:
            self.encoder.get_submodule(path).train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:]) if x.dim() == 5 else ()
        if len(spatial) != 3 or any(s % r for s, r in zip(spatial, self.divisor)):
            raise ValueError(
                f"PlanarResUNet expects (N, C, D, H, W) with D, H, W divisible by "
                f"{self.divisor}, got {tuple(x.shape)}; e.g. slabs (N, 3, 16, 256, 256)"
            )
        *skips, bottom = self.encoder(x)
        x = torch.cat([bottom, self.bottleneck(bottom)], dim=1)
        for level, skip in zip(self.decoder, reversed(skips)):
            x = level(x, skip)
        if self.head_up is not None:
            x = self.head_up(x)
        return self.head(x)


def _ratio(deep: Triple, shallow: Triple) -> Triple:
    if any(d % s for d, s in zip(deep, shallow)):
        raise ValueError(f"encoder reductions {shallow} -> {deep} are not integer steps")
    return tuple(d // s for d, s in zip(deep, shallow))


def build_model(config: TrainConfig) -> PlanarResUNet:
    """The model a config describes, with its parts frozen as the config says.

    Args:
        config: model fields (`encoder`, `encoder_stages`, `depth_policy`, `pretrained`,
            `weights`, `train_encoder`, `train_bottleneck`, `bottleneck_filters`,
            `decoder_filters`) and `slab`.
    Returns:
        The model on the CPU in float32, train mode. Uses the global torch RNG for new layers
        (seed it for reproducible initialisation).
    Raises:
        ValueError, RuntimeError, FileNotFoundError: see `encoder.create_encoder_2d`;
        ValueError if the encoder cannot take `config.slab` slices.
    Warns:
        RandomEncoderWarning: when the encoder gets no pretrained weights.
    """
    encoder = build_encoder(
        config.encoder, stages=config.encoder_stages, depth_policy=config.depth_policy,
        slab=config.slab, pretrained=config.pretrained, weights=config.weights,
    )
    model = PlanarResUNet(
        encoder.module, channels=encoder.channels, reductions=encoder.reductions,
        slab=config.slab, bottleneck_filters=config.bottleneck_filters,
        decoder_filters=config.decoder_filters, encoder_new_layers=encoder.new_layers,
    )
    model.set_trainable(encoder=config.train_encoder, bottleneck=config.train_bottleneck)
    return model

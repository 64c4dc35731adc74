"""A columnar encoder (a vision transformer) as the res-u-net's encoder, as UNETR does.

A CNN's feature stages come at growing reductions (2, 4, 8, 16); every block of a vision
transformer gives a map at its patch size (16). As UNETR (Hatamizadeh et al., WACV 2022) does,
the maps of k evenly spaced blocks (3, 6, 9 and 12 of 12) feed a u-net decoder: the deepest is
its bottom, at the patch size; the one before it is upsampled twice to half the patch size, the
next four times, ... (each step a 2x transposed convolution, a 3x3 convolution and ReLU); and a
small convolutional stem on the input (two 3x3 convolutions) gives the full-resolution skip that
the patches cannot: with patch 16, skips at 1, 2, 4 and 8 and the bottom at 16.

The 2D module (the transformer, its upsampling chains and the stem) is converted by
`planar3d.convert` like a CNN encoder: the transformer's code runs on the slices (its attention
stays within each slice, its blocks keep the 2D weights), the new layers become planar 3D
layers; they have no pretrained weights (`NEW_LAYERS`) and train even when the transformer is
frozen.

    features = timm.create_model("vit_tiny_patch16_224", features_only=True,
                                 out_indices=columnar_indices(12, 4), dynamic_img_size=True)
    encoder2d = TokenEncoder2d(features)   # (B, 3, H, W) -> skips at H, H/2, H/4, H/8; bottom H/16
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MIN_WIDTH", "TokenEncoder2d", "columnar_indices", "is_columnar"]

# the narrowest upsampled skip (channels halve per 2x step from the transformer's width)
MIN_WIDTH = 16


def is_columnar(reductions: Sequence[int]) -> bool:
    """Whether feature taps at these reductions come from a columnar network (every tap at the
    same reduction, as the blocks of a vision transformer) rather than a pyramid (a CNN)."""
    return len(reductions) > 1 and len(set(reductions)) == 1


def columnar_indices(taps: int, stages: int) -> tuple[int, ...]:
    """`stages` evenly spaced tap indices out of `taps`, the last tap last (UNETR takes blocks 3,
    6, 9 and 12 of 12).

    Raises:
        ValueError: if there are fewer taps than stages.
    """
    if not 1 <= stages <= taps:
        raise ValueError(f"a columnar encoder with {taps} blocks cannot give {stages} stages")
    return tuple(taps * (i + 1) // stages - 1 for i in range(stages))


def _upsampler(channels: int, width: int, steps: int) -> nn.Module:
    layers: list[nn.Module] = []
    for step in range(steps):
        out = max(MIN_WIDTH, width * 2 ** (steps - 1 - step))
        layers += [nn.ConvTranspose2d(channels, out, kernel_size=2, stride=2),
                   nn.Conv2d(out, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers)


class TokenEncoder2d(nn.Module):
    """A columnar feature extractor's taps, and a convolutional stem, as a u-net's skips.

    Args:
        features: timm `features_only` module whose k taps share one reduction r (r divisible
            by 2 ** (k - 1), and larger).

    Shapes:
        (B, C, H, W) -> [skip_0, ..., skip_{k-1}, bottom]: skip_0 (the stem) at full resolution,
        skip_i at reduction r / 2 ** (k - i), bottom (the deepest tap) at r.

    Attributes:
        widths: channels of each skip, then of the bottom.
        reductions: in-plane reduction of each skip, then of the bottom.
        NEW_LAYERS: the paths of its layers without pretrained weights (stem, upsampling).
    """

    NEW_LAYERS = ("stem", "up")

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        channels = list(features.feature_info.channels())
        reductions = list(features.feature_info.reduction())
        if not is_columnar(reductions):
            raise ValueError(f"TokenEncoder2d takes taps at one reduction, got {reductions}")
        stages, reduction = len(channels), reductions[0]
        if reduction % 2 ** (stages - 1) or reduction == 2 ** (stages - 1):
            raise ValueError(f"{stages} scales below a patch size need it divisible by, and "
                             f"larger than, {2 ** (stages - 1)}; got {reduction}")
        in_channels = next(m for m in features.modules() if isinstance(m, nn.Conv2d)).in_channels
        self.features = features
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, MIN_WIDTH, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(MIN_WIDTH, MIN_WIDTH, 3, padding=1), nn.ReLU(inplace=True))
        self.up = nn.ModuleList(
            _upsampler(c, max(MIN_WIDTH, c // 2 ** (stages - i)), stages - 1 - i)
            for i, c in enumerate(channels[:-1]))
        self.widths = [MIN_WIDTH] + [_width(up, c) for up, c in zip(self.up, channels)]
        self.widths.append(channels[-1])
        self.reductions = [1] + [reduction // 2 ** (stages - 1 - i) for i in range(stages - 1)]
        self.reductions.append(reduction)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = list(self.features(x))
        return [self.stem(x), *(up(t) for up, t in zip(self.up, taps)), taps[-1]]


def _width(upsampler: nn.Module, channels: int) -> int:
    convs = [m for m in upsampler.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else channels

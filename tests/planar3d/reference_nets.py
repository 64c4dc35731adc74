"""Networks whose reference (docs/design.md P0) is well defined and that a one-size, one-call
check cannot see through, or that return what a tensor-only walk misses.

- size-dependent code: a U-Net that pads its upsampled map to the skip's size, a network that
  pads to a multiple of 8 and crops back, one that crops to even sizes (all read `x.size(2)`,
  H in 2D and D on a volume);
- other calls: a keyword-only flag, an optional mask, two inputs, a keyword-only input;
- output containers: a dataclass, a namedtuple, a mapping class, nested lists and dicts, and an
  opaque object no check can compare;
- per-slice outputs without channels: label maps (`argmax(1)`), squeezed and boolean masks;
- token reshapes in the body: einops `Rearrange` / `Reduce`, `Flatten(2)` / `Unflatten`;
- a batch-coupled layer in a head: BatchNorm1d after the global pool.

They are at module level so that converted copies pickle.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, namedtuple

import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange, Reduce
from research_blocks import conv_bn
from torch import nn


# -- size-dependent code -------------------------------------------------------------------------
class UpPadToSkip(nn.Module):
    """The classic U-Net up block: upsample, pad to the skip's size, concatenate, convolve."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin, 2, stride=2)
        self.conv = conv_bn(cin + cskip, cout)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        dy = x2.size()[2] - x1.size()[2]
        dx = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class PadToSkipUNet(nn.Module):
    """Three poolings down, three `UpPadToSkip` blocks up: any slice size, not only multiples
    of 8."""

    def __init__(self, c: int = 3, classes: int = 2):
        super().__init__()
        self.inc = conv_bn(c, 8)
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), conv_bn(cin, cout))
                                  for cin, cout in ((8, 8), (8, 16), (16, 16)))
        self.up = nn.ModuleList([UpPadToSkip(16, 16, 16), UpPadToSkip(16, 8, 8),
                                 UpPadToSkip(8, 8, 8)])
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.out(x)


class PadToMultiple(nn.Module):
    """Pads the slices to a multiple of 8, runs a strided encoder-decoder, crops back."""

    def __init__(self, c: int = 3, classes: int = 2):
        super().__init__()
        self.down = conv_bn(c, 8, stride=2)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        h, w = x.size(2), x.size(3)
        x = F.pad(x, [0, (-w) % 8, 0, (-h) % 8])
        return self.out(self.up(self.down(x)))[:, :, :h, :w]


class CropToEven(nn.Module):
    """Crops odd slices to even sizes before a strided encoder-decoder."""

    def __init__(self, c: int = 3, classes: int = 2):
        super().__init__()
        self.stem = conv_bn(c, 8)
        self.down = conv_bn(8, 8, stride=2)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.out = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x[:, :, : x.size(2) // 2 * 2, : x.size(3) // 2 * 2]
        return self.out(self.up(self.down(x)))


# -- other calls ---------------------------------------------------------------------------------
class _Body(nn.Module):
    def __init__(self, c: int = 3):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))


class FeatureFlagClassifier(_Body):
    """A classifier that returns its pooled features with `return_features=True`."""

    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__(c)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))

    def forward(self, x, *, return_features: bool = False):
        f = self.body(x)
        if return_features:
            return f.mean((-2, -1)).flatten(1)
        return self.head(f)


class MaskedSegmenter(_Body):
    """A segmenter whose features are masked by an optional mask of the input's size."""

    def __init__(self, c: int = 3):
        super().__init__(c)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x, mask=None):
        f = self.body(x)
        if mask is not None:
            f = f * F.interpolate(mask, size=f.shape[-2:], mode="nearest")
        return self.out(f)


class SiameseDifference(nn.Module):
    """Change detection: one encoder on two images, the absolute difference of the features."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, a, b):
        return self.out((self.encoder(a) - self.encoder(b)).abs())


class GuidedSegmenter(_Body):
    """Features gated by a keyword-only guide image."""

    def __init__(self, c: int = 3):
        super().__init__(c)
        self.gate = nn.Conv2d(1, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x, *, guide):
        return self.out(self.body(x) * torch.sigmoid(self.gate(guide)))


# -- output containers ---------------------------------------------------------------------------
@dataclasses.dataclass
class SegAndLogits:
    seg: torch.Tensor
    logits: torch.Tensor


SegEdge = namedtuple("SegEdge", "seg edge")


class MappingOutput(OrderedDict):
    """A ModelOutput-style mapping class (not registered with torch's pytree)."""


class Boxed:
    """An object that holds a tensor and is no container a check can walk."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _SegAndClassify(_Body):
    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__(c)
        self.seg = nn.Conv2d(8, 2, 1)
        self.edge = nn.Conv2d(8, 1, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def parts(self, x):
        f = self.body(x)
        return f, self.seg(f), self.fc(self.pool(f).flatten(1))


class DataclassOutputs(_SegAndClassify):
    def forward(self, x):
        _, seg, logits = self.parts(x)
        return SegAndLogits(seg=seg, logits=logits)


class NamedTupleOutputs(_SegAndClassify):
    """A segmentation and an image-level edge score pooled by the root's own code."""

    def forward(self, x):
        f, seg, _ = self.parts(x)
        return SegEdge(seg, self.edge(f).mean((2, 3)))


class MappingOutputs(_SegAndClassify):
    def forward(self, x):
        _, seg, logits = self.parts(x)
        return MappingOutput(seg=seg, logits=logits)


class NestedOutputs(_SegAndClassify):
    def forward(self, x):
        f, seg, logits = self.parts(x)
        return {"maps": [seg, (self.edge(f), f)], "heads": {"logits": logits}, "classes": 5}


class OpaqueOutput(_SegAndClassify):
    def forward(self, x):
        return Boxed(self.parts(x)[1])


# -- per-slice outputs without channels ----------------------------------------------------------
class LabelMap(_SegAndClassify):
    """The segmentation's label map: argmax over classes, (B, H, W) integers."""

    def forward(self, x):
        return self.seg(self.body(x)).argmax(1)


class SqueezedMask(_SegAndClassify):
    """A one-channel probability map squeezed to (B, H, W)."""

    def forward(self, x):
        f = self.body(x)
        return torch.sigmoid(self.edge(f)).squeeze(1)


class BooleanMaskAndLogits(_SegAndClassify):
    """A boolean mask (B, H, W) beside pooled logits."""

    def forward(self, x):
        f, _, logits = self.parts(x)
        return (self.edge(f) > 0).squeeze(1), logits


# -- token reshapes in the body ------------------------------------------------------------------
class MixerBlock(nn.Module):
    """MLP-Mixer-style token mixing on a map of `side` x `side`, written with einops."""

    def __init__(self, c: int, side: int):
        super().__init__()
        self.to_tokens = Rearrange("b c h w -> b (h w) c")
        self.norm = nn.LayerNorm(c)
        self.token_mix = nn.Sequential(Rearrange("b n c -> b c n"), nn.Linear(side * side,
                                                                              side * side),
                                       Rearrange("b c n -> b n c"))
        self.channel_mix = nn.Linear(c, c)
        self.to_map = Rearrange("b (h w) c -> b c h w", h=side)

    def forward(self, x):
        t = self.to_tokens(x)
        t = t + self.token_mix(self.norm(t))
        return self.to_map(t + self.channel_mix(t))


def mixer_net(c: int = 3, size: int = 16) -> nn.Module:
    """conv, a `MixerBlock`, an einops 2x2 max pool, a 1x1 conv."""
    return nn.Sequential(conv_bn(c, 8), MixerBlock(8, size),
                         Reduce("b c (h h2) (w w2) -> b c h w", "max", h2=2, w2=2),
                         nn.Conv2d(8, 2, 1))


def einops_sequential(c: int = 3, size: int = 16) -> nn.Module:
    """Token mixing written inline in a Sequential: einops to tokens, a Linear over the tokens,
    back to a map."""
    return nn.Sequential(conv_bn(c, 8), Rearrange("b c h w -> b c (h w)"),
                         nn.Linear(size * size, size * size),
                         Rearrange("b c (h w) -> b c h w", h=size), nn.Conv2d(8, 2, 1))


def flatten_unflatten_mixer(c: int = 3, size: int = 16) -> nn.Module:
    """The same with `nn.Flatten(2)` and `nn.Unflatten(2, (H, W))`."""
    return nn.Sequential(conv_bn(c, 8), nn.Flatten(2), nn.Linear(size * size, size * size),
                         nn.Unflatten(2, (size, size)), nn.ReLU(), nn.Conv2d(8, 2, 1))


def einops_reduce_classifier(c: int = 3, classes: int = 5) -> nn.Module:
    """The head pool written with einops: `Reduce("b c h w -> b c", "mean")`."""
    return nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1),
                         Reduce("b c h w -> b c", "mean"), nn.Linear(8, classes))


# -- refusals ------------------------------------------------------------------------------------
class NoisyMapWithEmbedding(_Body):
    """Eval-mode noise on its maps beside a pooled embedding: no check can compare random
    draws, so it is refused; its maps are maps, so no fix may ask to pool them."""

    def forward(self, x):
        f = self.body(x)
        return f + torch.rand_like(f), f.mean((2, 3))


class OutOfMemoryAbove(nn.Module):
    """Runs out of memory on images larger than `limit` pixels a side (as a GPU would)."""

    def __init__(self, c: int = 3, limit: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c, 4, 3, padding=1)
        self.limit = limit

    def forward(self, x):
        if x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total "
                "capacity)")
        return self.conv(x)


class TinyTokenClassifier(nn.Module):
    """A patch embedding to tokens, a token MLP, a mean over tokens, a Linear (a ViT without
    attention): its patch embedding is part of the per-slice body, not of a head."""

    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__()
        self.patch_embed = PatchEmbed(c, 8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        t = self.patch_embed(x)
        return self.fc((t + self.mlp(t)).mean(1))


class PatchEmbed(nn.Module):
    """Conv stride 4, flatten to (B, L, C), LayerNorm: the ViT patch embedding."""

    def __init__(self, c: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(c, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        b, _, h, w = x.shape
        return self.norm(self.proj(x).reshape(b, -1, (h // 4) * (w // 4)).transpose(1, 2))


# -- a batch-coupled head --------------------------------------------------------------------------
class BatchNormHead(nn.Module):
    """Mean over H and W, BatchNorm1d, Linear (RepViT's head): in train mode the
    BatchNorm1d normalises over the pooled vectors of the batch. Its features sit on a large
    offset, so that the pooled vectors of two images differ by little against their size, as
    the deep features of a large network do."""

    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))
        self.register_buffer("offset", torch.tensor(100.0))
        self.norm = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.norm((self.body(x) + self.offset).mean((2, 3))))

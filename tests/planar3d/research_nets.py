"""Small networks written the way research code writes them, for the network sweep.

Roots and heads with their own functional code (pooling heads, gated outputs, dicts of maps and
embeddings, data-dependent scaling), U-Nets, GAN discriminators; they are at module level so
that converted copies pickle. `networks.py` turns them into sweep cases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from research_blocks import MinibatchStd, conv_bn
from torch import nn


class MeanGatedRoot(nn.Module):
    """Gates its feature maps by x.mean((2, 3)).sigmoid().mean() (one scalar per batch)."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))

    def forward(self, x):
        x = self.body(x)
        return x * x.mean((2, 3)).sigmoid().mean()


class MeanGatedEmbedding(nn.Module):
    """A pooled embedding gated by x.mean((2, 3)).sigmoid().mean()."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))

    def forward(self, x):
        x = self.body(x)
        pooled = x.mean((2, 3))
        return pooled * pooled.sigmoid().mean()


class _SmallClassifier(nn.Module):
    """Two convolutions, an adaptive pool and a linear layer; subclasses write the forward."""

    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)


class MeanGatedClassifier(_SmallClassifier):
    """A classifier whose logits are gated by its features' x.mean((2, 3)).sigmoid().mean()."""

    def forward(self, x):
        f = self.body(x)
        return self.fc(self.pool(f).flatten(1)) * f.mean((2, 3)).sigmoid().mean()


class ItemScaledHead(_SmallClassifier):
    """A classifier that normalises its features by the first image's mean magnitude (.item())."""

    def forward(self, x):
        f = self.body(x)
        return self.fc(self.pool(f / f[0].abs().mean().item()).flatten(1))


class ItemScaledWithEmbedding(nn.Module):
    """Returns a map scaled by the first image's mean magnitude (.item()) and a pooled embedding."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, 8), nn.Conv2d(8, 8, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        f = self.body(x)
        return f / f[0].abs().mean().item(), self.pool(f).flatten(1)


class BranchWithEmbedding(nn.Module):
    """Returns a map and a pooled embedding; the map's branch is chosen by the sign of the first
    input image's mean."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.a = nn.Conv2d(c, 8, 3, padding=1)
        self.b = nn.Conv2d(c, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        f = self.a(x) if x[:1].mean() > 0 else self.b(x)
        return f, self.pool(f).flatten(1)


class ListScaledWithEmbedding(nn.Module):
    """Returns per-image normalised maps (scales read with .tolist()) and a pooled embedding."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        f = self.conv(x)
        scales = f.flatten(1).std(1).tolist()
        f = torch.stack([f[i] / s for i, s in enumerate(scales)])
        return f, self.pool(f).flatten(1)


class MinibatchStdDiscriminator(nn.Module):
    """PatchGAN-style discriminator with a minibatch-stddev layer before its last conv."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(c, 8, 4, 2, 1), nn.LeakyReLU(0.2),
                                      nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2))
        self.mbstd = MinibatchStd()
        self.out = nn.Conv2d(17, 1, 3, padding=1)

    def forward(self, x):
        return self.out(self.mbstd(self.features(x)))


class DictFeatures(nn.Module):
    """Returns a dict of feature maps and a pooled embedding (a retrieval/metric backbone)."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.stem = conv_bn(c, 8, 2)
        self.stage = conv_bn(8, 16, 2)
        self.proj = nn.Linear(16, 4)

    def forward(self, x):
        c3 = self.stem(x)
        c4 = self.stage(c3)
        return {"c3": c3, "c4": c4, "emb": self.proj(c4.mean((2, 3)))}


class ClassicClassifier(nn.Module):
    """Pool, x.view(x.size(0), -1), Linear: the classic classifier head."""

    def __init__(self, c: int = 3, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(conv_bn(c, 8), nn.MaxPool2d(2), conv_bn(8, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.fc(x.view(x.size(0), -1))


class SmallUNet(nn.Module):
    """U-Net: ConvTranspose2d up, skip concatenation, F.interpolate to the skip's size."""

    def __init__(self, c: int = 3, classes: int = 2):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = conv_bn(c, 8), conv_bn(8, 16), conv_bn(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = conv_bn(32, 16)
        self.dec1 = conv_bn(16 + 8, 8)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], dim=1))
        d1 = F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.dec1(torch.cat([d1, e1], dim=1)))


class SegNetUnpool(nn.Module):
    """SegNet: MaxPool2d(return_indices=True) and MaxUnpool2d with those indices."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.enc = conv_bn(c, 8)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.mid = conv_bn(8, 8)
        self.unpool = nn.MaxUnpool2d(2)
        self.dec = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x):
        y, indices = self.pool(self.enc(x))
        return self.dec(self.unpool(self.mid(y), indices))


class SharedTwice(nn.Module):
    """Weight sharing: one conv applied to the input and to its horizontal flip."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + self.conv(x.flip(-1)).flip(-1)


class TwoScaleOutputs(nn.Module):
    """Deep supervision: a tuple of predictions at full and half resolution."""

    def __init__(self, c: int = 3):
        super().__init__()
        self.enc = conv_bn(c, 8)
        self.down = conv_bn(8, 16, 2)
        self.full = nn.Conv2d(8, 2, 1)
        self.coarse = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        e = self.enc(x)
        return self.full(e), self.coarse(self.down(e))


class FlattenLinearNoPool(nn.Sequential):
    """Conv, flatten the whole feature map, Linear: no global pool, so no planar meaning."""

    def __init__(self, c: int = 3, size: int = 16):
        side = size // 2
        super().__init__(nn.Conv2d(c, 4, 3, stride=2, padding=1), nn.Flatten(1),
                         nn.Linear(4 * side * side, 5))

"""Blocks written the way research code writes them, for the network sweep.

Attention blocks, coordinate channels, non-local blocks, spatial transformers, unfold, GAN and
batch-mixing layers, random layers, data-dependent control flow: each a plausible snippet of a
paper's code base, kept small. Whole networks built from them are in `research_nets`; both are at
module level so that converted copies pickle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class GeM(nn.Module):
    """Generalised-mean pooling (image retrieval): (mean over H, W of x^p)^(1/p)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p),
                            (x.size(-2), x.size(-1))).pow(1.0 / self.p)


class SEBlock(nn.Module):
    """Squeeze-and-excitation as in its reference code: pool, view(b, c), two Linear layers."""

    def __init__(self, c: int, reduction: int = 2):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.ReLU(),
                                nn.Linear(c // reduction, c), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        return x * self.fc(y).view(b, c, 1, 1).expand_as(x)


class CBAM(nn.Module):
    """Convolutional block attention: channel gate (avg and max pooled MLP), then spatial gate
    (7x7 conv over the channel mean and max)."""

    def __init__(self, c: int, reduction: int = 2):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // reduction), nn.ReLU(),
                                 nn.Linear(c // reduction, c))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx).unsqueeze(-1).unsqueeze(-1)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class SpatialAttention(nn.Module):
    """Attention map from channel statistics, written with keepdim reductions only."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        stats = torch.cat([torch.mean(x, dim=1, keepdim=True),
                           torch.max(x, dim=1, keepdim=True)[0]], dim=1)
        return x * self.conv(stats).sigmoid()


class AddCoords(nn.Module):
    """CoordConv: append x and y coordinate channels in [-1, 1] built from the input's shape."""

    def forward(self, x):
        b, _, h, w = x.shape
        yy = torch.linspace(-1, 1, h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xx = torch.linspace(-1, 1, w, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return torch.cat([x, xx, yy], dim=1)


class AddCoordsShapeFree(nn.Module):
    """CoordConv written against x.shape[-2:] and broadcasting (runs on any rank)."""

    def forward(self, x):
        h, w = x.shape[-2:]
        gy, gx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype),
                                torch.linspace(-1, 1, w, dtype=x.dtype), indexing="ij")
        grid = torch.stack([gx, gy])
        shape = (x.shape[0], 2, *x.shape[2:])
        return torch.cat([x, grid.expand(shape)], dim=1)


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block: softmax attention between all H*W positions."""

    def __init__(self, c: int):
        super().__init__()
        self.inter = c // 2
        self.theta = nn.Conv2d(c, self.inter, 1)
        self.phi = nn.Conv2d(c, self.inter, 1)
        self.g = nn.Conv2d(c, self.inter, 1)
        self.out = nn.Conv2d(self.inter, c, 1)

    def forward(self, x):
        b = x.size(0)
        theta = self.theta(x).view(b, self.inter, -1).permute(0, 2, 1)
        phi = self.phi(x).view(b, self.inter, -1)
        g = self.g(x).view(b, self.inter, -1).permute(0, 2, 1)
        attn = F.softmax(torch.matmul(theta, phi), dim=-1)
        y = torch.matmul(attn, g).permute(0, 2, 1).contiguous()
        return x + self.out(y.view(b, self.inter, *x.size()[2:]))


class GlobalContext(nn.Module):
    """GCNet block: a softmax over the H*W positions pools a context vector per image."""

    def __init__(self, c: int):
        super().__init__()
        self.mask = nn.Conv2d(c, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(c, c // 2, 1), nn.LayerNorm([c // 2, 1, 1]),
                                       nn.ReLU(), nn.Conv2d(c // 2, c, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        weights = self.mask(x).view(b, 1, h * w).softmax(-1)
        context = torch.bmm(x.view(b, c, h * w), weights.transpose(1, 2)).view(b, c, 1, 1)
        return x + self.transform(context)


class SpatialTransformer(nn.Module):
    """STN: a localisation net regresses an affine map; F.affine_grid + F.grid_sample warp."""

    def __init__(self, c: int):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 6))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3) * 0.1 + torch.tensor(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.size()), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


class LocalAttentionUnfold(nn.Module):
    """3x3 local attention through F.unfold: each position mixes its neighbourhood."""

    def __init__(self, c: int):
        super().__init__()
        self.logits = nn.Conv2d(c, 9, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        patches = F.unfold(x, 3, padding=1).view(b, c, 9, h, w)
        weights = self.logits(x).softmax(1).unsqueeze(1)
        return (patches * weights).sum(2)


class PatchMixer(nn.Module):
    """nn.Unfold into 2x2 patches, a Linear across each patch, nn.Fold back."""

    def __init__(self, c: int, size: int):
        super().__init__()
        self.unfold = nn.Unfold(2, stride=2)
        self.mix = nn.Linear(4 * c, 4 * c)
        self.fold = nn.Fold(size, 2, stride=2)

    def forward(self, x):
        patches = self.unfold(x)
        return self.fold(self.mix(patches.transpose(1, 2)).transpose(1, 2))


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle written with view/transpose on (b, c, h, w)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(b, c, h, w)


class ASPPLite(nn.Module):
    """Atrous pyramid: dilated branches and an image-pooling branch upsampled back."""

    def __init__(self, c: int, out: int = 8):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(c, out, 1)] + [nn.Conv2d(c, out, 3, padding=r, dilation=r) for r in (2, 3)])
        self.image = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, out, 1), nn.ReLU())
        self.project = nn.Conv2d(4 * out, out, 1)

    def forward(self, x):
        pooled = F.interpolate(self.image(x), size=x.shape[-2:], mode="bilinear",
                               align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class LinearAttention(nn.Module):
    """Linear attention over the H*W positions, written with einsum on (b, c, n)."""

    def __init__(self, c: int):
        super().__init__()
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, c, h * w).unbind(1)
        context = torch.einsum("bdn,ben->bde", k.softmax(-1), v)
        y = torch.einsum("bde,bdn->ben", context, q.softmax(1))
        return x + self.out(y.reshape(b, c, h, w))


class LayerNorm2d(nn.LayerNorm):
    """Channel LayerNorm through permute (ConvNeXt-style research code)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EdgeFilter(nn.Module):
    """A fixed Sobel filter applied with F.conv2d on a registered buffer."""

    def __init__(self):
        super().__init__()
        sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernel", torch.stack([sobel, sobel.t()]).unsqueeze(1))

    def forward(self, x):
        gray = x.mean(1, keepdim=True)
        return F.conv2d(gray, self.kernel.to(x.dtype), padding=1)


class BranchOnFirstImage(nn.Module):
    """Data-dependent control flow: the branch depends on the first image against the batch."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)

    def forward(self, x):
        if x[:1].mean() > x.mean():
            return self.a(x)
        return self.b(x)


class ScaleByItem(nn.Module):
    """Scales by a Python float read with .item() from the first image."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        scale = x[0].abs().mean().item()
        return self.conv(x) / scale


class ScaleByList(nn.Module):
    """Per-image scales read with .tolist() (a list as long as the batch)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        scales = x.flatten(1).std(1).tolist()
        y = self.conv(x)
        return torch.stack([y[i] / s for i, s in enumerate(scales)])


class BranchOnBatchMean(nn.Module):
    """`if x.mean() > 0`: the branch is decided by the whole batch (on the stacked slices, by
    all volumes together; the means of single slices fall on both sides of 0)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, padding=1)
        self.b = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        m = x.mean()
        return (self.a(x) if m > 0 else self.b(x)) * (1 + m.item())


class MinibatchStd(nn.Module):
    """GAN minibatch-stddev: one statistic over the batch, appended as a channel."""

    def forward(self, x):
        std = x.std(0, keepdim=True).mean(dim=(1, 2, 3), keepdim=True)
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class RollMix(nn.Module):
    """Mixes each image with its neighbour in the batch (batch-coupled, as in mixing
    augmentations written as layers)."""

    def forward(self, x):
        return x + 0.5 * x.roll(1, 0)


class DropConnect(nn.Module):
    """MONAI's functional drop connect, one draw per batch element (its EfficientNet blocks call
    it with their `drop_connect_rate`)."""

    def __init__(self, drop_connect_rate: float):
        super().__init__()
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x):
        from monai.networks.nets.efficientnet import drop_connect

        return drop_connect(x, self.drop_connect_rate, self.training)


class ResidualWith(nn.Module):
    """x + drop(conv(x)): a residual branch behind a random layer (dropout, drop path...)."""

    def __init__(self, c: int, drop: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.drop = drop

    def forward(self, x):
        return x + self.drop(self.conv(x))


def scale_output(module, args, output):
    """A forward hook (module level, so that a converted model with it pickles)."""
    return output * 2.0


def shift_input(module, args):
    """A forward pre-hook."""
    return (args[0] + 0.5,)


class ZeroMeanKernel(nn.Module):
    """A parametrisation: every 2D kernel has zero mean over its kh x kw taps."""

    def forward(self, weight):
        return weight - weight.mean((2, 3), keepdim=True)

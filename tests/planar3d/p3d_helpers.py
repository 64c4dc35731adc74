"""Shared test helpers: models with informative random weights, volumes, comparisons."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """timm-style SE: 2D functional code that runs on 5-D input without error, wrongly (it
    averages D and H and still broadcasts)."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * self.fc(x.mean((2, 3), keepdim=True)).sigmoid()


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make every parameter and BatchNorm statistic informative.

    timm/torchvision zero the last BatchNorm gamma of residual branches and start layer-scale
    near 1e-6, so a wrongly converted branch would contribute nothing. Every 0/1-D parameter
    (norm affine, layer scale, biases) and every constant tensor gets random values; BatchNorm
    running statistics get random means and variances.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            constant = p.numel() > 1 and bool((p == p.flatten()[0]).all())
            if p.dim() <= 1 or constant:
                base = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0
                p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.3 + base)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def volume(n: int, c: int, d: int, h: int, w: int, *, seed: int = 1,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, d, h, w, generator=g).to(dtype)


def assert_close(got: torch.Tensor, want: torch.Tensor, *, rtol: float = 1e-5) -> None:
    """Equal up to float rounding, relative to the reference's magnitude."""
    assert got.shape == want.shape, f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    scale = want.abs().max().item() + 1e-12
    err = (got.double() - want.double()).abs().max().item()
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol} x scale {scale:.3g}"


def slices(x: torch.Tensor, axis: int) -> list[torch.Tensor]:
    """The 2D images of a volume along `axis` (2, 3 or 4)."""
    return [x.select(axis, i) for i in range(x.shape[axis])]

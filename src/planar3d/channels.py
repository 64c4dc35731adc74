"""Feed volumes with fewer channels than the pretrained stem expects (e.g. 1-channel MRI).

Two ways, with the same result for single-channel input:
- "repeat": copy the input channel(s) to the stem's channel count (what the seed paper does);
- "sum": sum the stem's kernels over their input channels once, so the stem reads the single
  channel directly: the same output at a third of the first layer's cost for a 3-channel stem.
"""

from __future__ import annotations

import torch
from torch import nn

from .report import conversion_report

__all__ = ["adapt_input_channels"]

METHODS = ("sum", "repeat")


class _RepeatChannels:
    """Forward pre-hook: tile an input with `channels` channels to `target` channels."""

    def __init__(self, channels: int, target: int) -> None:
        self.channels, self.target = channels, target

    def __call__(self, module: nn.Module, args: tuple):
        x = args[0]
        if not isinstance(x, torch.Tensor) or x.shape[1] != self.channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"the adapted model expects {self.channels} input channel(s), got {got}"
            )
        return (x.repeat_interleave(self.target // self.channels, dim=1), *args[1:])


def _stem(model: nn.Module, channels: int, shape: tuple) -> tuple[str, nn.Module]:
    """The first module with weights that receives the model's input tensor itself, or a view
    of it (a module whose code runs on the slices folds the volume into a view first)."""
    probe = torch.zeros(1, channels, 1, *shape[-2:],
                        device=next(model.parameters()).device,
                        dtype=next(model.parameters()).dtype)
    found: list[tuple[str, nn.Module]] = []

    def hook(name):
        def pre(module, args):
            x = args[0] if args else None
            if not found and isinstance(x, torch.Tensor) and x.numel() == probe.numel() and (
                    x.untyped_storage().data_ptr() == probe.untyped_storage().data_ptr()) and (
                    isinstance(getattr(module, "weight", None), torch.Tensor)):
                found.append((name, module))
        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if n]
    flags = [m.training for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
        for m, f in zip(model.modules(), flags):
            m.training = f
    if not found:
        raise ValueError(
            "the model's input does not go straight into a layer (its forward transforms it "
            "first); use method='repeat'"
        )
    return found[0]


def adapt_input_channels(model: nn.Module, in_channels: int = 1, *, method: str = "sum"
                         ) -> nn.Module:
    """Make a converted network take `in_channels`-channel volumes (in place).

    Args:
        model: a network produced by `planar3d.convert`.
        in_channels: channels of the volumes you have (1 for FLAIR MRI).
        method: "sum" (stem kernels summed over input channels, as timm's `in_chans`; for more
            than one channel the kernels are tiled and rescaled likewise) or "repeat" (the input
            is tiled to the stem's channels; needs `in_channels` to divide them).
    Returns:
        `model`, adapted. Its parameter names are unchanged; with "sum" the stem's weight has
        `in_channels` input channels.
    Raises:
        ValueError: for an invalid method or channel count, or (with "sum") a stem that is not a
            plain convolution receiving the input.
    """
    report = conversion_report(model)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    channels = report.example_shape[1]
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if method == "repeat":
        if channels % in_channels:
            raise ValueError(
                f"cannot tile {in_channels} channels to the stem's {channels}; use method='sum'"
            )
        model.register_forward_pre_hook(_RepeatChannels(in_channels, channels), prepend=True)
        return model
    name, stem = _stem(model, channels, report.example_shape)
    weight = getattr(stem, "weight", None)
    if not isinstance(weight, torch.Tensor) or getattr(stem, "groups", 1) != 1 or (
        getattr(stem, "in_channels", None) != channels
    ):
        raise ValueError(
            f"the stem {name} ({type(stem).__name__}) is not a plain convolution over the "
            f"{channels} input channels; use method='repeat'"
        )
    with torch.no_grad():
        if in_channels == 1:
            new = weight.sum(dim=1, keepdim=True)
        else:
            reps = -(-in_channels // channels)
            new = weight.repeat(1, reps, *[1] * (weight.dim() - 2))[:, :in_channels]
            new = new * (channels / in_channels)
    stem.weight = nn.Parameter(new, weight.requires_grad)
    stem.in_channels = in_channels
    report.add(name, type(stem).__name__, "swapped",
               f"{type(stem).__name__}, stem kernels summed to {in_channels} input channel(s)")
    return model

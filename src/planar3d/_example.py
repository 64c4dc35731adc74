"""The example batch `convert` probes a network with, and what it refuses before probing.

Probes arrange the example's B images as `PROBE_VOLUMES` volumes of B / `PROBE_VOLUMES` distinct
slices each: two volumes, so that code mixing the batch dim (minibatch statistics, BatchNorm
without running statistics) is seen, and several slices per volume, so that code mixing slices
is seen.
"""

from __future__ import annotations

import torch
from torch import nn

from ._modes import eval_mode
from .errors import UnsupportedModuleError

__all__ = ["PROBE_VOLUMES", "example_batch", "refuse_unconvertible"]

PROBE_VOLUMES = 2
DEFAULT_SIZE = 224
# the smallest sizes tried for the default example, as multiples of 32 (a network's usual
# total stride)
MIN_SIZE = 32


def refuse_unconvertible(model: nn.Module) -> None:
    """Raise UnsupportedModuleError for models whose modules cannot be rebuilt or probed.

    TorchScript modules (scripted or traced) run compiled code that neither hooks nor module
    swaps can reach.
    """
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            raise UnsupportedModuleError(
                name, type(module).__name__,
                "TorchScript modules (torch.jit.script / torch.jit.trace) run compiled code, "
                "which cannot be converted or checked",
                "convert the eager model (the nn.Module before scripting), then script or "
                "trace the converted model if you need TorchScript",
            )


def _channel_candidates(model: nn.Module) -> list[int]:
    """Input channel counts to try, most likely first: the first convolution defined in the
    model (its stem, as a rule; timm's `in_chans=1` models), the configured count, 3, 1."""
    first = None
    for module in model.modules():
        weight = getattr(module, "weight", None)
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int) and isinstance(weight, torch.Tensor) and weight.dim() == 4:
            first = channels
            break
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    configured = next(iter(cfg.get("input_size", (3,))))
    return list(dict.fromkeys(c for c in (first, configured, 3, 1) if isinstance(c, int)))


def _configured_size(model: nn.Module) -> tuple[int, int]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = tuple(cfg.get("input_size", (3, DEFAULT_SIZE, DEFAULT_SIZE)))[-2:]
    return (int(size[0]), int(size[1]))


def _map_sizes(model: nn.Module, images: torch.Tensor) -> list[bool] | None:
    """For each module call on `images`, whether its output is a feature map larger than 1x1;
    None if the model does not run on them."""
    found: list[bool] = []

    def hook(module, args, output):
        if isinstance(output, torch.Tensor) and output.dim() >= 4:
            found.append(output.shape[-2] * output.shape[-1] > 1)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with eval_mode(model), torch.no_grad():
            model(images)
    except Exception:
        return None
    finally:
        for handle in handles:
            handle.remove()
    return found


def _default_size(model: nn.Module, channels: int, dtype, device) -> tuple[int, int] | None:
    """The smallest input that keeps every feature map informative: the first size (from
    MIN_SIZE up, in steps of doubling, the configured size at most) at which the model runs and
    the same modules return maps larger than 1x1 as at twice that size; else the configured
    size, or, for a model built for another fixed size than its configuration says (a timm
    vision transformer made with `img_size=64`), the largest of those sizes it runs on; None
    if the model does not run on `channels` channels at any of those sizes."""
    full = _configured_size(model)
    seen: dict[tuple[int, int], list[bool] | None] = {}

    def maps(scale: float):
        size = (max(1, round(full[0] * scale)), max(1, round(full[1] * scale)))
        if size not in seen:
            images = torch.zeros(1, channels, *size, dtype=dtype, device=device)
            seen[size] = _map_sizes(model, images)
        return size, seen[size]

    scale = MIN_SIZE / max(full)
    while scale < 1:
        size, found = maps(scale)
        if found is not None:
            twice = maps(min(2 * scale, 1.0))[1]
            if twice == found:
                return size
        scale *= 2
    if maps(1.0)[1] is not None:
        return full
    ran = [size for size, found in seen.items() if found is not None]
    return max(ran) if ran else None


def _with_distinct_volumes(images: torch.Tensor) -> torch.Tensor:
    """At least 2 * PROBE_VOLUMES images, a multiple of PROBE_VOLUMES: mirrored copies are
    appended to a smaller or odd batch."""
    while images.shape[0] < 2 * PROBE_VOLUMES or images.shape[0] % PROBE_VOLUMES:
        images = torch.cat([images, images.flip(-1)])
    return images


def example_batch(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    """The batch of 2D images the network is probed with.

    Args:
        model: the 2D network.
        example_input: a (B >= 2, C, H, W) batch the 2D model accepts, or None for random
            images with the stem's channel count, of the smallest size that keeps every
            feature map informative (see `_default_size`; at most timm's
            `pretrained_cfg["input_size"]`, else 224x224).
    Returns:
        (B', C, H, W) on the model's device and dtype, B' >= 4 and even: the example's images,
        followed by their mirror images where the example has fewer than 4 or an odd number.
    Raises:
        ValueError: if `example_input` is not a batch of at least 2 images.
    """
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if example_input is None:
        candidates = _channel_candidates(model)
        found = ((c, _default_size(model, c, dtype, device)) for c in candidates)
        channels, size = next(((c, s) for c, s in found if s is not None),
                              (candidates[0], _configured_size(model)))
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(2 * PROBE_VOLUMES, channels, *size, generator=generator)
        return images.to(device=device, dtype=dtype)
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else (
            type(example_input).__name__)
        raise ValueError(
            f"example_input must be a batch of 2D images (B, C, H, W) that the 2D model "
            f"accepts, got {shape}"
        )
    if example_input.shape[0] < 2:
        raise ValueError(
            f"example_input needs at least 2 images (they become distinct slices of the probe "
            f"volumes), got a batch of {example_input.shape[0]}; e.g. torch.cat([x, x.flip(-1)])"
        )
    images = example_input.detach().to(device=device, dtype=dtype)
    return _with_distinct_volumes(images)

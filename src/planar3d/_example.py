"""The example call `convert` probes a network with, and what it refuses before probing.

The example is a call of the 2D network: its positional and keyword inputs, of which at least
one is a batch of images. Probes arrange the example's B images as `PROBE_VOLUMES` volumes of
B / `PROBE_VOLUMES` distinct slices each: two volumes, so that code mixing the batch dim
(minibatch statistics, BatchNorm without running statistics) is seen, and several slices per
volume, so that code mixing slices is seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._containers import map_leaves, tensors
from ._modes import eval_mode
from ._record import Call, batch_of, images_of
from .errors import UnsupportedModuleError

__all__ = ["PROBE_VOLUMES", "SECOND_SLICES", "example_call", "other_size", "probe_images",
           "refuse_unconvertible", "second_sizes"]

PROBE_VOLUMES = 2
# slices per probe volume at the second slice size: an odd count, other than the example's two,
# so that a size read of the planar axis cannot agree with the 2D code by chance there too
SECOND_SLICES = 3
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


def _with_distinct_volumes(t: torch.Tensor, images: int) -> torch.Tensor:
    """One per-image input of an example of `images` images, made `probe_images(images)` long:
    mirrored copies are appended (maps flipped left-right, other per-image inputs repeated)."""
    while t.shape[0] < probe_images(images):
        t = torch.cat([t, t.flip(-1) if t.dim() >= 3 else t])
    return t[:probe_images(images)]


def probe_images(images: int) -> int:
    """How many images probes use for an example of `images`: at least 2 * PROBE_VOLUMES, a
    multiple of PROBE_VOLUMES (mirrored copies are appended to a smaller or odd batch)."""
    n = images
    while n < 2 * PROBE_VOLUMES or n % PROBE_VOLUMES:
        n *= 2
    return n


def _shape_of(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def example_call(model: nn.Module, example_input, example_kwargs=None) -> Call:
    """The call of the 2D network the conversion is probed with: (args, kwargs).

    Args:
        model: the 2D network.
        example_input: a (B >= 2, C, H, W) batch the 2D model accepts; a tuple of its
            positional inputs, of which at least one is such a batch (every batch of images
            has the same B); or None for random images with the
            stem's channel count, of the smallest size that keeps every feature map informative
            (see `_default_size`; at most timm's `pretrained_cfg["input_size"]`, else 224x224).
        example_kwargs: its keyword inputs ({name: value}), with the same B where per-image.
    Returns:
        (args, kwargs): floating-point tensors on the model's device and dtype; each per-image
        input (a tensor whose first dim is the batch B of the images) with B' >= 4 and even
        rows: the example's, followed by mirrored copies where it has fewer than 4 or an odd
        number.
    Raises:
        ValueError: if no input is a batch of at least 2 images, or per-image inputs disagree
            on the batch.
    """
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    kwargs = dict(example_kwargs or {})
    if example_input is None and not kwargs:
        candidates = _channel_candidates(model)
        found = ((c, _default_size(model, c, dtype, device)) for c in candidates)
        channels, size = next(((c, s) for c, s in found if s is not None),
                              (candidates[0], _configured_size(model)))
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(2 * PROBE_VOLUMES, channels, *size, generator=generator)
        return (images.to(device=device, dtype=dtype),), {}
    args = () if example_input is None else (
        tuple(example_input) if isinstance(example_input, tuple) else (example_input,))
    batches = [t for t in tensors((args, kwargs)) if t.dim() == 4]
    if not batches:
        got = ", ".join(_shape_of(v) for v in (*args, *kwargs.values())) or "nothing"
        raise ValueError(
            f"example_input must be a batch of 2D images (B, C, H, W) that the 2D model "
            f"accepts, or a tuple of its inputs holding one; got {got}"
        )
    images = batches[0].shape[0]
    if images < 2:
        raise ValueError(
            f"example_input needs at least 2 images (they become distinct slices of the probe "
            f"volumes), got a batch of {images}; e.g. torch.cat([x, x.flip(-1)])"
        )
    if any(t.shape[0] != images for t in batches):
        raise ValueError(
            "the example's batches of images must hold as many images each, got "
            f"{[tuple(t.shape) for t in batches]}"
        )

    def prepared(value):
        if not isinstance(value, torch.Tensor):
            return value
        value = value.detach().to(device=device)
        if value.is_floating_point():
            value = value.to(dtype=dtype)
        return _with_distinct_volumes(value, images) if (
            value.dim() >= 1 and value.shape[0] == images) else value

    return map_leaves(prepared, (args, kwargs))


def second_sizes(call: Call) -> list[tuple[int, int]]:
    """Second slice sizes to check a converted network at, in order of preference: odd and a
    multiple of no small stride, a little smaller than the example's (cheaper), then a little
    larger (for networks that need at least the example's size); then a multiple of 32 (for
    networks that accept only those)."""
    h, w = images_of(call).shape[-2:]
    smaller = [(h - 3, w - 5)] if min(h - 3, w - 5) >= MIN_SIZE // 2 else []
    return [*smaller, (h + 5, w + 3), (h + 32, w)]


def other_size(call: Call, size: tuple[int, int]) -> Call:
    """The example call at another slice size: its batches of images (and other per-image
    maps) resampled to `size`, `PROBE_VOLUMES * SECOND_SLICES` of them (mirrored copies
    appended), other per-image inputs likewise repeated."""
    batch = batch_of(call)
    images = PROBE_VOLUMES * SECOND_SLICES

    def resized(t):
        if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[0] != batch:
            return t
        if t.dim() >= 4:
            flat = t.reshape(-1, *t.shape[-3:])
            if t.is_floating_point():
                flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            else:
                flat = F.interpolate(flat.double(), size=size, mode="nearest").to(t.dtype)
            t = flat.reshape(*t.shape[:-2], *size)
        while t.shape[0] < images:
            t = torch.cat([t, t.flip(-1) if t.dim() >= 3 else t])
        return t[:images]

    return map_leaves(resized, call)

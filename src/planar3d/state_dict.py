"""Load 2D checkpoints into converted networks (convert first, load the 2D weights later).

Names are the same in both networks; a converted layer that reshapes its kernel says how with a
`map_2d_parameter(name, value)` method (the kernel mappings of `planar3d.kernels`). Depth layers
added to a token model (`tokens`) have no 2D counterpart: a 2D checkpoint leaves them as they
are, and they are not missing from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from .tokens.depth_attention import DepthAttention
from .tokens.depth_position import DepthPosition

__all__ = ["load_2d_state_dict", "map_2d_state_dict"]

# layers added to learn depth: a 2D checkpoint has nothing for them
DEPTH_LAYER_TYPES = (DepthAttention, DepthPosition)


class LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def map_2d_state_dict(
    model3d: nn.Module, state_dict_2d: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map a 2D network's state_dict onto the shapes of `model3d` (a converted network).

    Args:
        model3d: the result of `planar3d.convert`.
        state_dict_2d: the 2D network's `state_dict()` (or a checkpoint with the same keys).
    Returns:
        A state_dict for `model3d`: same keys, kernels reshaped where the 3D layer needs it.
        Keys that `model3d` does not have are passed through unchanged.
    Raises:
        ValueError: if a tensor's shape fits neither the 3D tensor nor any kernel mapping.
    """
    targets = model3d.state_dict()
    owners = dict(model3d.named_modules())
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state_dict_2d.items():
        target = targets.get(key)
        if target is None or not isinstance(value, torch.Tensor) or value.shape == target.shape:
            mapped[key] = value
            continue
        prefix, _, name = key.rpartition(".")
        owner = owners.get(prefix)
        mapper = getattr(owner, "map_2d_parameter", None)
        result = mapper(name, value) if mapper is not None else None
        if result is None or result.shape != target.shape:
            raise ValueError(
                f"{key}: the 2D checkpoint holds shape {tuple(value.shape)} but the converted "
                f"model expects {tuple(target.shape)}, and {type(owner).__name__} has no kernel "
                f"mapping between them; is this checkpoint from the network that was converted?"
            )
        mapped[key] = result
    return mapped


def load_2d_state_dict(
    model3d: nn.Module, state_dict_2d: Mapping[str, torch.Tensor], *, strict: bool = True
) -> LoadResult:
    """Load a 2D network's weights into its converted 3D network.

    Equivalent to converting the 2D network after loading the weights into it.

    Args:
        model3d: the result of `planar3d.convert`.
        state_dict_2d: the 2D network's state_dict.
        strict: as for `nn.Module.load_state_dict`.
    Returns:
        (missing_keys, unexpected_keys), as `nn.Module.load_state_dict` (added depth layers
        are not missing).
    Raises:
        ValueError: for a tensor whose shape matches no mapping; RuntimeError for missing or
            unexpected keys when `strict`.
    """
    added = {f"{path}.{name}" if path else name
             for path, module in model3d.named_modules() if isinstance(module, DEPTH_LAYER_TYPES)
             for name, _ in module.state_dict().items()}
    result = model3d.load_state_dict(map_2d_state_dict(model3d, state_dict_2d), strict=False)
    missing = [key for key in result.missing_keys if key not in added]
    if strict and (missing or result.unexpected_keys):
        raise RuntimeError(
            f"the 2D checkpoint does not fit the converted network: missing keys {missing[:5]}, "
            f"unexpected keys {list(result.unexpected_keys)[:5]}"
        )
    return LoadResult(missing, list(result.unexpected_keys))

"""The settings a converter receives for one module."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Mode = Literal["planar", "center", "inflate", "acs"]
DepthPolicy = Literal["keep", "pool", "all"]
# The planar axis by name; public functions also take its tensor dim of (N, C, D, H, W) (2, 3, 4).
Axis = Literal["D", "H", "W"]
Region = Literal["body", "head"]

# Layers that learn depth, added to a token model at zero (docs/design.md §1, depth layers).
DepthLayer = Literal["position", "attention"]

MODES: tuple[str, ...] = ("planar", "center", "inflate", "acs")
DEPTH_POLICIES: tuple[str, ...] = ("keep", "pool", "all")
DEPTH_LAYERS: tuple[str, ...] = ("position", "attention")


@dataclass(frozen=True)
class ConversionContext:
    """What a converter needs to know to turn one 2D module into its 3D counterpart.

    Attributes:
        mode: kernel mapping, "planar" | "center" | "inflate" | "acs".
        axis: planar axis as tensor dim of (N, C, D, H, W): 2 (D), 3 (H) or 4 (W).
        depth: which layers also stride/pool along the planar axis: "keep" (none: depth is
            preserved everywhere), "pool" (pooling layers, as the seed paper's encoder, and a
            token model's patch embedding: tubelets), "all" (pooling layers and strided
            convolutions).
        kernel_depth: kernel size along the planar axis for the center and inflate modes.
        region: "body" for per-slice feature extraction, "head" for modules of a classifier's
            head that return pooled (non-spatial) tensors; head layers run slice-wise.
        in_head: the module's parent is in the head: an adaptive pool there is the head pool
            that pools the planar axis away (a pool's own output may still be spatial, as
            torchvision VGG's 7x7 `avgpool`).
        path: dotted path of the module being converted (for error messages).
        depth_layers: layers that learn depth added to a token model, among DEPTH_LAYERS.
    """

    mode: Mode = "planar"
    axis: int = 2
    depth: DepthPolicy = "keep"
    kernel_depth: int = 3
    region: Region = "body"
    in_head: bool = False
    path: str = ""
    depth_layers: tuple[str, ...] = ()

    def replace(self, **changes) -> ConversionContext:
        return dataclasses.replace(self, **changes)

    @property
    def pool_depth(self) -> bool:
        """Whether pooling layers pool along the planar axis too."""
        return self.depth in ("pool", "all")

    @property
    def stride_depth(self) -> bool:
        """Whether strided convolutions also stride along the planar axis."""
        return self.depth == "all"

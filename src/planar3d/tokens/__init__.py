"""Token models (vision transformers, MLP-mixers) on volumes: the layers that learn depth.

The volume layout of token sequences, (N, S, L, C), is `_axis`'s (`fold`, `unfold`).

- `tubelet`: a patch embedding with depth, one token grid per slice or tubelets of k slices;
- `depth_position`: a learnable depth position embedding, zero at initialisation;
- `depth_attention`: divided space-depth attention, a depth branch whose output starts at zero.
"""

from .depth_attention import DepthAttention, with_depth_attention
from .depth_position import DEFAULT_MAX_DEPTH, DepthPosition, with_depth_position
from .tubelet import is_patchify, tubelet_conv

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DepthAttention",
    "DepthPosition",
    "is_patchify",
    "tubelet_conv",
    "with_depth_attention",
    "with_depth_position",
]

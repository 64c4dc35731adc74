"""Token models (vision transformers, MLP-mixers) on volumes: their layout and depth layers.

- `layout`: the volume layout of per-slice tensors of every rank; token sequences (N·S, L, C)
  become (N, S, L, C);
- `tubelet`: a patch embedding with depth, one token grid per slice or tubelets of k slices;
- `depth_position`: a learnable depth position embedding, zero at initialisation;
- `depth_attention`: divided space-depth attention, a depth branch whose output starts at zero.
"""

from .depth_attention import DepthAttention, with_depth_attention
from .depth_position import DEFAULT_MAX_DEPTH, DepthPosition, with_depth_position
from .layout import fold_slices, slice_dim, unfold_slices
from .tubelet import is_patchify, tubelet_conv

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DepthAttention",
    "DepthPosition",
    "fold_slices",
    "is_patchify",
    "slice_dim",
    "tubelet_conv",
    "unfold_slices",
    "with_depth_attention",
    "with_depth_position",
]

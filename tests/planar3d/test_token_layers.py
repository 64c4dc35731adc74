"""Token layout and depth layers: exact at initialisation (float64), then trainable."""

import copy
import io

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from p3d_helpers import assert_close
from torch import nn

from planar3d import PlanarConv3d
from planar3d._axis import fold, slice_dim, unfold
from planar3d.tokens import (
    DepthAttention,
    DepthPosition,
    tubelet_conv,
    with_depth_attention,
    with_depth_position,
)

AXES = (2, 3, 4)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


# -- layout -----------------------------------------------------------------------------------

@given(rank=st.integers(3, 6), n=st.integers(1, 3), s=st.integers(1, 4),
       axis=st.sampled_from(AXES))
def test_unfold_and_fold_are_inverse_and_keep_each_slice(rank, n, s, axis):
    per_slice = _randn(n * s, *range(2, rank + 1), seed=rank * 10 + s)
    volume = unfold(per_slice, n, axis)
    assert volume.dim() == rank + 1
    assert torch.equal(fold(volume, axis), per_slice)
    where = slice_dim(volume.dim(), axis)
    for v in range(n):
        for i in range(s):
            assert torch.equal(volume[v].select(where - 1, i), per_slice[v * s + i])


@pytest.mark.parametrize("axis", AXES)
def test_tokens_put_the_slices_after_the_batch_for_every_axis(axis):
    tokens = _randn(6, 5, 4)  # 2 volumes of 3 slices, 5 tokens of 4 channels
    volume = unfold(tokens, 2, axis)
    assert volume.shape == (2, 3, 5, 4)
    assert torch.equal(volume[1, 2], tokens[5])


def test_the_token_rule_is_the_map_rule_for_axis_d():
    tokens = _randn(6, 5, 4)  # the map rule: the slices third from the end
    assert torch.equal(unfold(tokens, 2, 2), tokens.reshape(2, 3, 5, 4).movedim(1, -3))


def test_token_fold_is_a_view_of_a_slice_major_volume():
    volume = _randn(2, 3, 5, 4)
    assert fold(volume, 2).data_ptr() == volume.data_ptr()


def test_pooled_tensors_have_no_volume_layout():
    with pytest.raises(ValueError, match="pooled per slice"):
        unfold(_randn(6, 4), 2, 2)
    with pytest.raises(ValueError, match="no volume"):
        fold(_randn(6, 4, 2), 2)
    with pytest.raises(ValueError, match="slices of 4 volumes"):
        unfold(_randn(6, 4, 2), 4, 2)


# -- tubelet patch embedding ----------------------------------------------------------------------

def _patch_embed(seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 8, 4, stride=4).double()
    with torch.no_grad():
        conv.bias.normal_()
    return conv


def _planar(conv, x):
    return PlanarConv3d.from_2d(conv)(x)


def test_center_tubelet_with_depth_stride_one_is_planar():
    conv, x = _patch_embed(), _randn(2, 3, 5, 8, 8)
    tubelet = tubelet_conv(conv, init="center", depth=3, pool=False)
    assert tuple(tubelet.stride) == (1, 4, 4)
    assert_close(tubelet(x), _planar(conv, x), rtol=1e-12)


@pytest.mark.parametrize("slices", [6, 7, 8])
def test_center_tubelets_are_planar_on_their_middle_slices(slices):
    conv, x = _patch_embed(), _randn(2, 3, slices, 8, 8, seed=slices)
    tubelet = tubelet_conv(conv, init="center", depth=3, pool=True)
    out = tubelet(x)
    assert out.shape[2] == slices // 3
    middles = x[:, :, 1:3 * (slices // 3):3]
    assert_close(out, _planar(conv, middles), rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3])
def test_inflate_tubelets_give_the_2d_tokens_on_equal_slices(depth):
    conv = _patch_embed()
    image = _randn(2, 3, 8, 8)
    constant = image.unsqueeze(2).expand(2, 3, 2 * depth, 8, 8)
    out = tubelet_conv(conv, init="inflate", depth=depth, pool=True)(constant)
    assert out.shape[2] == 2
    for s in range(2):
        assert_close(out[:, :, s], conv(image), rtol=1e-12)


def test_a_tubelet_needs_a_patch_embedding():
    with pytest.raises(ValueError, match="patch embedding"):
        tubelet_conv(nn.Conv2d(3, 8, 3, padding=1), init="center", depth=3, pool=True)


def test_tubelet_kernels_come_from_the_2d_kernel():
    conv = _patch_embed()
    tubelet = tubelet_conv(conv, init="center", depth=3, pool=True)
    assert torch.equal(tubelet.weight[:, :, 1], conv.weight)
    assert not tubelet.weight[:, :, [0, 2]].any()
    assert torch.equal(tubelet.map_2d_parameter("weight", conv.weight), tubelet.weight)


# -- depth position embedding ---------------------------------------------------------------------

class _Tokens(nn.Module):
    """A per-slice token module on token volumes (N, S, L, C): a linear layer."""

    def __init__(self, channels=8):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        return self.fc(x)


def _one_step(model, x, parameters):
    """One SGD step on a loss of the model's output; returns the gradients of `parameters`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).square().mean().backward()
    grads = [p.grad.clone() for p in parameters]
    optimizer.step()
    optimizer.zero_grad()
    return grads


@pytest.mark.parametrize(("shape", "slice_dim_", "channel_dim"), [
    ((2, 3, 5, 8), 1, -1),        # token volume (N, S, L, C)
    ((2, 8, 3, 4, 4), 2, 1),      # map volume (N, C, D, H, W)
    ((2, 4, 3, 4, 8), 2, -1),     # channels-last grid (N, H, D, W, C)
])
def test_depth_position_starts_at_zero_and_adds_per_slice_rows(shape, slice_dim_, channel_dim):
    position = DepthPosition(8, max_depth=5, slice_dim=slice_dim_, channel_dim=channel_dim)
    position.double()
    x = _randn(*shape)
    assert torch.equal(position(x), x)
    with torch.no_grad():
        position.table.copy_(_randn(5, 8, seed=3))
    out = position(x)
    for s in range(3):
        diff = (out - x).select(slice_dim_, s)
        channels = channel_dim % x.dim() - (channel_dim % x.dim() > slice_dim_)
        rows = diff.movedim(channels, -1).reshape(-1, 8)
        assert_close(rows, position.table[s].detach().expand_as(rows), rtol=1e-12)


def test_depth_position_refuses_deeper_volumes():
    with pytest.raises(ValueError, match="windows of at most 4 slices"):
        DepthPosition(8, max_depth=4)(torch.zeros(1, 5, 3, 8))


def test_a_module_with_depth_position_is_exact_first_then_learns():
    module = _Tokens().double()
    reference = copy.deepcopy(module)
    with_depth_position(module, DepthPosition(8, max_depth=4).double())
    x = _randn(2, 3, 5, 8)
    assert torch.equal(module(x), reference(x))
    (grad,) = _one_step(module, x, [module.depth_position.table])
    assert grad[:3].abs().min() > 0 and not grad[3:].any()  # rows of the slices present
    assert (module(x) - reference(x)).abs().max() > 1e-3


# -- divided depth attention ----------------------------------------------------------------------

def test_depth_attention_starts_at_zero():
    attention = DepthAttention(8, num_heads=2).double()
    x = _randn(2, 3, 5, 8)
    assert torch.equal(attention(x), torch.zeros_like(x))


def _trained(attention):
    with torch.no_grad():
        attention.proj.weight.copy_(_randn(8, 8, seed=5))
    return attention


def test_depth_attention_mixes_slices_at_one_position_only():
    attention = _trained(DepthAttention(8, num_heads=2).double())
    x = _randn(2, 3, 5, 8)
    moved = x.clone()
    moved[0, 0, 2] += _randn(8, seed=9)  # one token of slice 0
    diff = (attention(moved) - attention(x)).abs().amax(-1)
    assert diff[0, :, 2].min() > 1e-6  # every slice at that position sees it
    others = torch.ones_like(diff, dtype=torch.bool)
    others[0, :, 2] = False
    assert diff[others].max() < 1e-12  # no other position, no other volume


def test_depth_attention_on_maps_equals_it_on_tokens():
    attention = _trained(DepthAttention(8, num_heads=2).double())
    maps = DepthAttention(8, num_heads=2, slice_dim=2, channel_dim=1).double()
    maps.load_state_dict(attention.state_dict())
    x = _randn(2, 8, 3, 4, 4)  # (N, C, D, H, W)
    tokens = x.permute(0, 2, 3, 4, 1).reshape(2, 3, 16, 8)
    expected = attention(tokens).reshape(2, 3, 4, 4, 8).permute(0, 4, 1, 2, 3)
    assert_close(maps(x), expected, rtol=1e-12)


def test_depth_attention_copies_a_fused_qkv_projection():
    qkv = nn.Linear(8, 24).double()
    attention = DepthAttention.from_qkv(qkv, num_heads=2)
    assert torch.equal(attention.qkv.weight, qkv.weight)
    assert torch.equal(attention.qkv.bias, qkv.bias)
    assert not attention.proj.weight.any() and not attention.proj.bias.any()
    with pytest.raises(ValueError, match="C to 3C"):
        DepthAttention.from_qkv(nn.Linear(8, 16), num_heads=2)


def test_a_module_with_depth_attention_is_exact_first_then_learns():
    module = _Tokens().double()
    reference = copy.deepcopy(module)
    with_depth_attention(module, DepthAttention(8, num_heads=2).double())
    x = _randn(2, 3, 5, 8)  # slices differ
    assert torch.equal(module(x), reference(x))
    branch = module.depth_attention
    proj, qkv = _one_step(module, x, [branch.proj.weight, branch.qkv.weight])
    assert proj.abs().max() > 0 and not qkv.any()  # the zero projection learns first
    assert (module(x) - reference(x)).abs().max() > 1e-3
    (qkv,) = _one_step(module, x, [branch.qkv.weight])
    assert qkv.abs().max() > 0


def test_depth_layers_keep_names_and_copy_and_pickle():
    module = _Tokens().double()
    with_depth_attention(module, DepthAttention(8, num_heads=2).double())
    with_depth_position(module, DepthPosition(8, max_depth=4).double())
    names = [name for name, _ in module.named_parameters()]
    assert names[:2] == ["fc.weight", "fc.bias"]
    assert "depth_attention.proj.weight" in names and "depth_position.table" in names
    _trained(module.depth_attention)
    x = _randn(2, 3, 5, 8)
    copied = copy.deepcopy(module)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (copied, loaded):
        assert type(other).__name__ == type(module).__name__
        assert torch.equal(other(x), module(x))

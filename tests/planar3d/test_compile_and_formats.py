"""Converted networks under torch.compile, bf16 autocast and channels_last_3d.

Also the layout contract that lets a planar network cost what its 2D network costs
(docs/design.md §2): on a slice-major or channels_last_3d volume every planar layer returns a volume
whose fold into (N*D, C, H, W) slices is a view, so no layer copies its input.
"""

import copy

import pytest
import timm
import torch
import torchvision
from p3d_helpers import assert_close, randomize, volume
from p3d_oracle import fold_volume, slice_mismatches
from torch import nn

import planar3d
from planar3d import (
    PlanarAvgPool3d,
    PlanarBatchNorm3d,
    PlanarConv3d,
    PlanarMaxPool3d,
    fold_module,
)
from planar3d._axis import fold

CL3 = torch.channels_last_3d


def slice_major(x: torch.Tensor) -> torch.Tensor:
    """The same volume stored as a contiguous (N, D, C, H, W) tensor."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def arrange(x: torch.Tensor, layout: str) -> torch.Tensor:
    return slice_major(x) if layout == "slice-major" else x.contiguous(memory_format=CL3)


def folds_without_copy(t: torch.Tensor) -> bool:
    return fold(t, 2).untyped_storage().data_ptr() == t.untyped_storage().data_ptr()


def converted(model: nn.Module, size: int = 64) -> nn.Module:
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return planar3d.convert(model.eval(), example_input=example)


def resnet18_body() -> nn.Module:
    """torchvision resnet18 without its head: spatial features, comparable slice by slice."""
    return nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])


class SqueezeExcite(nn.Module):
    """timm-style SE: 2D-only code with a 4-D weight; planar3d folds it."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * self.fc(x.mean((2, 3), keepdim=True)).sigmoid()


# -- PlanarBatchNorm3d -------------------------------------------------------------------------

@pytest.mark.parametrize("axis", ["D", "H", "W"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_planar_batchnorm_is_batchnorm3d(axis, training, momentum):
    bn2d = randomize(nn.BatchNorm2d(4, momentum=momentum))
    reference = nn.BatchNorm3d(4, momentum=momentum)
    reference.load_state_dict(bn2d.state_dict())
    planar = PlanarBatchNorm3d.from_2d(copy.deepcopy(bn2d), axis=axis)
    assert isinstance(planar, nn.BatchNorm3d)
    reference.train(training)
    planar.train(training)
    for seed in (1, 2):  # two steps: the running statistics follow BatchNorm3d's
        x = volume(2, 4, 3, 5, 6, seed=seed)
        assert_close(planar(x), reference(x))
    want = dict(reference.named_buffers())
    for name, buffer in planar.named_buffers():
        assert_close(buffer, want[name])


def test_planar_batchnorm_refuses_a_2d_batch():
    with pytest.raises(ValueError, match=r"5-D volume"):
        PlanarBatchNorm3d.from_2d(nn.BatchNorm2d(4))(torch.randn(2, 4, 5, 5))


# -- layouts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["slice-major", "channels_last_3d"])
@pytest.mark.parametrize("training", [True, False])
def test_planar_layers_return_volumes_that_fold_without_copy(layout, training):
    layers = [
        PlanarConv3d.from_2d(nn.Conv2d(4, 6, 3, padding=1)),
        PlanarBatchNorm3d.from_2d(nn.BatchNorm2d(4)),
        PlanarMaxPool3d.from_2d(nn.MaxPool2d(2)),
        PlanarAvgPool3d.from_2d(nn.AvgPool2d(2)),
        fold_module(SqueezeExcite(4)),
    ]
    x = arrange(volume(2, 4, 3, 8, 8), layout)
    for layer in layers:
        out = layer.train(training)(x)
        assert folds_without_copy(out), type(layer).__name__
        if layout == "channels_last_3d":
            assert out.is_contiguous(memory_format=CL3), type(layer).__name__


MODELS = {
    "tv/resnet18": lambda: torchvision.models.resnet18(),
    "timm/mobilenetv3_small_050": lambda: timm.create_model("mobilenetv3_small_050"),
    "timm/convnext_atto": lambda: timm.create_model("convnext_atto"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_layer_of_a_converted_network_folds_without_copy(name, channels_last):
    """Activations and their gradients. From a contiguous input the first layer makes the volume
    slice-major; from a channels_last_3d input (model converted with .to) it stays
    channels_last_3d. torchvision's in-place `out += identity` and ReLU(inplace=True) act on
    planar layers' outputs: their gradients must not come back in another layout."""
    model = converted(randomize(MODELS[name]())).train()
    x = volume(2, 3, 3, 32, 32)
    if channels_last:
        model = model.to(memory_format=CL3)
        x = x.contiguous(memory_format=CL3)
    copies = []

    def check(what, module, t):
        if t.dim() == 5 and not folds_without_copy(t):
            copies.append(f"{what} of {module._path} ({type(module).__name__}): {t.stride()}")

    def hook(module, args, out):
        if isinstance(out, torch.Tensor):
            check("output", module, out)
            if out.requires_grad:
                out.register_hook(lambda grad: check("gradient", module, grad))

    for path, module in model.named_modules():
        module._path = path
        module.register_forward_hook(hook)
    model(x).sum().backward()
    assert copies == []


def test_in_place_ops_on_planar_outputs_backpropagate_like_the_2d_network():
    model = randomize(resnet18_body()).train()  # BasicBlock: out += identity; ReLU(inplace)
    model3d = converted(copy.deepcopy(model)).train()
    x = volume(2, 3, 3, 64, 64)
    weights = volume(2, 512, 3, 2, 2, seed=3)
    (model3d(x) * weights).sum().backward()
    (model(fold_volume(x)) * fold_volume(weights)).sum().backward()
    reference = dict(model.named_parameters())
    for name, p in model3d.named_parameters():
        assert_close(p.grad, reference[name].grad.reshape(p.grad.shape), rtol=1e-4)


@pytest.mark.parametrize("name", ["tv/resnet18", "timm/mobilenetv3_small_050"])
def test_channels_last_3d_input_and_model_give_the_contiguous_output(name):
    model = converted(randomize(MODELS[name]()))
    x = volume(2, 3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        assert_close(model(x.contiguous(memory_format=CL3)), want)
        names = [n for n, _ in model.named_parameters()]
        model.to(memory_format=CL3)  # folded 2D modules keep 4-D weights: channels_last
        assert [n for n, _ in model.named_parameters()] == names
        for n, p in model.named_parameters():
            if p.dim() >= 4 and p.shape[1] > 1:
                fmt = CL3 if p.dim() == 5 else torch.channels_last
                assert p.is_contiguous(memory_format=fmt), n
        assert_close(model(x.contiguous(memory_format=CL3)), want)
        assert_close(model(x), want)


# -- bf16 autocast -----------------------------------------------------------------------------

def test_bf16_autocast_matches_the_2d_network_under_autocast_slice_by_slice():
    model = randomize(resnet18_body()).eval()
    model3d = converted(copy.deepcopy(model))
    x = volume(2, 3, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert slice_mismatches(model, model3d, x, rtol=2e-2) == []
        with torch.no_grad():
            assert model3d(x).dtype == torch.bfloat16


def test_bf16_autocast_trains_a_converted_classifier():
    model3d = converted(randomize(timm.create_model("mobilenetv3_small_050"))).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model3d(volume(2, 3, 3, 32, 32))
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 1000)
    logits.float().square().mean().backward()
    grads = [p.grad for p in model3d.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# -- torch.compile -----------------------------------------------------------------------------

def test_converted_resnet18_traces_as_one_graph_and_trains_like_eager():
    """Dynamo and AOT autograd (no code generation): one graph, same values and gradients."""
    model3d = converted(randomize(torchvision.models.resnet18())).train()
    compiled_model = copy.deepcopy(model3d)
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)
    x = volume(2, 3, 3, 32, 32)
    want = model3d(x)
    got = compiled(x)
    assert_close(got, want, rtol=1e-4)
    want.square().mean().backward()
    got.square().mean().backward()
    reference = dict(model3d.named_parameters())
    for name, p in compiled_model.named_parameters():
        assert_close(p.grad, reference[name].grad, rtol=1e-3)


@pytest.mark.slow
def test_inductor_compiled_resnet18_matches_eager():
    model3d = converted(randomize(torchvision.models.resnet18()))
    x = volume(2, 3, 3, 32, 32)
    with torch.no_grad():
        want = model3d(x)
        got = torch.compile(model3d, fullgraph=True)(x)
    assert_close(got, want, rtol=1e-4)


# -- torch.func ------------------------------------------------------------------------------------

def test_torch_func_grad_vmap_and_jvp_go_through_planar_layers():
    """The planar layers' outputs come from an autograd.Function: it must support transforms."""
    model = randomize(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                    SqueezeExcite(4), nn.MaxPool2d(2))).eval().double()
    model3d = converted(copy.deepcopy(model), size=8)
    params = {k: v.detach() for k, v in model3d.named_parameters()}
    x = volume(2, 3, 2, 8, 8, dtype=torch.float64)

    def loss(p, v):
        return torch.func.functional_call(model3d, p, (v,)).square().sum()

    grads = torch.func.grad(loss)(params, x)
    with torch.enable_grad():
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        want = torch.autograd.grad(loss(leaves, x), list(leaves.values()))
    for got, ref in zip(grads.values(), want):
        assert_close(got, ref, rtol=1e-9)
    per_volume = torch.func.vmap(torch.func.grad(lambda p, v: loss(p, v[None])),
                                 in_dims=(None, 0))(params, x)
    for name, g in per_volume.items():
        assert_close(g.sum(0), grads[name], rtol=1e-9)

    tangents = {k: torch.randn_like(v) for k, v in params.items()}
    _, got = torch.func.jvp(lambda p: torch.func.functional_call(model3d, p, (x,)),
                            (params,), (tangents,))
    params2d = {k: v.squeeze(2) if v.dim() == 5 else v for k, v in params.items()}
    tangents2d = {k: v.squeeze(2) if v.dim() == 5 else v for k, v in tangents.items()}
    _, want2d = torch.func.jvp(lambda p: torch.func.functional_call(model, p, (fold_volume(x),)),
                               (params2d,), (tangents2d,))
    assert_close(fold_volume(got), want2d, rtol=1e-9)

    fwad = torch.autograd.forward_ad  # forward mode while autograd records (parameters trained)
    tangent = volume(2, 3, 2, 8, 8, seed=4, dtype=torch.float64)
    with fwad.dual_level():
        got = fwad.unpack_dual(model3d(fwad.make_dual(x, tangent))).tangent
        want2d = fwad.unpack_dual(model(fwad.make_dual(fold_volume(x), fold_volume(tangent))))
    assert_close(fold_volume(got), want2d.tangent, rtol=1e-9)

"""A converted network computes the reference for every call it accepts.

`convert` verifies the call it was shown (`example_input`, a tensor or a tuple of positional
inputs, and `example_kwargs`); a call that differs from it (other arguments, other values of a
flag, other tensor ranks) runs code no check saw: it is checked against the reference on first
use, or refused with UnsupportedModuleError naming the argument. Never a silent wrong answer.
"""

import pytest
import torch
from network_check import RTOL, compare
from p3d_helpers import randomize
from p3d_oracle import fold_volume
from reference_nets import (
    FeatureFlagClassifier,
    GuidedSegmenter,
    MaskedSegmenter,
    SiameseDifference,
)

import planar3d
from planar3d import UnsupportedModuleError

N, D, S = 2, 3, 16


def _images(channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, channels, S, S, generator=torch.Generator().manual_seed(seed))


def _volume(channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(N, channels, D, S, S, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _model(build):
    torch.manual_seed(0)
    return randomize(build()).eval()


def _reference(model2d, args, kwargs):
    """P0 for a call with several volume inputs: each folded to its slices."""
    folded = [fold_volume(a) if isinstance(a, torch.Tensor) and a.dim() == 5 else a
              for a in args]
    folded_kwargs = {k: fold_volume(v) if isinstance(v, torch.Tensor) and v.dim() == 5 else v
                     for k, v in kwargs.items()}
    with torch.no_grad():
        out = model2d(*folded, **folded_kwargs)
    return out.reshape(N, D, *out.shape[1:]).movedim(1, 2)


def _pooled_features(model2d, x):
    """FeatureFlagClassifier's features pooled by its root's own code: the head pool, over D, H
    and W."""
    with torch.no_grad():
        folded = model2d.body(fold_volume(x))
    return folded.reshape(N, D, *folded.shape[1:]).mean((1, 3, 4))


def _exact_or_refused_naming(model3d, args, kwargs, argument: str, want) -> str:
    """The call computes `want`, or is refused naming `argument`; which of the two."""
    try:
        with torch.no_grad():
            got = model3d(*args, **kwargs)
    except UnsupportedModuleError as error:
        assert argument in str(error), f"the refusal does not name {argument!r}: {error}"
        assert error.fix, "a refusal must say how to fix it"
        return "refused"
    compare(got, want, f"call with {argument}", RTOL)
    return "exact"


def test_a_keyword_only_flag_is_checked_or_refused():
    model2d = _model(FeatureFlagClassifier)
    model3d = planar3d.convert(model2d, example_input=_images()).double()
    x = _volume()
    _exact_or_refused_naming(model3d, (x,), {"return_features": True}, "return_features",
                             _pooled_features(model2d.double(), x))


def test_an_optional_mask_is_checked_or_refused():
    model2d = _model(MaskedSegmenter)
    model3d = planar3d.convert(model2d, example_input=_images()).double()
    x, mask = _volume(), (_volume(1, seed=2) > 0).double()
    _exact_or_refused_naming(model3d, (x,), {"mask": mask}, "mask",
                             _reference(model2d.double(), (x,), {"mask": mask}))


def test_the_verified_call_may_be_written_another_way():
    """Keywords for positional arguments and explicit default values are the verified call."""
    model2d = _model(FeatureFlagClassifier).double()
    model3d = planar3d.convert(model2d, example_input=_images().double())
    x = _volume()
    with torch.no_grad():
        want = model3d(x)
        for got in (model3d(x=x), model3d(x, return_features=False)):
            compare(got, want, "the same call written another way", 0.0)


def test_a_flag_verified_by_the_example_is_exact():
    model2d = _model(FeatureFlagClassifier).double()
    model3d = planar3d.convert(model2d, example_input=_images().double(),
                               example_kwargs={"return_features": True})
    x = _volume()
    with torch.no_grad():
        got = model3d(x, return_features=True)
    compare(got, _pooled_features(model2d, x), "return_features=True", RTOL)


def test_two_inputs_convert():
    """A Siamese network: `example_input` as a tuple of positional inputs."""
    model2d = _model(SiameseDifference)
    model3d = planar3d.convert(model2d, example_input=(_images(), _images(seed=5)))
    model2d, model3d = model2d.double(), model3d.double()
    a, b = _volume(), _volume(seed=6)
    with torch.no_grad():
        got = model3d(a, b)
    compare(got, _reference(model2d, (a, b), {}), "two inputs", RTOL)
    with pytest.raises(TypeError, match="'b'"):  # as the 2D network: a required input
        model3d(a)


def test_a_keyword_only_input_converts():
    model2d = _model(GuidedSegmenter)
    model3d = planar3d.convert(model2d, example_input=_images(),
                               example_kwargs={"guide": _images(1, seed=7)})
    model2d, model3d = model2d.double(), model3d.double()
    x, guide = _volume(), _volume(1, seed=8)
    with torch.no_grad():
        got = model3d(x, guide=guide)
    compare(got, _reference(model2d, (x,), {"guide": guide}), "keyword-only input", RTOL)


def test_an_example_that_cannot_be_called_says_how_to_pass_inputs():
    """The default example calls forward with one image batch; a two-input network says how to
    pass its inputs."""
    with pytest.raises((UnsupportedModuleError, ValueError), match="tuple"):
        planar3d.convert(_model(SiameseDifference))

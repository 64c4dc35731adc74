"""A converted network is exact at every slice size its 2D network accepts, not only at the
example's.

Code that reads a volume's size (`x.size()[2]` is H in 2D and D on a volume) can agree with the
reference at the example's size and go wrong at another: pads of zero at 32x32 become pads of
the wrong dims at 60x44. Each network here is converted with a 32x32 example and checked (P0,
eval and one train step, float64) at sizes that are odd or a multiple of no stride.
"""

import copy

import pytest
import torch
from network_check import check_eval, check_train_step, volumes
from p3d_helpers import randomize
from reference_nets import CropToEven, PadToMultiple, PadToSkipUNet
from research_nets import SmallUNet

import planar3d

EXAMPLE = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
SIZES = [(32, 32), (60, 44), (61, 45), (45, 61)]


def _converted(build):
    torch.manual_seed(0)
    model = randomize(build()).eval()
    return model, planar3d.convert(model, example_input=EXAMPLE)


@pytest.mark.parametrize("build", [PadToSkipUNet, PadToMultiple, CropToEven, SmallUNet],
                         ids=lambda b: b.__name__)
def test_exact_at_every_size(build):
    model2d, model3d = _converted(build)
    model2d, model3d = model2d.double(), model3d.double()
    for size in SIZES:
        xs = volumes(3, size)
        check_eval(model2d, model3d, xs, None)
        # on a copy: a train step changes the converted network's BatchNorm statistics
        check_train_step(model2d, copy.deepcopy(model3d), xs["distinct"], None)


def test_pad_to_skip_runs_at_an_odd_size_in_float32():
    """The classic up block as users run it: float32, a volume of 5 slices of 61x45."""
    model2d, model3d = _converted(PadToSkipUNet)
    x = torch.randn(1, 3, 5, 61, 45, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model3d(x)
        want = model2d(x[0].transpose(0, 1)).transpose(0, 1).unsqueeze(0)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

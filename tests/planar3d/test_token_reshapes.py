"""Token reshapes inside the body: einops layers and Flatten(2)/Unflatten.

MLP-Mixer-style code turns each slice's map into tokens, mixes them, and turns them back into a
map; the reference (P0) is per slice, so the converted network must compute it exactly (eval and
one train step, float64). A head pool written with einops' `Reduce` pools D, H and W.
"""

import pytest
import torch
from network_check import check_eval, check_train_step, volumes
from p3d_helpers import randomize
from reference_nets import (
    einops_reduce_classifier,
    einops_sequential,
    flatten_unflatten_mixer,
    mixer_net,
)

import planar3d

SIZE = 16
EXAMPLE = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("build", "head"), [
    (mixer_net, None), (einops_sequential, None), (flatten_unflatten_mixer, None),
    (einops_reduce_classifier, "2")], ids=lambda b: getattr(b, "__name__", str(b)))
def test_token_reshapes_are_per_slice(build, head):
    torch.manual_seed(0)
    model2d = randomize(build()).eval()
    model3d = planar3d.convert(model2d, example_input=EXAMPLE)
    model2d, model3d = model2d.double(), model3d.double()
    xs = volumes(3, SIZE)
    check_eval(model2d, model3d, xs, head)
    check_train_step(model2d, model3d, xs["distinct"], head)

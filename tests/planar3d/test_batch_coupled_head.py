"""A numerically exact network is never refused: a train-mode BatchNorm1d after the head pool.

In train mode a BatchNorm1d in a head normalises the pooled vectors of the batch; when those
differ by little against their size (deep features, or features on an offset), float32 rounding
of the pool is amplified by the normalisation, while the computation is exact. Conversion must
tell rounding from a wrong computation (enough distinct volumes, or float64), and the converted
network must compute the reference (float64, eval and one train step).
"""

import pytest
import timm
import torch
from network_check import RTOL, check_eval, check_train_step, compare, volumes
from p3d_helpers import randomize
from p3d_oracle import stacked_reference
from reference_nets import BatchNormHead

import planar3d


def test_a_batchnorm1d_head_on_close_pooled_vectors_converts():
    """Eval outputs and train-mode outputs against the reference, float64. (Its gradients are
    rounding-dominated by design: the features sit on an offset that the BatchNorm removes.)"""
    torch.manual_seed(0)
    model2d = randomize(BatchNormHead()).eval()
    example = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    model3d = planar3d.convert(model2d, example_input=example)
    model2d, model3d = model2d.double(), model3d.double()
    xs = volumes(3, 32)
    check_eval(model2d, model3d, xs, "")
    with torch.no_grad():
        got = model3d.train()(xs["distinct"])
        want = stacked_reference(model2d.train(), xs["distinct"], "")
    compare(got, want, "train mode", RTOL)


@pytest.mark.slow
def test_repvit_with_its_default_example_converts():
    """timm's RepViT: BatchNorm1d in its head; randomised statistics; the default example."""
    torch.manual_seed(0)
    model2d = randomize(timm.create_model("repvit_m1", pretrained=False)).eval()
    model3d = planar3d.convert(model2d)
    model2d, model3d = model2d.double(), model3d.double()
    xs = volumes(3, 64)
    check_eval(model2d, model3d, xs, "")
    check_train_step(model2d, model3d, xs["distinct"], "")

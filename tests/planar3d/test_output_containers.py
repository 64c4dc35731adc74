"""Every output container is walked, and every leaf is compared or refused.

A network may return its results in a dataclass, a namedtuple, a mapping class (transformers'
ModelOutput), nested lists and dicts, or as per-slice maps without channels (label maps,
squeezed and boolean masks, (N·D, H, W) in 2D and (N, D, H, W) under P0). Each must come back
laid out as P0 says, checked end to end (eval and one train step, float64). An output the check
cannot compare (an object holding a tensor) is refused, never skipped.
"""

import pytest
import torch
from network_check import check_eval, check_train_step, volumes
from p3d_helpers import randomize
from reference_nets import (
    BooleanMaskAndLogits,
    DataclassOutputs,
    LabelMap,
    MappingOutputs,
    NamedTupleOutputs,
    NestedOutputs,
    OpaqueOutput,
    SqueezedMask,
)

import planar3d
from planar3d import UnsupportedModuleError

EXAMPLE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _model(build):
    torch.manual_seed(0)
    return randomize(build()).eval()


@pytest.mark.parametrize("build", [DataclassOutputs, NamedTupleOutputs, MappingOutputs,
                                   NestedOutputs, LabelMap, SqueezedMask,
                                   BooleanMaskAndLogits], ids=lambda b: b.__name__)
def test_outputs_come_back_as_p0_lays_them_out(build):
    model2d = _model(build)
    model3d = planar3d.convert(model2d, example_input=EXAMPLE)
    model2d, model3d = model2d.double(), model3d.double()
    xs = volumes(3, 16)
    # the head pool: the adaptive pool, or the root's own code (NamedTupleOutputs)
    head = ("", "pool")
    check_eval(model2d, model3d, xs, head)
    check_train_step(model2d, model3d, xs["distinct"], head)


def test_a_label_map_has_the_slices_of_the_volume():
    model2d = _model(LabelMap)
    model3d = planar3d.convert(model2d, example_input=EXAMPLE)
    x = torch.randn(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model3d(x)
        want = torch.stack([model2d(x[:, :, d]) for d in range(5)], dim=1)
    assert got.dtype == torch.int64 and got.shape == (2, 5, 16, 16)
    assert torch.equal(got, want)


def test_an_output_no_check_can_compare_is_refused():
    with pytest.raises(UnsupportedModuleError, match="Boxed"):
        planar3d.convert(_model(OpaqueOutput), example_input=EXAMPLE)

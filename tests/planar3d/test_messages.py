"""What `convert` says when it cannot convert: one UnsupportedModuleError naming the module, the
whole reason (never cut short) and a fix that applies.
"""

import pytest
import torch
from p3d_helpers import randomize
from reference_nets import NoisyMapWithEmbedding, OutOfMemoryAbove, TinyTokenClassifier
from research_nets import FlattenLinearNoPool, ItemScaledHead

import planar3d
from planar3d import UnsupportedModuleError

EXAMPLE = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _refusal(model, **kwargs) -> UnsupportedModuleError:
    torch.manual_seed(0)
    with pytest.raises(UnsupportedModuleError) as caught:
        planar3d.convert(randomize(model).eval(), **kwargs)
    return caught.value


@pytest.mark.parametrize("build", [FlattenLinearNoPool, ItemScaledHead, NoisyMapWithEmbedding],
                         ids=lambda b: b.__name__)
def test_reasons_are_whole(build):
    """A composite reason is printed whole (on several lines if it needs them), never cut with
    '...'."""
    error = _refusal(build(), example_input=EXAMPLE)
    assert "..." not in str(error), str(error)
    assert error.reason and error.fix


def test_a_map_output_is_never_told_to_pool_globally():
    error = _refusal(NoisyMapWithEmbedding(), example_input=EXAMPLE)
    assert "pool" not in error.fix, error.fix


def test_running_out_of_memory_says_so_with_the_size_and_the_fix():
    error = _refusal(OutOfMemoryAbove(), example_input=torch.randn(2, 3, 64, 64))
    text = str(error)
    assert "out of memory" in text and "64" in text and "example_input" in error.fix, text
    assert "does not run on the example" not in text, text


def test_a_network_that_does_not_run_on_the_default_example_is_a_refusal():
    """Not a bare RuntimeError: a network whose forward needs other inputs than one batch of
    images is refused, saying how to pass them."""
    class TwoInputs(torch.nn.Module):
        def forward(self, a, b):
            return a - b

    with pytest.raises(UnsupportedModuleError) as caught:
        planar3d.convert(TwoInputs())
    assert "example_input" in caught.value.fix


def test_a_patch_embedding_is_not_called_a_head():
    """Modules that compute per-slice tokens belong to the body: exact, or refused without
    being called a head module."""
    torch.manual_seed(0)
    model = randomize(TinyTokenClassifier()).eval()
    try:
        planar3d.convert(model, example_input=EXAMPLE)
    except UnsupportedModuleError as error:
        assert not (error.path.startswith("patch_embed") and "head" in error.reason), str(error)

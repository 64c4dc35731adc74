"""torch.compile path (inductor on the CPU, needs a C++ compiler): trains like eager mode."""

import shutil

import pytest
import torch
from msseg.training.engine import train
from msseg_helpers import tiny_config, tiny_datasets


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path):
    compiled = train(tiny_config(tmp_path / "compiled", epochs=1, compile=True),
                     *tiny_datasets())
    eager = train(tiny_config(tmp_path / "eager", epochs=1), *tiny_datasets())
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"],
                                                              rel=1e-5)
    reference = eager.model.state_dict()
    for key, value in compiled.model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-6, msg=key)

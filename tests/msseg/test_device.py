"""The one device and precision resolver, for training and prediction alike."""

import pytest
import torch
from msseg.config import PRECISIONS
from msseg.device import Compute, resolve_compute


def test_cpu_resolves_each_precision_of_the_one_vocabulary():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    assert resolve_compute("cpu", "auto") == Compute(torch.device("cpu"), None)
    assert resolve_compute("cpu", "fp32").amp_dtype is None
    assert resolve_compute("cpu", "bf16").amp_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision fp16 on the CPU: torch has no fast fp16"):
        resolve_compute("cpu", "fp16")
    if not torch.cuda.is_available():
        assert resolve_compute() == Compute(torch.device("cpu"), None)


def test_autocast_follows_the_dtype():
    x = torch.ones(2, 2)
    with resolve_compute("cpu", "bf16").autocast():
        assert (x @ x).dtype == torch.bfloat16
    with resolve_compute("cpu", "fp32").autocast():
        assert (x @ x).dtype == torch.float32


def test_unusable_choices_say_what_to_do():
    with pytest.raises(ValueError, match=r"precision must be one of .*; got 'none'"):
        resolve_compute("cpu", "none")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use device 'cpu' or 'auto'"):
            resolve_compute("cuda:1", "auto")


@pytest.mark.parametrize("name", ["foo", "cuda:x", "meta", "cpu:0:1"])
def test_a_device_that_is_not_one_is_a_clear_error(name):
    with pytest.raises(ValueError, match=rf"device '{name}'.*'cpu'"):
        resolve_compute(name, "auto")

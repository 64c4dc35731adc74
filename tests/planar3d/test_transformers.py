"""HuggingFace transformers vision CNNs convert exactly (the families' named classes; the whole
sweep is test_transformers_sweep.py).

Small configs, random weights, offline; checked like the network sweep: eval and train mode,
copies, float64, at the example's slice size and at a second one.
"""

import pytest
from hf_networks import CASES
from network_check import assert_as_expected, check_case

NAMED = ["hf_resnet_forimageclassification", "hf_convnext_model",
         "hf_convnextv2_forimageclassification", "hf_efficientnet_model",
         "hf_segformer_forsemanticsegmentation", "hf_mobilevit_model",
         "hf_upernet_convnext",
         # its hidden states are collected by forward hooks, which conversion runs
         "hf_pp_lcnet_backbone"]


@pytest.mark.parametrize("case_id", NAMED)
def test_named_transformers_models_convert_exactly(case_id):
    case = CASES[case_id]
    assert_as_expected(case, check_case(case))

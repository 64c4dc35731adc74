"""transformers sweep: every CNN-like vision model class of HuggingFace transformers, held to
docs/design.md P0 like the network sweep (network_check.py).

Models from small configs with random weights (tests/planar3d/hf_networks.py; nothing is
downloaded). Each must compute exactly the reference, at the example's slice size and at a
second one, or be refused where its case says why no exact 3D network exists. Its rows join the
README's network table (scripts/network_table.py).
"""

import pytest
from hf_networks import CASES
from network_check import assert_as_expected, check_case


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(CASES))
def test_transformers_model(case_id):
    case = CASES[case_id]
    assert_as_expected(case, check_case(case))

"""Network sweep: networks people convert beyond classifiers, held to docs/design.md P0.

Each case (tests/planar3d/networks.py) is converted in planar mode and must either compute
exactly the reference (eval outputs on distinct and depth-constant volumes at the example's
slice size and at a second one, copies, one train step's loss, gradients and buffers, one random
draw per slice; see network_check.py), or be refused with UnsupportedModuleError when its case
says why no exact 3D network exists. The README's table of this sweep is built from the results
by scripts/network_table.py.
"""

import pytest
from network_check import assert_as_expected, check_case
from networks import CASES


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(CASES))
def test_network(case_id):
    case = CASES[case_id]
    assert_as_expected(case, check_case(case))

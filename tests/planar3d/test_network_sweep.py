"""Network sweep: networks people convert beyond classifiers, held to docs/design.md P0.

Each case (tests/planar3d/networks.py) is converted in planar mode and must either compute
exactly the reference (eval outputs on distinct and depth-constant volumes, copies, one train
step's loss, gradients and buffers, one random draw per slice; see network_check.py), or be
refused with UnsupportedModuleError when its case says why no exact 3D network exists. The
README's table of this sweep is built from the results by scripts/network_table.py.
"""

import pytest
from network_check import check_case
from networks import CASES


def _explain(record: dict) -> str:
    lines = [f"{record['id']}: {record['outcome']} (expected {record['expected']})",
             f"  {record['detail'][:1200]}"]
    if record["modules"]:
        lines.append(f"  first modules that differ: {record['modules']}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", list(CASES))
def test_network(case_id):
    case = CASES[case_id]
    record = check_case(case)
    if case.refusal:
        assert record["outcome"] == "refused", (
            f"expected UnsupportedModuleError ({case.refusal}); update the case if it now "
            f"converts exactly\n{_explain(record)}")
        assert "Fix:" in record["detail"], f"the refusal names no fix\n{_explain(record)}"
    else:
        assert record["outcome"] == "exact", _explain(record)

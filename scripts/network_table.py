"""Build the README's network-sweep table from the results of the network sweeps.

The sweeps (tests/planar3d/test_network_sweep.py and test_transformers_sweep.py, run by
`make test`) write one JSON file per network to build/networks/. Run:
.venv/bin/python scripts/network_table.py [build/networks]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

SOURCES = ("smp", "monai", "torchvision", "timm", "transformers", "research")
OUTCOMES = {
    "exact": "exact",
    "refused": "refused",
    "error": "ERROR (convert raises, not UnsupportedModuleError)",
    "wrong": "WRONG (converts, computes something else)",
    "crash": "CRASH (converts, then fails)",
}
CHECKS = ("eval outputs on 2 volumes of 3 distinct slices and on a depth-constant volume; "
          "deepcopy and pickle; one train step (loss, every gradient, every buffer); one random "
          "draw per slice; the eval outputs and the train step again at a second slice size "
          "(the column: odd and a multiple of no stride where the 2D network accepts it); all "
          "in float64 against the 2D network on the stacked slices (docs/design.md P0)")


def _cell(text: str, limit: int = 150) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detail(record: dict) -> str:
    """Refusals: the error; wrong/crash/error: the first symptom; expected refusals that convert
    say so."""
    outcome = record["outcome"]
    if outcome == "exact":
        return "expected a refusal: " + record["refusal"] if record["refusal"] else ""
    if outcome == "refused":
        text = record["detail"].removeprefix("cannot convert ")
        return _cell(text if record["refusal"] else "UNEXPECTED: " + text)
    return _cell(record["detail"].split("; ")[0])


def main(folder: Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    if not records:
        raise SystemExit(f"no results in {folder}: run the network sweep first "
                         "(pytest -m slow tests/planar3d/test_network_sweep.py)")
    order = {s: i for i, s in enumerate(SOURCES)}
    records.sort(key=lambda r: (order.get(r["source"], len(order)), r["id"]))
    counts = Counter(r["outcome"] for r in records)
    passed = sum(r["outcome"] == r["expected"] for r in records)
    summary = (f"{len(records)} networks: " + ", ".join(
        f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
        + f"; {passed} as expected (exact, or refused where no exact 3D network exists).")
    lines = ["| case | source | model | input | second size | outcome | detail |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['id']} | {r['source']} | `{r['model']}` | {r['input']} | "
                     f"{r.get('second_size') or '-'} | {OUTCOMES[r['outcome']]} | "
                     f"{detail(r)} |")
    return "\n".join([summary, "", f"What each row checks: {CHECKS}.", "", *lines])


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/networks")))

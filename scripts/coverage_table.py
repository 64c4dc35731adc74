"""Build the README's coverage table from the results of the coverage sweep.

The sweep (tests/planar3d/test_model_zoo.py, run by `make test`) writes one JSON file per model
to build/coverage/. Run:  .venv/bin/python scripts/coverage_table.py [build/coverage]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODES = ("planar", "center", "inflate", "acs")
CHECKS = {
    "planar": "P1 at every module, head = 2D head on pooled slices, train-mode gradients and "
              "BatchNorm statistics",
    "center": "P3: equals the planar network",
    "inflate": "P2 at the middle slice of a depth-constant volume, at every module (float64)",
    "acs": "converts and runs (P4 is a layer property, tested by hypothesis)",
    "depth layers": "token models (per-slice token sequences): center mode with a depth "
                    "position embedding and divided depth attention (its count in brackets) "
                    "equals planar at initialisation; — for the others",
}


def cell(entry: dict, mode: str) -> str:
    status = entry["status"]
    if status == "exact":
        if mode == "inflate" and entry.get("p2_depth") is None:
            return "runs (P2 not checked: depth receptive field over 61 slices or 61×64²)"
        return "exact" if mode != "acs" else "runs"
    if status == "unsupported":
        return "refused"
    return "MISMATCH: " + "; ".join(entry.get("problems", []))[:80]


def depth_cell(record: dict) -> str:
    entry = record.get("depth_layers")
    if entry is None:
        return "—"
    if entry["status"] == "unsupported":
        return "refused"
    if entry["status"] != "exact":
        return "MISMATCH: " + "; ".join(entry.get("problems", []))[:80]
    if "attention" in entry["layers"]:
        return f"exact (position, attention ×{entry['attention']})"
    return "exact (position; no attention to divide)"


def reason(record: dict) -> str:
    entry = record["modes"]["planar"]
    return entry.get("reason", "").split(":", 1)[-1].strip()[:110] if (
        entry["status"] == "unsupported") else ""


def main(folder: Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    lines = ["| source | family | model | input | planar | center | inflate | acs | depth layers |",
             "|---|---|---|---|---|---|---|---|---|"]
    refused = []
    for r in sorted(records, key=lambda r: (r["source"], r["family"])):
        cells = [cell(r["modes"][m], m) for m in MODES]
        lines.append(f"| {r['source']} | {r['family']} | `{r['model']}` | {r['size']}² | "
                     + " | ".join(cells) + f" | {depth_cell(r)} |")
        if reason(r):
            refused.append(f"- **{r['family']}** (`{r['model']}`): {reason(r)}")
    exact = sum(r["modes"]["planar"]["status"] == "exact" for r in records)
    mismatched = sum(any(e["status"] == "mismatch" for e in r["modes"].values())
                     or r.get("depth_layers", {}).get("status") == "mismatch" for r in records)
    summary = (f"{len(records)} families: {exact} convert exactly, "
               f"{len(records) - exact - mismatched} are refused with UnsupportedModuleError, "
               f"{mismatched} mismatch.")
    checks = "\n".join(f"- {m}: {c}" for m, c in CHECKS.items())
    return "\n".join([summary, "", "What each cell checks:", checks, "", *lines, "",
                      "Refused families and the error they raise:", *refused])


if __name__ == "__main__":
    print(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/coverage")))

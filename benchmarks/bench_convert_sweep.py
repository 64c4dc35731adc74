"""Conversion time of every network of the family sweep, idle and beside a busy process, and
the memory conversion needs against the 2D network's own forward.

Run:  python benchmarks/bench_convert_sweep.py [--quick] [--families resnet,vgg] [--out FILE]

For each family of the coverage sweep (tests/planar3d/timm_families.txt and
torchvision_families.txt: the registry's smallest model of each timm family, one torchvision
CNN per family), `planar3d.convert(model)` with its default example: the median of --repeats
conversions (after one warm-up), with torch's default thread count, first on an otherwise idle
machine, then while a second process keeps every core busy with matrix products (conversion
sets the thread count it needs itself). Conversion runs on one thread, so its process CPU time
is what it takes on an idle machine even when the machine is shared. Targets: at most 1 s for
every family, 0.5 s for resnet50.

Forward passes: the calls of the network's layers during one conversion (2D and converted,
probes of single modules counted for the layers they run), in units of one 2D forward on
convert's example (counted with a module forward pre-hook, outside planar3d).

Memory: peak resident memory (VmHWM) of a fresh process that builds the model and runs
`convert`, against a fresh process that builds it and runs one forward of the 2D network on the
same example (target: at most 2x), for the --memory models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as common  # first: it configures OpenMP before torch loads it
import torch
from _common import markdown_row, markdown_table

import planar3d
from planar3d import UnsupportedModuleError

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "tests" / "planar3d"
# the registry's smallest model of a family, built smaller where the sweep builds it smaller
SMALLER = {"deepseek_vit": {"depth": 2}}
QUICK = ("resnet", "efficientnet", "convnext", "vgg", "tv/resnet", "tv/densenet")
MEMORY = ("timm/resnet50", "timm/efficientnet_b0", "timm/convnext_tiny", "timm/nasnetalarge",
          "timm/swinv2_tiny_window8_256")
BUSY = """
import torch
a = torch.randn(1024, 1024)
while True:
    a = (a @ a).tanh()
"""


def families() -> dict[str, tuple[str, str, dict]]:
    """label -> (source, model name, keyword arguments)."""
    found = {}
    for source, file in (("timm", "timm_families.txt"), ("tv", "torchvision_families.txt")):
        for line in (FAMILIES / file).read_text().splitlines():
            if line and not line.startswith("#"):
                family, name = line.split()
                label = family if source == "timm" else f"tv/{family}"
                found[label] = (source, name, SMALLER.get(family, {}) if source == "timm" else {})
    return found


def build(source: str, name: str, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **kwargs).eval()
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def convert_seconds(model: torch.nn.Module, repeats: int) -> tuple[float, float, str, tuple]:
    """Median wall-clock and process CPU seconds of `convert`, its outcome, the example's shape.

    Conversion runs on one thread, so its CPU time is the wall-clock time it takes on an idle
    machine, whatever else is running."""
    walls, cpus, outcome, shape = [], [], "converts", ()
    for i in range(repeats + 1):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            converted = planar3d.convert(model)
            shape = planar3d.conversion_report(converted).example_shape
        except UnsupportedModuleError:
            outcome = "refused"
        except Exception as error:  # reported in the table, not raised
            outcome = f"error: {type(error).__name__}"
        if i:  # the first run warms up allocators and caches
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), outcome, shape


def forward_seconds(model: torch.nn.Module, shape: tuple, repeats: int) -> float:
    """Median CPU seconds of one 2D forward (no grad, one thread, as `convert` runs) on a batch
    of convert's example shape: the unit `convert`'s own cost is counted in (it runs the network
    in eval and train mode, 2D and converted, on that example)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = torch.randn(shape)
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                cpu = time.process_time()
                model(batch)
                if i:
                    times.append(time.process_time() - cpu)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def _leaf_calls(run) -> int:
    """How many times modules without children (the network's layers) are called while `run()`
    runs."""
    calls = [0]

    def count(module, args):
        if next(module.children(), None) is None:
            calls[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        run()
    finally:
        handle.remove()
    return calls[0]


def forward_passes(model: torch.nn.Module, shape: tuple) -> float:
    """How many forward passes of the network one `convert` runs: the calls of its layers
    during the conversion (the 2D network's and the converted one's, probes of single modules
    included for the layers they run), in units of one 2D forward on convert's example."""
    during = _leaf_calls(lambda: planar3d.convert(model))
    with torch.no_grad():
        one = _leaf_calls(lambda: model(torch.randn(shape)))
    return during / max(one, 1)


def peak_mb(source: str, name: str, kwargs: dict, what: str) -> float:
    """Peak resident memory (MiB) of a fresh process building the model, then running `what`
    ("convert", or "forward": the 2D network on convert's default example)."""
    code = f"""
import sys, torch, planar3d
sys.path.insert(0, {str(Path(__file__).parent)!r})
from bench_convert_sweep import build
from planar3d._example import example_call
model = build({source!r}, {name!r}, {kwargs!r})
example = example_call(model, None)[0][0]
if {what!r} == "convert":
    planar3d.convert(model, example_input=example)
else:
    with torch.no_grad():
        model(example)
# VmHWM: this process' own peak (ru_maxrss would carry the parent's peak over the exec)
print(next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM")) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few families only")
    parser.add_argument("--families", default="", help="comma-separated family labels")
    parser.add_argument("--repeats", type=int, default=3, help="timed conversions per family")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-machine column")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON results")
    parser.add_argument("--memory-only", action="store_true", help="only the memory table")
    args = parser.parse_args(argv)
    table = families()
    chosen = [f for f in args.families.split(",") if f] or (
        [f for f in table if f in QUICK] if args.quick else list(table))
    where = (f"CPU {common.cpu_name()}, torch {torch.__version__}, default threads "
             f"({torch.get_num_threads()}), median of {args.repeats} conversions")
    print(f"## conversion time of the sweep's networks\n{where}", flush=True)
    results = {}
    for busy in () if args.memory_only else (False,) if args.no_busy else (False, True):
        neighbour = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
        try:
            for label in chosen:
                source, name, kwargs = table[label]
                model = build(source, name, kwargs)
                wall, cpu, outcome, shape = convert_seconds(model, args.repeats)
                entry = results.setdefault(label, {"model": name, "outcome": outcome,
                                                   "example": shape,
                                                   "modules": sum(1 for _ in model.modules())})
                entry["busy" if busy else "idle"] = wall
                entry.setdefault("cpu", cpu)
                if shape and "forward" not in entry:
                    entry["forward"] = forward_seconds(model, shape, args.repeats)
                    entry["passes"] = forward_passes(model, shape)
                print(label, entry, flush=True)
        finally:
            if neighbour is not None:
                neighbour.kill()
    headers = ["family", "model", "modules", "example", "outcome", "convert CPU (s)",
               "convert wall (s)", "wall, busy neighbour (s)", "2D forward (s)",
               "convert / forward", "forward passes"]
    rows = [[label, e["model"], e["modules"], "x".join(map(str, e["example"])) or "-",
             e["outcome"], f"{e['cpu']:.2f}", f"{e['idle']:.2f}",
             f"{e['busy']:.2f}" if "busy" in e else "-",
             f"{e['forward']:.3f}" if "forward" in e else "-",
             f"{e['cpu'] / e['forward']:.0f}" if e.get("forward") else "-",
             f"{e['passes']:.1f}" if "passes" in e else "-"]
            for label, e in results.items()]
    cpu = [e["cpu"] for e in results.values()] or [0.0]
    passes = [e["passes"] for e in results.values() if "passes" in e] or [0.0]
    summary = "" if not results else (
               f"{len(cpu)} networks, CPU seconds (one thread: the wall-clock time on an idle "
               f"machine): median {statistics.median(cpu):.2f} s, {sum(t <= 1.0 for t in cpu)} "
               f"within 1 s, slowest {max(results, key=lambda k: results[k]['cpu'])} "
               f"({max(cpu):.2f} s); forward passes per conversion: median "
               f"{statistics.median(passes):.1f}, {min(passes):.1f} to {max(passes):.1f}, "
               f"{sum(p <= 6 for p in passes)} at most 6")
    memory_rows = []
    for label in () if args.quick else MEMORY:
        source, model_name = label.split("/")
        name = model_name
        kwargs = SMALLER.get(model_name, {})
        forward = peak_mb(source, name, kwargs, "forward")
        convert = peak_mb(source, name, kwargs, "convert")
        memory_rows.append([label, f"{forward:.0f}", f"{convert:.0f}",
                            f"{convert / forward:.2f}"])
        print(markdown_row(memory_rows[-1]), flush=True)
    text = "\n".join([
        "### conversion time", where, "", markdown_table(headers, rows), "", summary, "",
        "### conversion memory (peak RSS of a fresh process, MiB)", "",
        markdown_table(["model", "2D forward", "convert", "ratio"], memory_rows)])
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return text


if __name__ == "__main__":
    main(sys.argv[1:])

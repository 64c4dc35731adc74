"""Shared pieces of the benchmark scripts: models, interleaved timing, memory, CLI, tables.

Every figure is a ratio against a baseline measured in the same process: the candidates run in
rounds (one run of each per round, in a fresh random order), so load from other processes hits
all of them alike, and a ratio is the median over rounds of the per-round ratio.

Import this module before torch: it makes OpenMP threads wait passively (unless
OMP_WAIT_POLICY is set). Spinning threads that wait for a descheduled peer made CPU wall-clock
times vary tenfold on a shared machine (an A/A ratio of one model against itself spread from 0.1
to 4); with passive waiting that spread is a few percent.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import gc
import platform
import random
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# The benchmarked models: name -> factory of the 2D network (random weights, no hub needed).
MODELS: dict[str, Callable[[], nn.Module]] = {}


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name)
    return build


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)()
    return build


for _name in ("resnet50", "vgg16", "efficientnet_b0", "convnext_tiny"):
    MODELS[f"timm/{_name}"] = _timm(_name)
for _name in ("resnet18", "mobilenet_v3_large"):
    MODELS[f"tv/{_name}"] = _torchvision(_name)

QUICK_MODELS = ("tv/resnet18", "timm/efficientnet_b0")

Step = Callable[[], None]


def build_model(name: str, *, seed: int = 0) -> nn.Module:
    """The 2D model `name` of MODELS with seeded random weights."""
    torch.manual_seed(seed)
    return MODELS[name]()


def fold_slices(x: torch.Tensor) -> torch.Tensor:
    """(N, C, D, H, W) -> the N*D slices (N*D, C, H, W), a contiguous copy."""
    n, c, d, h, w = x.shape
    return x.transpose(1, 2).reshape(n * d, c, h, w).contiguous()


# -- command line -----------------------------------------------------------------------------

def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes on a 2-core CPU: fewer models, smaller shape")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for torch (default: 2, as in the README's tables)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per measurement (default: 5 with --quick, else 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    parser.add_argument("--amp", action="store_true",
                        help="run every candidate under bf16 autocast")
    parser.add_argument("--compile", action="store_true",
                        help="time every candidate under torch.compile (memory: uncompiled)")


def add_model_and_shape_args(parser: argparse.ArgumentParser, *, quick_models: Sequence[str],
                             shapes: dict[str, tuple], quick_shape: tuple) -> None:
    """--models and --shape, with their defaults in the help."""
    def text(shape: tuple) -> str:
        return " ".join(map(str, shape))

    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None,
                        help="models to run (default: all of them; --quick: "
                        f"{', '.join(quick_models)})")
    parser.add_argument("--shape", type=int, nargs=5, default=None,
                        metavar=("N", "C", "D", "H", "W"),
                        help=f"volume shape (default: {text(shapes['cpu'])} on CPU, "
                        f"{text(shapes['cuda'])} on GPU; --quick: {text(quick_shape)})")


def model_names_and_shape(args: argparse.Namespace, device: torch.device, *,
                          quick_models: Sequence[str], shapes: dict[str, tuple],
                          quick_shape: tuple) -> tuple[list[str], tuple]:
    """The models and the volume shape that --models, --shape and --quick select."""
    shape = tuple(args.shape or (quick_shape if args.quick else shapes[device.type]))
    return args.models or list(quick_models if args.quick else MODELS), shape


def setup(args: argparse.Namespace) -> torch.device:
    """Apply the common options; return the device."""
    torch.set_num_threads(args.threads)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 9
    if args.repeats < 5:
        raise SystemExit(f"--repeats must be at least 5 (medians of >= 5 runs), got {args.repeats}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    return device


def machine(device: torch.device, args: argparse.Namespace) -> str:
    """One line saying where and when the figures were measured."""
    if device.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU {cpu_name()}, {torch.get_num_threads()} threads"
    amp = ", bf16 autocast" if args.amp else ""
    amp += ", torch.compile" if getattr(args, "compile", False) else ""
    return (f"{datetime.date.today().isoformat()}, {where}{amp}, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {args.repeats} timed rounds after "
            f"{args.warmup} warm-up runs")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- running a model ------------------------------------------------------------------------

def autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def make_step(model: nn.Module, x: torch.Tensor, *, train: bool, amp: bool,
              compile: bool = False) -> Step:
    """One pass: eval forward under no_grad, or train forward + backward of the output's sum;
    with `compile`, of `torch.compile(model)` (the warm-up runs compile it)."""
    model.train(train)
    if compile:
        model = torch.compile(model, dynamic=False)
    ctx = autocast(x.device, amp)
    if not train:
        def forward() -> None:
            with torch.no_grad(), ctx:
                model(x)
        return forward

    def forward_backward() -> None:
        with ctx:
            out = model(x)
        out.float().sum().backward()
        model.zero_grad(set_to_none=True)  # every pass allocates its gradients; none are kept
    return forward_backward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Ratio:
    """A time ratio by wall clock and, on CPU, by this process's CPU time."""

    wall: float
    cpu: float | None

    def format(self, target: float | None = None) -> str:
        text = fmt_ratio(self.wall, target)
        return text if self.cpu is None else f"{text} ({fmt_ratio(self.cpu, target)})"


@dataclass
class Times:
    """Seconds per run of every candidate, by wall clock and by process CPU time.

    With OpenMP threads waiting passively, CPU time counts the work the threads did and not
    the time they waited for a core, so load from other processes cannot stretch it: on a
    shared machine its ratios are the stable ones. On CUDA it measures only the host side and
    is not reported.
    """

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    device: torch.device

    def median(self, name: str) -> float:
        return statistics.median(self.wall[name])

    def ratio(self, num: str, den: str) -> Ratio:
        """Median over rounds of time(num) / time(den) measured in the same round."""
        def paired(times: dict[str, list[float]]) -> float:
            return statistics.median(a / b for a, b in zip(times[num], times[den]))

        return Ratio(paired(self.wall), paired(self.cpu) if self.device.type == "cpu" else None)


def interleaved_times(steps: dict[str, Step], *, repeats: int, warmup: int,
                      device: torch.device) -> Times:
    """Time every step in rounds, one run of each per round in a fresh random order.

    A fixed order (even rotated) gives each candidate the same predecessor round after round,
    and what a run leaves behind (freed memory, caches) biased its successor by up to 10%.
    """
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
    times = Times({name: [] for name in names}, {name: [] for name in names}, device)
    order = random.Random(0)
    for _ in range(repeats):
        for name in order.sample(names, len(names)):
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            _sync(device)
            times.cpu[name].append(time.process_time() - cpu)
            times.wall[name].append(time.perf_counter() - wall)
    return times


# -- memory ---------------------------------------------------------------------------------

def _storages(tensors: Iterable[torch.Tensor]) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages that ops create while the mode is active.

    Storages that exist beforehand (parameters, buffers, the input: `existing`) are not counted
    when an op returns a view of them.
    """

    def __init__(self, existing: set[int]) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen = set(existing)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage.data_ptr()
        if key in self.seen or storage.nbytes() == 0:
            return
        self.seen.add(key)
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        self.seen.discard(key)
        self.live -= nbytes


def _saved_bytes(model: nn.Module, x: torch.Tensor, amp: bool) -> int:
    """Bytes of the distinct storages autograd saves for backward, parameters excluded."""
    params = _storages(model.parameters())
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    model.train(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(x.device, amp):
        out = model(x)
    del out
    return sum(saved.values())


def memory_bytes(model: nn.Module, x: torch.Tensor, *, train: bool, amp: bool) -> int:
    """The memory figure of one pass.

    CUDA: peak `torch.cuda.max_memory_allocated` of the pass above what was allocated before it.
    CPU, train: bytes of the tensors saved for backward (distinct storages, parameters excluded).
    CPU, eval: peak bytes of the live tensors that the forward creates.
    """
    gc.collect()
    if x.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        make_step(model, x, train=train, amp=amp)()
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    if train:
        return _saved_bytes(model, x, amp)
    model.train(False)
    existing = _storages([*model.parameters(), *model.buffers(), x])
    with torch.no_grad(), _LiveBytes(existing) as tracker, autocast(x.device, amp):
        model(x)
    return tracker.peak


_COPIES = (torch.ops.aten.copy_, torch.ops.aten.clone, torch.ops.aten._to_copy)


class _CopiedBytes(TorchDispatchMode):
    """Bytes written by the copy ops (copy_, clone, _to_copy) dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in _COPIES:
            self.bytes += out.numel() * out.element_size()
        return out


def copied_bytes(model: nn.Module, x: torch.Tensor, *, train: bool, amp: bool) -> int:
    """Bytes copied in one pass: layout conversions (and autocast's casts), none of them FLOPs.

    Unlike time, a count that load on the machine cannot blur.
    """
    step = make_step(model, x, train=train, amp=amp)
    with _CopiedBytes() as counter:
        step()
    return counter.bytes


# -- output ---------------------------------------------------------------------------------

def markdown_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(v) for v in cells) + " |"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [markdown_row(headers), "|" + "---|" * len(headers)]
    return "\n".join(lines + [markdown_row(row) for row in rows])


def fmt_ratio(value: float, target: float | None = None) -> str:
    text = f"{value:.2f}"
    return f"**{text}**" if target is not None and value > target else text


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def fmt_mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f}"

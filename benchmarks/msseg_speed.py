"""msseg at the paper's full size: seconds per training step and epoch, per-scan inference, memory.

Run:  python benchmarks/msseg_speed.py [--device cpu|cuda] [--recipe paper|real] [--quick] [--tiny]

The model is the paper's planar res-u-net (VGG-16 encoder and bottleneck frozen, 22,870,881
parameters; random weights: the speed does not depend on them), batch (2, 3, 16, 256, 256): the
paper's 16-slice slabs of 256³ cubes, or the real-data recipe's 16 x 256² windows (`--recipe
real`, the same input shape).
- Training: `--steps` optimizer steps (BCE − Dice + 1, Adam) after one warm-up step; an epoch is
  extrapolated as the paper's: 11 training scans of centre 01's size (144 x 512 x 512 voxels of
  1.2 x 0.5 x 0.5 mm) cut by the recipe (paper: 31 slabs of the 256³ cube each, so 171 steps of
  batch 2; real: the windows of its 0.5 mm working grid), plus the forward passes over one
  validation scan. On the CPU this extrapolation is the only way to get an epoch figure in
  minutes; the script says so in its output.
- Inference per scan: the forward passes over one such scan's slabs or windows (batch 2), plus
  the pipeline around them (`predict_scan` with a stand-in network): resampling to the working
  grid, recomposition or window blending, the way back to the scan's grid.
- `--compile`: the last configuration again under `torch.compile` (its warm-up step compiles).
- Memory: CUDA: `torch.cuda.max_memory_allocated` over a training step. CPU: the estimate of
  `msseg.model.memory` (parameters, gradients, Adam moments and the tensors autograd saves),
  which is what must fit on an 11 GB card; it leaves out the backward pass' transient buffers.
Every configuration runs in the same process; the ratio column compares it with the first
(fp32, contiguous memory), and the paper's figures (GTX 1080 Ti / RTX 2080 Ti, 11 GB) stand
beside the results. `--tiny` runs every step on a tiny network and 16³ cubes: a dry run whose
figures mean nothing (the test suite runs it).
"""

from __future__ import annotations

import os

# On a shared CPU, OpenMP threads that spin while a peer is descheduled make wall-clock times
# vary tenfold; passive waiting must be chosen before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from msseg.config import preset, recipe_named
from msseg.data.preprocess import plan_grid
from msseg.data.slab_dataset import samples_per_volume
from msseg.inference.predict import predict_scan
from msseg.io.discovery import ScanRecord
from msseg.io.nifti import Scan
from msseg.io.orientation import Geometry
from msseg.model.encoder import RandomEncoderWarning
from msseg.model.losses import bce_dice_loss
from msseg.model.memory import GiB, measure_training_memory
from msseg.model.resunet import build_model
from msseg.training.engine import make_optimizer

PAPER_EPOCH_S = (100, 120)  # paper §3.6, 11 GB GTX 1080 Ti / RTX 2080 Ti
PAPER_SCAN_S = 15
PAPER_GPU_GIB = 11
TRAINING_SCANS = 11  # the paper's cross-validation rounds train on 11 scans
NATIVE_SHAPE = (144, 512, 512)  # centre 01
NATIVE_VOXEL_MM = (1.2, 0.5, 0.5)
# --tiny: a dry run of every step (the test suite's settings for a network that trains in
# seconds on a CPU)
TINY = dict(encoder="test_resnet", encoder_stages=2, bottleneck_filters=8,
            decoder_filters=(8, 8), volume_size=16, slab=8, slab_step=4, train_bottleneck=True)
TINY_NATIVE_SHAPE = (12, 20, 20)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_seconds(model, batch, target, device, amp_dtype, steps: int, config
                       ) -> tuple[float, int]:
    """Median seconds of `steps` training steps after one warm-up; peak CUDA bytes (0 on CPU)."""
    optimizer, _ = make_optimizer(model, config)
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with autocast:
            logits = model(batch)
        loss = bce_dice_loss(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return float(np.median(times)), peak


@torch.inference_mode()
def forward_seconds(model, batch, device, amp_dtype, repeats: int) -> float:
    """Median seconds of an eval forward pass of `batch` (after one warm-up)."""
    model.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    times = []
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        with autocast:
            torch.sigmoid(model(batch))
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    model.train()
    return float(np.median(times))


def native_geometry(shape: tuple[int, int, int]) -> Geometry:
    """A scan of `shape` with centre 01's voxel size."""
    return Geometry.from_affine(shape, np.diag([*NATIVE_VOXEL_MM, 1.0]))


def pipeline_seconds(config, shape: tuple[int, int, int]) -> float:
    """The per-scan work around the network, on the CPU: the one prediction path
    (`msseg.inference.predict.predict_scan`: scan -> working volume -> slabs or windows ->
    recomposed volume -> native grid -> mask) with a stand-in network (a sigmoid) that costs
    nothing."""
    rng = np.random.default_rng(0)
    flair = rng.random(shape, dtype=np.float32)
    geometry = native_geometry(shape)
    record = ScanRecord("bench", None, Path("bench.nii.gz"), None)
    scan = Scan(record=record, flair=flair, mask=None, geometry=geometry)
    start = time.perf_counter()
    predict_scan(scan, torch.sigmoid, config=config)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true",
                        help="one timed step and one forward per configuration (CPU: ~5 min)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (default 3)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the last configuration under torch.compile")
    parser.add_argument("--tiny", action="store_true",
                        help="a dry run of every step on a tiny network (figures mean nothing)")
    parser.add_argument("--recipe", choices=("paper", "real"), default="paper",
                        help="paper: 256³ cubes, whole-plane slabs (default); real: the "
                             "real-data recipe, 16 x 256² windows of the 0.5 mm grid")
    args = parser.parse_args(argv)
    native = TINY_NATIVE_SHAPE if args.tiny else NATIVE_SHAPE
    if args.recipe == "paper":
        config = preset("paper", **TINY) if args.tiny else preset("paper")
    else:
        tiny = {**TINY, "window": TINY["volume_size"]} if args.tiny else {}
        config = preset("real", spacing_mm=min(NATIVE_VOXEL_MM), **tiny)
    working = plan_grid(native_geometry(native), config.pipeline).shape
    per_scan = samples_per_volume(working, config)
    steps_per_epoch = -(-TRAINING_SCANS * per_scan // config.batch_size)
    val_batches = -(-per_scan // config.batch_size)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available; use --device cpu")
    steps = 1 if args.quick or args.tiny else args.steps
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    configs = [("fp32", None, False, False), ("fp32 channels_last_3d", None, True, False)]
    if bf16:
        configs.append(("bf16 channels_last_3d", torch.bfloat16, True, False))
    if args.compile:
        name, amp_dtype, channels_last, _ = configs[-1]
        configs.append((f"{name} + torch.compile", amp_dtype, channels_last, True))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomEncoderWarning)
        model = build_model(config).to(device)
    shape = (2, 3, *recipe_named(config.recipe).input_shape(config))
    batch = torch.randn(*shape, device=device)
    target = (torch.rand(2, 1, *shape[2:], device=device) > 0.998).float()
    print(f"paper model, {args.recipe} recipe, on {device} ({torch.get_num_threads()} CPU "
          f"threads, torch {torch.__version__}); batch {tuple(batch.shape)}; a scan of "
          f"{native} voxels has a working volume of {working}: {per_scan} network inputs; "
          f"{'quick: 1 timed step' if args.quick else f'{steps} timed steps'}")

    rows = []
    for name, amp_dtype, channels_last, compiled in configs:
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x, y = batch.to(memory_format=fmt), target.to(memory_format=fmt)
        # the first step compiles (warm-up)
        net = torch.compile(model, dynamic=False) if compiled else model
        step, peak = train_step_seconds(net, x, y, device, amp_dtype, steps, config)
        forward = forward_seconds(net, x, device, amp_dtype, steps)
        epoch = steps_per_epoch * step + val_batches * forward
        rows.append((name, step, epoch, val_batches * forward, peak))
        print(f"  {name}: {step:.2f} s/step, forward {forward:.2f} s/batch")
    around = pipeline_seconds(config, native)

    base = rows[0]
    print(f"\nepoch = {steps_per_epoch} training steps + {val_batches} validation forwards, "
          f"extrapolated from the measured step times (no epoch is run in full); per scan = "
          f"{val_batches} forwards of 2 inputs + {around:.1f} s of pipeline on the CPU.\n")
    print("| configuration | s / step | s / epoch | vs first | paper s / epoch | s / scan | "
          "paper s / scan | peak memory |")
    print("|---|---|---|---|---|---|---|---|")
    for name, step, epoch, network, peak in rows:
        memory = f"{peak / GiB:.2f} GiB" if peak else "see estimate"
        print(f"| {name} | {step:.2f} | {epoch:.0f} | {base[2] / epoch:.2f}x | "
              f"{PAPER_EPOCH_S[0]}-{PAPER_EPOCH_S[1]} | {network + around:.1f} | "
              f"{PAPER_SCAN_S} | {memory} |")
    best = min(rows, key=lambda r: r[2])
    print(f"\nbest: {best[0]}: {sum(PAPER_EPOCH_S) / 2 / best[2]:.2f}x the paper's epoch speed, "
          f"{PAPER_SCAN_S / (best[3] + around):.2f}x its per-scan speed (goal on an H200: 10x)")

    print(f"\ntraining memory for batch 2 (what must fit in {PAPER_GPU_GIB} GB; "
          f"`msseg.model.memory`, measured on {device}):")
    model = model.to(memory_format=torch.channels_last_3d)
    for name, amp_dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        estimate = measure_training_memory(model, shape, amp_dtype=amp_dtype)
        verdict = "fits" if estimate.total < PAPER_GPU_GIB * 1e9 else "does NOT fit"
        print(f"  {name}: {estimate.total / GiB:.2f} GiB ({verdict} in {PAPER_GPU_GIB} GB, "
              f"plus the backward pass' transient buffers)")
        print("    " + str(estimate).replace("\n", "\n    "))


if __name__ == "__main__":
    main()

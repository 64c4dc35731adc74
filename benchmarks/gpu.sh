#!/usr/bin/env bash
# Every GPU figure of the project in one run, for a CUDA machine lent for a short time.
#
#   benchmarks/gpu.sh            on a CUDA machine: the figures, as Markdown, in gpu-results.md
#   benchmarks/gpu.sh --dry-run  on any machine: the same steps on the CPU at tiny sizes (the
#                                test suite runs this, so the script is known to work before a
#                                GPU is lent)
#
# 1. planar against the 2D network on the N*D slices (bench_planar.py): time and memory ratios,
#    fp32 and bf16 autocast, contiguous and channels_last_3d, and under torch.compile;
# 2. vision transformers (bench_tokens.py): planar against the 2D ViT on the N*D slices, and the
#    cost of each depth option (depth position, divided depth attention, tubelets);
# 3. the paper's configuration of msseg (msseg_speed.py): a training step, an epoch, the
#    prediction of one scan at 256^3, peak GPU memory; fp32, bf16, torch.compile; then the same
#    with the real-data recipe (16 x 256^2 windows of a 0.5 mm grid).
# Targets: planar <= 1.10x the 2D time and <= 1.05x its memory; an epoch <= 10 s and a scan
# <= 1.5 s on one H200 (>= 10x the paper's 1080 Ti).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
OUT=${OUT:-gpu-results.md}

if [[ "${1:-}" == "--dry-run" ]]; then
    device=cpu
    planar=(--models tv/resnet18 --shape 1 3 2 32 32 --repeats 5 --warmup 1 --threads 1)
    tokens=(--models vit_tiny --shape 1 3 3 32 32 --repeats 5 --warmup 1 --threads 1)
    msseg=(--tiny)
    OUT=${OUT_DRY:-/dev/null}
else
    device=cuda
    planar=(--models timm/resnet50 timm/convnext_tiny tv/resnet18 --repeats 9)
    tokens=(--models vit_small vit_base --repeats 9)
    msseg=(--steps 5)
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

{
    echo "# GPU figures ($(date -u +%F), $device)"
    $PY bench_planar.py --device "$device" "${planar[@]}"
    $PY bench_planar.py --device "$device" "${planar[@]}" --amp
    $PY bench_planar.py --device "$device" "${planar[@]}" --compile
    $PY bench_tokens.py --device "$device" "${tokens[@]}"
    $PY bench_tokens.py --device "$device" "${tokens[@]}" --amp
    $PY msseg_speed.py --device "$device" "${msseg[@]}"
    $PY msseg_speed.py --device "$device" "${msseg[@]}" --compile
    $PY msseg_speed.py --device "$device" "${msseg[@]}" --recipe real
} | tee "$OUT"

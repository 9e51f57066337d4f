#!/usr/bin/env bash
# The GPU measurements the models and scoring issues ask for, as one short run (at most
# 8.5 min: the sum of its commands' time limits; it has never run on a GPU)
# for a session that is lent a GPU machine (15 min of device time in all).
#
#   bash scripts/gpu_check.sh --fetch    # here, once: the wheels the GPU image lacks -> .whl/
#   bash scripts/gpu_check.sh            # there (device run, carry [".whl"]): figures -> $OUT
#
# The GPU image has torch, numpy, scipy, pandas, scikit-image and tqdm, and no internet; guad's
# model code also imports monai, nibabel and pydicom (pure-Python wheels, carried in .whl/).
# It measures, on the GPU under bf16 autocast:
#   - one training iteration of paper-cmm and paper-fgm at batch 1 and 4, with peak GPU memory
#     (benchmarks/bench_train.py), and of the cpu configs at batch 4;
#   - one network call of paper-cmm and paper-fgm at batch 1 and 8, fp32 and bf16, and what the
#     full samplers (400 / 500 calls) cost a scan (benchmarks/bench_inference.py), against the
#     paper's 88 s + 120 s a scan on an RTX 3090; and the shipped cpu models at batch 8 and 32.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl
    for pkg in $(grep -E '^(monai|nibabel|pydicom)==' requirements.txt); do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux2014_x86_64 -d .whl "$pkg" || exit 1
    done
    ls -la .whl
    exit 0
fi

out="${OUT:-runs/gpu_check}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    timeout 150 python3 benchmarks/bench_train.py --configs paper-cmm,paper-fgm --device cuda --precision bf16 --iters 10
    timeout 150 python3 benchmarks/bench_train.py --configs paper-cmm,paper-fgm --device cuda --precision bf16 --iters 10 --batch 4
    timeout 60 python3 benchmarks/bench_train.py --configs cpu-cmm,cpu-fgm --device cuda --precision bf16 --iters 20
    timeout 90 python3 benchmarks/bench_inference.py --device cuda --configs paper-cmm,paper-fgm --batches 1,8 --repeats 10
    timeout 60 python3 benchmarks/bench_inference.py --device cuda --batches 8,32 --repeats 10
} 2>&1 | tee "$out/gpu_check.txt"

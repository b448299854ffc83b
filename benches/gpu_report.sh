#!/usr/bin/env bash
# What a real GPU shows, in one run of under 5 minutes from prebuilt binaries: a GPU machine may
# have no Rust toolchain, so build here and carry the stripped binaries (see the README).
#
# usage: benches/gpu_report.sh [SENET] [KERNELS]
#   SENET    the senet program (default target/release/senet)
#   KERNELS  the kernels bench program (default: the newest target/release/deps/kernels-*),
#            built by `cargo bench --bench kernels --no-run`
# env: TORCH_PY  a python with torch, to run PyTorch's CUDA figures for the same models
#                (bench_torch.py next to this script, or BENCH_TORCH=path); skipped when unset
#      STEP_TIMEOUT  seconds each command may take (default 100)
#
# Prints `senet devices`, `senet selftest --device gpu`, `senet bench --device gpu --profile`
# for senetv2-9 (paper preset) and senetv2-18 (paper preset, cifar stem), the matmul GFLOP/s at
# 4096^3 (with nvidia-smi's view of the card, for its fp32 peak), the GFLOP/s of every conv of
# both models (forward, dx, dw, from the kernels bench), and PyTorch's CUDA figures.
# On lavapipe (no GPU) it runs the same commands at smaller sizes when SMALL=1, which is how CI
# checks that the script works.
set -uo pipefail
cd "$(dirname "$0")/.."
senet=${1:-target/release/senet}
kernels=${2:-$(ls -t target/release/deps/kernels-* 2>/dev/null | grep -v '\.d$' | head -1)}
limit=${STEP_TIMEOUT:-100}
if [[ ${SMALL:-0} == 1 ]]; then batch=8 steps=1 size=256; else batch=128 steps=5 size=4096; fi
status=0

section() { printf '\n== %s ==\n' "$*"; }
run() {
    echo "\$ $*"
    timeout "$limit" "$@" 2> >(grep -v XDG_RUNTIME_DIR >&2)
    local rc=$?
    if ((rc != 0)); then
        echo "(exit status $rc${rc/#124/: ran past ${limit}s})"
        status=1
    fi
}

section "adapters"
run "$senet" devices
section "every GPU kernel against the CPU"
run "$senet" selftest --device gpu
section "senetv2-9, paper preset, batch $batch"
run "$senet" bench --model senetv2 --depth 9 --batch "$batch" --steps "$steps" --device gpu --profile
section "senetv2-18, paper preset with the cifar stem, batch $batch"
run "$senet" bench --model senetv2 --depth 18 --set stem=cifar --batch "$batch" --steps "$steps" --device gpu --profile
section "matmul ${size}^3"
if [[ -n $kernels && -x $kernels ]]; then
    run "$kernels" --device gpu --filter matmul --sizes "$size" --iters 3
else
    echo "no kernels bench program (cargo bench --bench kernels --no-run builds it)"
    status=1
fi
section "conv kernels of senetv2-9 and senetv2-18 (cifar stem) inside a training step, batch $batch"
if [[ -n $kernels && -x $kernels ]]; then
    run "$kernels" --device gpu --filter senetv2 --batch "$batch" --iters "$steps"
fi
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv
fi
section "PyTorch CUDA, same models"
if [[ -n ${TORCH_PY:-} ]]; then
    torch=${BENCH_TORCH:-benches/bench_torch.py}
    run "$TORCH_PY" "$torch" senetv2 9 10 imagenet "$batch" "$steps" cuda
    run "$TORCH_PY" "$torch" senetv2 18 10 cifar "$batch" "$steps" cuda
else
    echo "skipped: set TORCH_PY to a python with torch (and BENCH_TORCH to bench_torch.py)"
fi
exit $status

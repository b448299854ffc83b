#!/usr/bin/env bash
# Run on the lent H200 machine on 2026-12-04 from the repository root, with the device tool's
# carry [.gl, .gpu]: .gl holds the Vulkan loader .debs (see ../.library/device/README.md), .gpu the
# stripped target/release/senet, the kernels bench, bench_torch.py, models_torch.py and
# cifar10-jpeg.tar.gz. Kept here as the record of what produced the figures beside it.
# One device call: the README's GPU report, then one real training epoch on the GPU.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 && [[ -f $icd ]]; then
    export VK_DRIVER_FILES=$icd
    echo "VK_DRIVER_FILES=$icd"
fi
export XDG_RUNTIME_DIR=$(mktemp -d)
chmod +x .gpu/senet .gpu/kernels
date -u
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
STEP_TIMEOUT=70 TORCH_PY=python3 BENCH_TORCH=.gpu/bench_torch.py \
    benches/gpu_report.sh .gpu/senet .gpu/kernels 2>&1 | tee "$OUT/gpu_report.log"
left=$((520 - SECONDS))
echo "== one epoch of senetv2-9 on the real CIFAR-10 images, --device gpu (limit ${left}s) =="
if ((left > 30)); then
    timeout "$left" .gpu/senet train --model senetv2 --depth 9 --dataset imagefolder \
        --data .gpu/cifar10-jpeg.tar.gz --epochs 1 --seed 0 --device gpu --out /tmp/gpu-run \
        2>&1 | tr '\r' '\n' | grep -v XDG_RUNTIME_DIR | tail -40 | tee "$OUT/train.log"
    cp /tmp/gpu-run/metrics.csv /tmp/gpu-run/steps.csv /tmp/gpu-run/config.json "$OUT/" 2>/dev/null
fi
date -u

#!/usr/bin/env bash
# Run on the lent H200 machine on 2026-12-04 from the repository root, with the device tool's
# carry [.gl, .gpu]: .gl holds the Vulkan loader .debs (see ../.library/device/README.md), .gpu the
# stripped target/release/senet, the kernels bench, bench_torch.py, models_torch.py and
# cifar10-jpeg.tar.gz. Kept here as the record of what produced the figures beside it.
# Ablation cells (default k1-r32 and k4-r32, 5 epochs) with seeds 0-2 on the GPU, P at a time,
# each the same trainer and flags as `senet reproduce --study ablation` gives its runs.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=$(mktemp -d)
chmod +x .gpu/senet
P=${P:-2}
deadline=${DEADLINE:-480}
cells=${CELLS:-"1:32 4:32"}
jobs=/tmp/jobs; : > $jobs
for s in 0 1 2; do for c in $cells; do echo "${c%%:*} ${c##*:} $s" >> $jobs; done; done
mkdir -p /tmp/abl
one() {
    k=$1 r=$2 s=$3
    d=/tmp/abl/senetv2-k$k-r$r/seed-$s
    mkdir -p "$(dirname $d)"
    .gpu/senet train --model senetv2 --depth 9 --preset paper --width 64 --set reduction=$r \
        --set cardinality=$k --dataset imagefolder --data .gpu/cifar10-jpeg.tar.gz --epochs 5 \
        --seed $s --device gpu --out $d > $d.log 2>&1
    echo "k$k-r$r seed $s: rc $? at ${SECONDS}s"
}
export -f one
date -u
SECONDS=0
timeout $deadline xargs -P $P -L 1 bash -c 'one "$@"' _ < $jobs
pkill -9 -f "senet train" ; sleep 1
echo "training ended at ${SECONDS}s"
date -u
(cd /tmp/abl && tar czf "$OUT/ablation-gpu.tgz" --exclude='*.safetensors' --exclude='.senet-lock' .)
grep -h "Finished\|error" /tmp/abl/*/*.log | head -30
for m in /tmp/abl/*/seed-*/metrics.csv; do echo "$m: $(tail -1 $m)"; done
# Seed 2 of both cells reached the 480 s deadline after its 4th epoch (checkpoint saved) and was
# finished on the same machine with: senet train --config D/config.json --out D --resume --device gpu

#!/usr/bin/env bash
# H100 call 1: start llama.cpp's CUDA build + bench pipeline in the background (into /tmp/peers), then
# the op parity and stories260K golden tests of the CUDA twin and a first prism bench.
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/hip /tmp/peers/results-cuda /work/wt-hip /work/shared
tar -xJf "$H/bin.tar.xz" -C /tmp/hip
tar -xJf "$H/shared.tar.xz" -C /work/shared
cp -r "$H/peers" /tmp/hip/peers
cp "$H/smol.part1" /tmp/hip/
export PEERS_DIR=/tmp/peers RESULTS=/tmp/peers/results-cuda
/tmp/hip/peers/gpu-unpack.sh "$H/gpu-pack" >/dev/null
( cd /tmp/hip && KEEP_HF=1 TYPES="f16 q8_0 q4_0" BENCH_ARGS="-p 512 -n 128 -r 5 -ngl 99" \
  setsid bash -c '/tmp/hip/peers/llamacpp-cuda-device.sh > /tmp/peers/results-cuda/pipeline.log 2>&1; echo $? > /tmp/peers/DONE' \
  </dev/null >/dev/null 2>&1 & )
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/env.txt
P=/tmp/hip/bin/prism
$P devices 2>&1 | tee -a $OUT/env.txt
$P kernels build --arch sm_90,sm_80 2>&1 | tail -2
$P run --backend cuda -m /work/shared/models/stories260K -n 40 --temperature 0 "Once upon a time" 2>&1 | tail -3
cd /tmp/hip && RUST_BACKTRACE=1 timeout 240 ./bin/hip_ops --test-threads=1 --nocapture gpu_ops gpu_stories missing kernels 2>&1 | tee $OUT/tests1.log | grep -v "^compiled" | tail -60

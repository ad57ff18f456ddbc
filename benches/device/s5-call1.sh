#!/bin/bash
# Final H100 call 1 (session 5): llama.cpp CUDA build + synthetic GGUFs (135M, 1B, 3B; f16, q8_0, q4_0) in
# the background (/tmp/peers); meanwhile correctness of the build: CUDA twin parity + goldens, wgpu parity +
# goldens on Vulkan.
set -uo pipefail
F=$PWD/.dev/fin2
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
mkdir -p /tmp/fin /tmp/peers/results-cuda /work/shared /tmp/peers/llama.cpp-vulkan
tar -xJf $F/bin.tar.xz -C /tmp/fin; tar -xJf $F/shared.tar.xz -C /work/shared
rm -rf /tmp/fin/peers; cp -r $F/peers /tmp/fin/peers; chmod +x /tmp/fin/peers/*.sh
tar -xJf $F/vk-bin.tar.xz -C /tmp/peers/llama.cpp-vulkan
export PEERS_DIR=/tmp/peers RESULTS=/tmp/peers/results-cuda
/tmp/fin/peers/gpu-unpack.sh $F/gpu-pack >/dev/null
rm -f /tmp/peers/DONE
( cd /tmp/fin && SHAPES="smollm2-135m llama-1b llama-3b" TYPES="f16 q8_0 q4_0" BENCH_ARGS="-p 0 -n 1 -r 1 -ngl 99" \
  setsid bash -c '/tmp/fin/peers/llamacpp-cuda-device.sh > /tmp/peers/results-cuda/pipeline.log 2>&1; echo $? > /tmp/peers/DONE' \
  </dev/null >/dev/null 2>&1 & )
mkdir -p /work; [ -e /work/main ] || ln -s $PWD /work/main
mkdir -p target/release && cp /tmp/fin/bin/prism target/release/prism
P=/tmp/fin/bin
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; $P/prism devices; } 2>&1 | tee $OUT/env.txt
echo "== hip_ops (cuda)"; timeout 240 $P/hip_ops --test-threads=1 2>&1 | tee $OUT/hip_ops.log | grep -E "^test |result|panicked|identical" | head -30
echo "== wgpu_ops"; PRISM_REQUIRE_WGPU=1 timeout 120 $P/wgpu_ops 2>&1 | tee $OUT/wgpu_ops.log | grep -E "^test |result|panick" | head -20
echo "== golden"; PRISM_REQUIRE_WGPU=1 timeout 120 $P/golden 2>&1 | tee $OUT/golden.log | grep -E "^test |result|panick" | head -12
for i in $(seq 1 110); do [ -f /tmp/peers/DONE ] && break; sleep 5; done
echo "pipeline rc $(cat /tmp/peers/DONE 2>/dev/null)"; ls -la /tmp/peers/models/ 2>&1 | head -20
tail -3 /tmp/peers/results-cuda/pipeline.log; date -u

#!/bin/bash
# gemm_coop on the H100: parity (wgpu_ops), goldens, then batched decode and prefill timings.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
S=$PWD/.dev/s4; P=/tmp/p; mkdir -p $P /work/shared target/release
xz -dc $S/prism.xz > $P/prism; chmod +x $P/prism; cp $P/prism target/release/prism
tar xJf $S/tests.tar.xz -C $P; tar xJf $S/shared.tar.xz -C /work/shared
[ -e /work/main ] || ln -s $PWD /work/main
tar xJf $S/tok.tar.xz -C $P
( [ -d $P/syn-135m ] || python3 $S/make-synthetic-llama.py --shape smollm2-135m --tokenizer $P/tok --out $P/syn-135m > /dev/null
  [ -d $P/syn-1b ] || python3 $S/make-synthetic-llama.py --shape llama-1b --tokenizer $P/tok --out $P/syn-1b > /dev/null
  touch $P/models.done ) &
$P/prism devices 2>&1 | grep -A1 wgpu
echo "== wgpu_ops"; PRISM_REQUIRE_WGPU=1 timeout 120 $P/wgpu_ops 2>&1 | grep -E "^test |result|panick|nmse|NMSE" | head -30
echo "== golden"; PRISM_REQUIRE_WGPU=1 timeout 120 $P/golden 2>&1 | grep -E "^test |result|panick" | head -12
wait
for m in syn-135m syn-1b; do
  echo "== $m"
  $P/prism bench -m $P/$m --backend wgpu -p 512 -n 64 -b 1,16,32 -r 3 2>&1 | grep -E "wgpu \|"
  for k in 1 2 4; do echo "-- ksplit $k"; PRISM_COOP_KSPLIT=$k $P/prism bench -m $P/$m --backend wgpu -p 512 -n 64 -b 32 -r 2 2>&1 | grep -E "wgpu \|"; done
done
echo "== 1b q4_0/q8_0 b32"
$P/prism bench -m $P/syn-1b --quantize q4_0 --backend wgpu -p 512 -n 64 -b 1,32 -r 2 2>&1 | grep -E "wgpu \|"
echo "== profile 1b b32"
PRISM_PROFILE=1 $P/prism bench -m $P/syn-1b --backend wgpu -p 0 -n 32 -b 32 -r 1 2>&1 | grep -A6 "GPU time"
date -u

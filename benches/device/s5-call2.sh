#!/bin/bash
# Final H100 call 2 (machine warm from call 1): prism bench, CUDA twin and wgpu, llama.cpp CUDA interleaved
# (--peer), ceilings; 3B on the CUDA twin only; llama.cpp Vulkan on the 1B files.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
P=/tmp/fin/bin; M=/tmp/peers/models; L=/tmp/peers/llama.cpp-cuda/bin
date -u | tee $OUT/date.txt
$P/prism bench -m $M/llama-1b-f16.gguf -m $M/llama-1b-q8_0.gguf -m $M/llama-1b-q4_0.gguf -m $M/smollm2-135m-f16.gguf -m $M/smollm2-135m-q8_0.gguf -m $M/smollm2-135m-q4_0.gguf \
  --backend cuda,wgpu -p 512 -n 128 -b 1 -r 3 --ceilings --peer cuda:llama.cpp=$L \
  --csv $OUT/h100.csv --plot $OUT/h100-comparison.svg 2>$OUT/bench.err | tee $OUT/h100.md
tail -3 $OUT/bench.err
for m in f16 q8_0 q4_0; do
  echo "== llama.cpp vulkan 1b $m"
  GGML_VK_VISIBLE_DEVICES=0 /tmp/peers/llama.cpp-vulkan/bin/llama-bench -m $M/llama-1b-$m.gguf -p 512 -n 128 -r 3 -ngl 99 2>&1 | grep -E "^\| llama"
done | tee $OUT/vulkan.md
$P/prism bench -m $M/llama-3b-f16.gguf -m $M/llama-3b-q8_0.gguf -m $M/llama-3b-q4_0.gguf \
  --backend cuda -p 512 -n 128 -b 1 -r 3 --ceilings --peer cuda:llama.cpp=$L --csv $OUT/h100-3b.csv 2>$OUT/bench3.err | tee $OUT/h100-3b.md
tail -3 $OUT/bench3.err
date -u

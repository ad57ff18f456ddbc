#!/bin/bash
# wgpu (final build) beside llama.cpp Vulkan, same GGUFs, alternating per model, quiet machine.
exec > >(tee $OUT/run9.log) 2>&1
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
G=$PWD/.dev/gpu; P=/tmp/p; mkdir -p $P/vk
xz -dc $G/prism.xz > $P/prism; chmod +x $P/prism
tar xJf $G/tok.tar.xz -C $P; tar xJf $G/vk-bin.tar.xz -C $P/vk; tar xJf $G/llama.cpp-src.tar.xz -C $P
[ -d $P/llama-1b ] || python3 $G/make-synthetic-llama.py --shape llama-1b --tokenizer $P/tok --out $P/llama-1b > /dev/null
[ -f $P/l1b-f16.gguf ] || python3 $P/llama.cpp-src/convert_hf_to_gguf.py $P/llama-1b --outfile $P/l1b-f16.gguf --outtype f16 > $P/convert.log 2>&1 || tail -5 $P/convert.log
for q in q8_0 q4_0; do [ -f $P/l1b-$q.gguf ] || $P/vk/bin/llama-quantize $P/l1b-f16.gguf $P/l1b-$q.gguf $q > /dev/null 2>&1; done
date -u; uptime
for m in f16 q8_0 q4_0; do
  for round in 1 2; do
    echo "== prism wgpu $m round $round: $($P/prism bench -m $P/l1b-$m.gguf --backend wgpu -p 512 -n 128 -r 3 2>&1 | grep -E 'wgpu \| (pp|tg)' | tr '\n' ' ')"
    echo "== llama.cpp vulkan $m round $round:"; GGML_VK_VISIBLE_DEVICES=0 $P/vk/bin/llama-bench -m $P/l1b-$m.gguf -p 512 -n 128 -r 3 -ngl 99 2>&1 | grep -E "^\| llama"
  done
done
date -u; uptime

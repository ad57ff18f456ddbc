#!/bin/bash
# H100 (run through the device tool, payload in .dev/gpu: prism.xz, tok.tar.xz, vk-bin.tar.xz, llama.cpp-src.tar.xz, make-synthetic-llama.py, server-throughput.sh): prism wgpu beside llama.cpp Vulkan (same GGUFs, same run), then server throughput at
# 1/8/32 streams on the CUDA twin and on wgpu.
exec > >(tee $OUT/run4.log) 2>&1
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
G=$PWD/.dev/gpu; P=/tmp/p; mkdir -p $P/vk target/release benches
xz -dc $G/prism.xz > $P/prism; chmod +x $P/prism; cp $P/prism target/release/prism
cp $G/server-throughput.sh $G/stream_client.py benches/
tar xJf $G/tok.tar.xz -C $P; tar xJf $G/vk-bin.tar.xz -C $P/vk; tar xJf $G/llama.cpp-src.tar.xz -C $P
[ -d $P/syn-135m ] || python3 $G/make-synthetic-llama.py --shape smollm2-135m --tokenizer $P/tok --out $P/syn-135m > /dev/null
[ -d $P/llama-1b ] || python3 $G/make-synthetic-llama.py --shape llama-1b --tokenizer $P/tok --out $P/llama-1b > /dev/null
python3 $P/llama.cpp-src/convert_hf_to_gguf.py $P/llama-1b --outfile $P/l1b-f16.gguf --outtype f16 > $P/convert.log 2>&1 || tail -5 $P/convert.log
for q in q8_0 q4_0; do $P/vk/bin/llama-quantize $P/l1b-f16.gguf $P/l1b-$q.gguf $q > /dev/null 2>&1; done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
for m in f16 q8_0 q4_0; do
  echo "== prism wgpu $m"
  $P/prism bench -m $P/l1b-$m.gguf --backend wgpu -p 512 -n 128 -r 5 2>&1 | grep -E "^\| (pp|tg)|rror"
  echo "== llama.cpp vulkan $m"
  GGML_VK_VISIBLE_DEVICES=0 $P/vk/bin/llama-bench -m $P/l1b-$m.gguf -p 512 -n 128 -r 5 -ngl 99 2>&1 | grep -E "^\| llama"
done
for be in cuda wgpu; do
  echo "== server throughput syn-135m f16 @$be:0"
  timeout 150 bash benches/server-throughput.sh --model $P/syn-135m@$be:0 --max-tokens 64 --reps 1 2>&1 | tail -6
done

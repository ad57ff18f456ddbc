#!/bin/bash
# Server throughput at 1/8/32 streams on the H100 (CUDA twin and wgpu), synthetic 135M f16, final build.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
G=$PWD/.dev/gpu; P=/tmp/p; mkdir -p $P target/release benches
xz -dc $G/prism.xz > target/release/prism; chmod +x target/release/prism
cp $G/server-throughput.sh $G/stream_client.py benches/
tar xJf $G/tok.tar.xz -C $P
[ -d $P/syn-135m ] || python3 $G/make-synthetic-llama.py --shape smollm2-135m --tokenizer $P/tok --out $P/syn-135m > /dev/null
date -u
for be in cuda wgpu; do
  echo "== server throughput syn-135m f16 @$be:0"
  timeout 200 bash benches/server-throughput.sh --model $P/syn-135m@$be:0 --max-tokens 64 --reps 3 2>&1 | tail -5
done
date -u

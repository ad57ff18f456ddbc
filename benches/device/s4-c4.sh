#!/bin/bash
# Issue 8 on the H100: server throughput at 1/8/32 streams (CUDA twin and wgpu), prism bench b=1,8,32.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
S=$PWD/.dev/s4; P=/tmp/p; mkdir -p $P target/release benches
xz -dc $S/prism.xz > $P/prism; chmod +x $P/prism; cp $P/prism target/release/prism
cp $S/server-throughput.sh $S/stream_client.py benches/
tar xJf $S/tok.tar.xz -C $P
[ -d $P/syn-135m ] || python3 $S/make-synthetic-llama.py --shape smollm2-135m --tokenizer $P/tok --out $P/syn-135m > /dev/null
[ -d $P/syn-1b ] || python3 $S/make-synthetic-llama.py --shape llama-1b --tokenizer $P/tok --out $P/syn-1b > /dev/null
command -v cargo >/dev/null || { mkdir -p /tmp/bin; printf "#!/bin/sh\nexit 0\n" > /tmp/bin/cargo; chmod +x /tmp/bin/cargo; export PATH=/tmp/bin:$PATH; }
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for be in cuda wgpu; do
  echo "== server throughput syn-135m f16 @$be:0"
  timeout 200 bash benches/server-throughput.sh --model $P/syn-135m@$be:0 --max-tokens 64 --reps 3 2>&1 | tail -5
done
echo "== bench"
$P/prism bench -m $P/syn-135m -m $P/syn-1b --backend cuda,wgpu -p 0 -n 64 -b 1,8,32 -r 3 2>&1 | grep -E "\| (cuda|wgpu) \|"
date -u

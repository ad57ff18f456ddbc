#!/usr/bin/env bash
# H100, one call: llama.cpp's CUDA build + bench pipeline in the background (into /tmp/peers), the CUDA
# twin's op parity, argument and stories260K golden tests meanwhile, then prism bench on the very same
# GGUFs (f16, q8_0, q4_0 of 135M/1B/3B), pp512 + tg128, 5 reps, once the GPU is free.
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/hip /tmp/peers/results-cuda /work/wt-hip /work/shared
tar -xJf "$H/bin.tar.xz" -C /tmp/hip
tar -xJf "$H/shared.tar.xz" -C /work/shared
cp -r "$H/peers" /tmp/hip/peers
export PEERS_DIR=/tmp/peers RESULTS=/tmp/peers/results-cuda
/tmp/hip/peers/gpu-unpack.sh "$H/gpu-pack" >/dev/null
( cd /tmp/hip && TYPES="f16 q8_0 q4_0" BENCH_ARGS="-p 512 -n 128 -r 5 -ngl 99" \
  setsid bash -c '/tmp/hip/peers/llamacpp-cuda-device.sh > /tmp/peers/results-cuda/pipeline.log 2>&1; echo $? > /tmp/peers/DONE' \
  </dev/null >/dev/null 2>&1 & )
P=/tmp/hip/bin/prism
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; $P devices; } 2>&1 | tee $OUT/env.txt
RUST_LOG=prism=debug $P run --backend cuda -m /work/shared/models/stories260K -n 40 --temperature 0 "Once upon a time" 2>&1 | grep -c "captured a graph" | sed 's/^/graphs captured: /'
cd /tmp/hip && timeout 200 ./bin/hip_ops --test-threads=1 --nocapture gpu_ops gpu_bad gpu_stories missing kernels 2>&1 | tee $OUT/tests.log | grep -E "^test |result|panicked|failed|nmse|identical" | head -40
for i in $(seq 1 110); do [ -f /tmp/peers/DONE ] && break; sleep 5; done
echo "pipeline rc $(cat /tmp/peers/DONE 2>/dev/null)"
for s in smollm2-135m llama-1b llama-3b; do for t in f16 q8_0 q4_0; do
  m=/tmp/peers/models/$s-$t.gguf
  $P bench --backend cuda -m $m -p 512 -n 128 -r 5 --json > /tmp/hip/prism-$s-$t.json 2>/tmp/hip/prism-$s-$t.err || tail -3 /tmp/hip/prism-$s-$t.err
  python3 -c "import json,sys; [print('$s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('/tmp/hip/prism-$s-$t.json'))]"
done; done | tee $OUT/prism.txt
grep -E "tg128|pp512" /tmp/peers/results-cuda/summary.md | cut -d'|' -f2,9,10,11,12,15,16
cd /tmp && tar czf $OUT/results-cuda.tgz -C /tmp/peers results-cuda && tar czf $OUT/prism-json.tgz -C /tmp/hip $(cd /tmp/hip && ls prism-*.json)

#!/usr/bin/env bash
# H100 call 2 (machine still warm): SmolLM2 golden on the CUDA twin, then, once the llama.cpp pipeline is
# done, prism bench on the very same GGUFs (f16, q8_0, q4_0 of 135M/1B/3B), pp512 + tg128, 5 reps.
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd)
mkdir -p /root/.cache/prism/models
cat /tmp/hip/smol.part1 "$H/smol.part2" > /root/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf
cd /tmp/hip && timeout 200 ./bin/hip_ops --test-threads=1 --nocapture gpu_smollm2 2>&1 | tee $OUT/tests2.log | tail -15
for i in $(seq 1 100); do [ -f /tmp/peers/DONE ] && break; sleep 5; done
echo "pipeline rc $(cat /tmp/peers/DONE 2>/dev/null)"; tail -5 /tmp/peers/results-cuda/pipeline.log
P=/tmp/hip/bin/prism
for s in smollm2-135m llama-1b llama-3b; do for t in f16 q8_0 q4_0; do
  m=/tmp/peers/models/$s-$t.gguf
  $P bench --backend cuda -m $m -p 512 -n 128 -r 5 --json > /tmp/hip/prism-$s-$t.json 2>/tmp/hip/prism-$s-$t.err || tail -3 /tmp/hip/prism-$s-$t.err
  python3 -c "import json,sys; [print('$s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('/tmp/hip/prism-$s-$t.json'))]"
done; done | tee $OUT/prism.txt
cat /tmp/peers/results-cuda/summary.md
cd /tmp && tar czf $OUT/results-cuda.tgz -C /tmp/peers results-cuda && tar czf $OUT/prism-json.tgz -C /tmp/hip $(cd /tmp/hip && ls prism-*.json)

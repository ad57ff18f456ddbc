#!/usr/bin/env bash
# issue 6 perf, H100, one call (carry .dev/p7): parity + stories260K golden of branch issue-6-perf-fused-wide
# (fused one-token gemv at every width), then prism bench issue-6-perf vs -fused-wide on synthetic 135M and 1B.
# Staged in the lead checkout's git-ignored .dev/p7: bin.tar.xz (stripped prism_perf = issue-6-perf,
# prism_wide + hip_ops_wide = issue-6-perf-fused-wide), shared.tar.xz, tokenizer.tar.xz, make-synthetic-llama.py.
set -uo pipefail
H=$PWD/.dev/p7
mkdir -p /tmp/p7 /work/shared /work/wt-cuda /tmp/m /tmp/tok
tar -xJf $H/bin.tar.xz -C /tmp/p7; tar -xJf $H/shared.tar.xz -C /work/shared; tar -xJf $H/tokenizer.tar.xz -C /tmp/tok
( for s in smollm2-135m llama-1b; do [ -d /tmp/m/$s ] || python3 $H/make-synthetic-llama.py --shape $s --dtype f16 --tokenizer /tmp/tok/tokenizer --out /tmp/m/$s >/dev/null 2>&1; done ) </dev/null >/dev/null 2>&1 &
MP=$!
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee $OUT/env.txt
cd /tmp/p7 && timeout 200 ./hip_ops_wide --test-threads=1 --nocapture gpu_ops gpu_bad gpu_stories > $OUT/tests.log 2>&1
grep -E "^test |result|panicked|differ|nmse|identical" $OUT/tests.log | head -30
wait $MP
for s in smollm2-135m llama-1b; do for t in f16 q8_0 q4_0; do
  q=""; [ $t != f16 ] && q="--quantize $t"
  for b in prism_perf prism_wide; do
    timeout 60 /tmp/p7/$b bench --backend cuda -m /tmp/m/$s $q -p 512 -n 128 -r 3 --json > /tmp/p7/$b-$s-$t.json 2>/tmp/p7/err || tail -3 /tmp/p7/err
    python3 -c "import json; [print('$b $s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('/tmp/p7/$b-$s-$t.json'))]" 2>&1 | tee -a $OUT/bench.txt
  done
done; done
date -u

#!/usr/bin/env bash
# issue 6 perf, H100 call 1 (run5.sh): parity + stories260K golden, prism bench before (main) / after (branch)
# on synthetic 135M and 1B (f16, q8_0, q4_0), pp512 + tg128, 3 reps each.
set -uo pipefail
# Staged in the lead checkout's git-ignored .dev/p6 (carry it): bin.tar.xz (stripped prism, prism_before =
# main's build, hip_ops test binary), shared.tar.xz (goldens, stories260K), tokenizer.tar.xz,
# make-synthetic-llama.py, smol.a (the SmolLM2 GGUF's first 50 MB; run6.sh brings the rest).
H=$PWD/.dev/p6
mkdir -p /tmp/p6 /work/shared /work/wt-cuda /tmp/m /tmp/tok
tar -xJf $H/bin.tar.xz -C /tmp/p6; tar -xJf $H/shared.tar.xz -C /work/shared; tar -xJf $H/tokenizer.tar.xz -C /tmp/tok
cp $H/smol.a /tmp/p6/
( for s in smollm2-135m llama-1b; do python3 $H/make-synthetic-llama.py --shape $s --dtype f16 --tokenizer /tmp/tok/tokenizer --out /tmp/m/$s >/dev/null 2>&1; done ) </dev/null >/dev/null 2>&1 &
MP=$!
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } | tee $OUT/env.txt
cd /tmp/p6 && timeout 200 ./hip_ops --test-threads=1 --nocapture gpu_ops gpu_bad gpu_stories missing kernels > $OUT/tests.log 2>&1
grep -E "^test |result|panicked|differ|nmse|identical" $OUT/tests.log | head -30
wait $MP
for s in smollm2-135m llama-1b; do for t in f16 q8_0 q4_0; do
  q=""; [ $t != f16 ] && q="--quantize $t"
  for b in prism_before prism; do
    timeout 60 /tmp/p6/$b bench --backend cuda -m /tmp/m/$s $q -p 512 -n 128 -r 3 --json > /tmp/p6/$b-$s-$t.json 2>/tmp/p6/err || tail -3 /tmp/p6/err
    python3 -c "import json; [print('$b $s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('/tmp/p6/$b-$s-$t.json'))]" 2>&1 | tee -a $OUT/bench.txt
  done
done; done
date -u

#!/usr/bin/env bash
# issue 6 decode (branch issue-6-decode), H100, one call, carry .dev/cuda: `bash .dev/cuda/run.sh`.
# 1. CUDA-twin parity (every op case, incl. new one-token gemv cases at model widths), bad arguments,
#    stories260K golden, with the branch's hip_ops; SmolLM2 golden only if its GGUF is already in the cache.
# 2. tg128 of the branch build (prism) against main's build (prism_base), alternating, on synthetic 135M and
#    1B at f16 / q8_0 / q4_0 (`prism bench --backend cuda [--quantize T] -p 0 -n 128 -r 3`).
# 3. If time is left: ncu per-kernel times of two 1B q4_0 decode tokens of the branch build.
# Everything lands in $OUT too (env.txt, hip_ops.log, bench.txt, ncu.txt). Budget: < 6 minutes.
set -uo pipefail
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
H=$PWD/.dev/cuda
P=/tmp/cu
mkdir -p $P /work/shared /work/wt-cuda target/release
[ -e /work/main ] || ln -s "$PWD" /work/main
tar -xJf $H/bin.tar.xz -C $P && tar -xJf $H/shared.tar.xz -C /work/shared && tar -xJf $H/tok.tar.xz -C $P
cp $P/prism target/release/prism
(
  for s in smollm2-135m:syn-135m llama-1b:syn-1b; do
    [ -d $P/${s#*:} ] || python3 $H/make-synthetic-llama.py --shape ${s%%:*} --tokenizer $P/tok --out $P/${s#*:} >/dev/null 2>&1
  done
  touch $P/models.done
) </dev/null >/dev/null 2>&1 &
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; $P/prism devices 2>&1 | grep -iA1 cuda; } | tee $OUT/env.txt

echo "== hip_ops (cuda): parity + reference, bad arguments, stories260K golden  [t=$(el)s]"
(cd $P && timeout 200 ./hip_ops --test-threads=1 --nocapture gpu_ops gpu_bad gpu_stories > $OUT/hip_ops.log 2>&1)
echo "hip_ops rc $?"
grep -E "^test |test result|panicked|differ|nmse|failed|error" $OUT/hip_ops.log | head -30
SMOL=$HOME/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$SMOL" ]; then
  (cd $P && timeout 90 ./hip_ops --test-threads=1 --nocapture gpu_smollm2 2>&1 | tee -a $OUT/hip_ops.log | grep -E "^test |identical|panicked|result")
else
  echo "SmolLM2 golden not run: $SMOL absent (98 MB, does not travel in one call)"
fi

echo "== tg128, prism_base (main) vs prism (branch), alternating  [t=$(el)s]"
for i in $(seq 1 60); do [ -f $P/models.done ] && break; sleep 3; done
ls -d $P/syn-135m $P/syn-1b >/dev/null || echo "synthetic models missing"
for s in syn-135m syn-1b; do for t in f16 q8_0 q4_0; do
  q=""; [ $t != f16 ] && q="--quantize $t"
  for b in prism_base prism; do
    timeout 75 $P/$b bench --backend cuda -m $P/$s $q -p 0 -n 128 -r 3 --json > $P/$b-$s-$t.json 2>$P/err || tail -2 $P/err
    python3 -c "import json; [print('$b $s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('$P/$b-$s-$t.json'))]" 2>&1
  done
done; done | tee $OUT/bench.txt
python3 - $P <<'EOF' | tee -a $OUT/bench.txt
import json, sys
P = sys.argv[1]
# llama.cpp CUDA tg128 on this machine kind, 2026-11-24 23:02 UTC run (NOT measured in this run).
lc = {('syn-1b', 'f16'): 758, ('syn-1b', 'q8_0'): 847, ('syn-1b', 'q4_0'): 1036, ('syn-135m', 'f16'): 921}
print('model type | base t/s | branch t/s | branch/base | branch/llama.cpp(23:02)')
for s in ['syn-135m', 'syn-1b']:
    for t in ['f16', 'q8_0', 'q4_0']:
        v = {}
        for b in ['prism_base', 'prism']:
            try: v[b] = json.load(open(f'{P}/{b}-{s}-{t}.json'))[0]['median_ts']
            except Exception: v[b] = float('nan')
        l = lc.get((s, t))
        print(f"{s} {t} | {v['prism_base']:.0f} | {v['prism']:.0f} | {v['prism']/v['prism_base']:.3f} | "
              + (f"{v['prism']/l:.3f}" if l else '-'))
EOF

if [ $(el) -lt 270 ]; then
  echo "== ncu: per-kernel times, 2 decode tokens of 1B q4_0 (branch)  [t=$(el)s]"
  export PATH=$PATH:/usr/local/cuda/bin
  timeout $((335 - $(el))) ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \
    -s 2500 -c 240 $P/prism bench --backend cuda -m $P/syn-1b --quantize q4_0 -p 0 -n 32 -r 1 > $OUT/ncu.txt 2>&1
  echo "ncu rc $?"
  grep -E "^  [a-zA-Z_0-9]+[ (]|gpu__time_duration.sum" $OUT/ncu.txt | paste - - | awk '{print $1, $(NF-2), $(NF-1), $NF}' | head -30
else
  echo "ncu skipped (t=$(el)s)"
fi
echo "done in $(el)s"

#!/usr/bin/env bash
# H100, prism only (final build): the 9 benches on synthetic GGUFs made on the spot, and a per-kernel
# time summary (ncu, one metric) of a 1B f16 pp512 + tg16 run. llama.cpp's numbers: run3.sh's, same day.
set -uo pipefail
H=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/hip /tmp/m
tar -xJf "$H/bin.tar.xz" -C /tmp/hip
cp -r "$H/peers" /tmp/hip/peers; mkdir -p /tmp/tok && tar -xJf "$H/gpu-pack/tokenizer.tar.xz" -C /tmp/tok
P=/tmp/hip/bin/prism
for s in smollm2-135m llama-1b; do
  python3 /tmp/hip/peers/make-synthetic-llama.py --shape $s --dtype f16 --tokenizer /tmp/tok/tokenizer --out /tmp/m/$s >/dev/null 2>&1 &
done; wait
for s in smollm2-135m llama-1b; do for t in f16 q8_0 q4_0; do
  q=""; [ $t != f16 ] && q="--quantize $t"
  $P bench --backend cuda -m /tmp/m/$s $q -p 512 -n 128 -r 5 --json > /tmp/hip/prism-$s-$t.json 2>/tmp/hip/err || tail -3 /tmp/hip/err
  python3 -c "import json,sys; [print('$s $t', r['test'], round(r['median_ts'],1), [round(x) for x in r['samples_ts']]) for r in json.load(open('/tmp/hip/prism-$s-$t.json'))]"
done; done | tee $OUT/prism.txt
export PATH=$PATH:/usr/local/cuda/bin
timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel $P bench --backend cuda -m /tmp/m/llama-1b -p 512 -n 16 -r 1 > $OUT/ncu.txt 2>&1
grep -E "^  [a-z_0-9]+ |gpu__time_duration.sum" $OUT/ncu.txt | paste - - | awk '{print $1, $(NF-2), $(NF-1), $NF}' | head -40
cd /tmp/hip && tar czf $OUT/prism-json.tgz prism-*.json

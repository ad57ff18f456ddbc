#!/usr/bin/env bash
# H100 call: (1) CUDA-twin parity + stories260K golden with overlapping launches (PDL) on; wgpu parity +
# goldens with trusted shaders; (2) tg128 A/B: CUDA PRISM_PDL=0 vs 1, wgpu PRISM_WGPU_CHECKS=1 vs default,
# alternating, medians of 3, on synthetic 135M and 1B (f16, q8_0, q4_0).
set -uo pipefail
T0=$(date +%s); el() { echo $(($(date +%s) - T0)); }
H=$PWD/.dev/pdl; P=/tmp/pdl
mkdir -p $P /work/shared target/release
[ -e /work/main ] || ln -s "$PWD" /work/main
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
tar -xJf $H/bin.tar.xz -C $P && tar -xJf $H/shared.tar.xz -C /work/shared && tar -xJf $H/tok.tar.xz -C $P
cp $P/prism target/release/prism
(
  for s in smollm2-135m:syn-135m llama-1b:syn-1b; do
    [ -d $P/${s#*:} ] || python3 $H/make-synthetic-llama.py --shape ${s%%:*} --tokenizer $P/tok --out $P/${s#*:} >/dev/null 2>&1
  done
  touch $P/models.done
) </dev/null >/dev/null 2>&1 &
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; $P/prism devices 2>&1 | head -12; } | tee $OUT/env.txt
echo "== hip_ops (cuda, PDL on)  [t=$(el)s]"
(cd $P && timeout 200 ./hip_ops --test-threads=1 gpu_ops gpu_bad gpu_stories > $OUT/hip_ops.log 2>&1); echo "hip_ops rc $?"
grep -E "^test |test result|panicked" $OUT/hip_ops.log | head -20
echo "== wgpu_ops + golden (Vulkan, trusted shaders)  [t=$(el)s]"
(cd $P && PRISM_REQUIRE_WGPU=1 timeout 200 ./wgpu_ops > $OUT/wgpu_ops.log 2>&1; echo "wgpu_ops rc $?"; PRISM_REQUIRE_WGPU=1 timeout 120 ./golden > $OUT/golden.log 2>&1; echo "golden rc $?")
grep -E "test result|panicked|FAILED" $OUT/wgpu_ops.log $OUT/golden.log | head -20
for i in $(seq 1 60); do [ -f $P/models.done ] && break; sleep 3; done
echo "== tg128 A/B  [t=$(el)s]"
bench() { # name env backend model type
  local q=""; [ $4 != f16 ] && q="--quantize $4"
  env $2 timeout 60 $P/prism bench --backend $3 -m $P/$5 $q -p 0 -n 128 -r 3 --json > $P/r.json 2>$P/err || tail -2 $P/err
  python3 -c "import json; r=json.load(open('$P/r.json'))[0]; print('$1 $3 $5 $4', round(r['median_ts'],1), [round(x) for x in r['samples_ts']])"
}
for s in syn-1b syn-135m; do for t in f16 q8_0 q4_0; do
  for m in 0 1 2; do bench fa$m PRISM_FUSED_ATTN=$m cuda $t $s; done
done; done | tee $OUT/bench-cuda.txt
for s in syn-1b syn-135m; do for t in f16 q8_0 q4_0; do
  for m in 0 1; do bench wfa$m PRISM_WGPU_FUSED_ATTN=$m wgpu $t $s; done
done; done | tee $OUT/bench-wgpu.txt
echo "done in $(el)s"

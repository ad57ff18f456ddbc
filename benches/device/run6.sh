#!/usr/bin/env bash
# issue 6 perf, H100 call 2, right after run5.sh (machine still warm): SmolLM2 Q4_1 golden on the branch's CUDA twin.
set -uo pipefail
# run5.sh left /tmp/p6/smol.a and hip_ops there; .dev/p6b/smol.b is the rest (a call carries at most 64 MiB).
exec > >(tee $OUT/run2.log) 2>&1
mkdir -p /root/.cache/prism/models
cat /tmp/p6/smol.a .dev/p6b/smol.b > /root/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf
ls -la /root/.cache/prism/models
cd /tmp/p6 && timeout 200 ./hip_ops --test-threads=1 --nocapture gpu_smollm2 2>&1 | tee $OUT/tests2.log | grep -vE "^compiled" | tail -15

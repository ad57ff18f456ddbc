#!/bin/bash
# SmolLM2 Q4_1 golden on the H100 (CUDA twin and Vulkan): the 98 MB GGUF travels in two parts (smolA in
# the call before, kept in /tmp), reassembled into the model cache where `pull` finds it (sha256-checked).
set -uo pipefail
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
mkdir -p ~/.cache/prism/models /work; [ -e /work/main ] || ln -s $PWD /work/main
cat /tmp/smolpart.aa .dev/smolB/smolpart.ab > ~/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf
sha256sum ~/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf
xz -dc .dev/smolB/gs.xz > /tmp/fin/bin/golden_smollm2; chmod +x /tmp/fin/bin/golden_smollm2
date -u
echo "== hip_ops (cuda) SmolLM2"; (cd /tmp/fin/bin && timeout 150 ./hip_ops --test-threads=1 gpu_smollm2 2>&1 | tee $OUT/hip_smol.log | grep -E "^test |result|panicked|identical|ids" | head)
echo "== golden_smollm2 (cpu + wgpu)"; (cd /tmp/fin/bin && PRISM_REQUIRE_WGPU=1 timeout 200 ./golden_smollm2 --test-threads=1 --nocapture 2>&1 | tee $OUT/golden_smol.log | grep -E "^test |result|panicked|identical|ids" | head -20)
date -u

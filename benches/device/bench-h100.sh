#!/usr/bin/env bash
# H100: prism's CUDA twin and its wgpu backend (Vulkan) beside llama.cpp CUDA, in one `prism bench` run
# (llama-bench interleaved with prism's repetitions), with the device's copy and GEMM ceilings.
#
# Usage, on the GPU machine:
#   PRISM=/tmp/p/prism LLAMA_BENCH=/tmp/peers/llama.cpp-cuda/bin benches/device/bench-h100.sh M1.gguf M2.gguf
# llama.cpp CUDA: PEERS_DIR=/tmp/peers SHAPES="smollm2-135m llama-1b" TYPES="f16 q4_0" \
#   ../shared/peers/llamacpp-cuda-device.sh  (builds it and makes /tmp/peers/models/<shape>-<type>.gguf).
# wgpu needs the Vulkan loader and the NVIDIA ICD (see wgpu-vs-llamacpp-vulkan.sh: VK_DRIVER_FILES).
# Env: P (-p, default 512), N (-n, 128), B (-b, 1,8,32), R (-r, 5), BACKENDS (cuda,wgpu), OUT (results dir).
set -euo pipefail
PRISM=${PRISM:-target/release/prism}
LLAMA_BENCH=${LLAMA_BENCH:-/tmp/peers/llama.cpp-cuda/bin}
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
models=()
for m in "$@"; do models+=(-m "$m"); done
[[ ${#models[@]} -gt 0 ]] || { echo "usage: $0 MODEL.gguf..." >&2; exit 2; }
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true; date -u; } | tee "$OUT/env.txt"
"$PRISM" devices | tee -a "$OUT/env.txt"
"$PRISM" bench "${models[@]}" --backend "${BACKENDS:-cuda,wgpu}" -p "${P:-512}" -n "${N:-128}" -b "${B:-1,8,32}" \
    -r "${R:-5}" --ceilings --peer "llama.cpp=$LLAMA_BENCH" \
    --csv "$OUT/h100.csv" --plot "$OUT/h100-comparison.svg" | tee "$OUT/h100.md"

#!/usr/bin/env bash
# prism and llama.cpp's llama-bench on the same GGUF files, interleaved, on the CPU.
# Usage: benches/cpu-vs-llamacpp.sh MODEL.gguf... (env: THREADS=2, P=128, N=64, R=5, LLAMA_BENCH=path)
# llama.cpp comes from ../shared/peers/llamacpp-cpu.sh (PEERS_DIR=.peers).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} P=${P:-128} N=${N:-64} R=${R:-5}
LLAMA_BENCH=${LLAMA_BENCH:-.peers/llama.cpp-cpu/bin/llama-bench}
cargo build --release --quiet
for m in "$@"; do
    echo "== $m"
    ./target/release/prism bench --model "$m" --backend cpu -t "$THREADS" -p "$P" -n "$N" -r "$R" 2>/dev/null | grep '^| [pt]'
    "$LLAMA_BENCH" -m "$m" -t "$THREADS" -p "$P" -n "$N" -r "$R" 2>/dev/null | grep -E '\| *(pp|tg)[0-9]'
done

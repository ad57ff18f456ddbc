#!/usr/bin/env bash
# prism and llama.cpp's llama-bench on the same GGUF files on the CPU, in one `prism bench` run (llama-bench
# interleaved with prism's repetitions), with prism / llama.cpp ratios.
# Usage: benches/cpu-vs-llamacpp.sh MODEL.gguf... (env: THREADS=2, P=128, N=64, R=5, LLAMA_BENCH=path,
#        PLOT=file.svg, CSV=file.csv)
# llama.cpp comes from ../shared/peers/llamacpp-cpu.sh (PEERS_DIR=.peers).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} P=${P:-128} N=${N:-64} R=${R:-5}
LLAMA_BENCH=${LLAMA_BENCH:-.peers/llama.cpp-cpu/bin/llama-bench}
cargo build --release --quiet
models=()
for m in "$@"; do models+=(-m "$m"); done
./target/release/prism bench "${models[@]}" --backend cpu -t "$THREADS" -p "$P" -n "$N" -r "$R" \
    --peer "llama.cpp=$LLAMA_BENCH" ${PLOT:+--plot "$PLOT"} ${CSV:+--csv "$CSV"}

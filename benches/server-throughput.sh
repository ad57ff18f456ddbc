#!/usr/bin/env bash
# Aggregate decode throughput of `prism serve` at 1, 8 and 32 concurrent streams (continuous batching).
# Starts the server on the given model/device, runs benches/stream_client.py (standard-library Python),
# prints one JSON line per concurrency (medians of --reps runs) and a Markdown row for benches/RESULTS.md.
#
#   benches/server-throughput.sh --model PATH[@backend:device] [--max-tokens 128] [--reps 3]
#                                [--concurrency 1,8,32] [--threads N]
# e.g. on the H100: --model ~/.cache/prism/models/SmolLM2-135M-Instruct.Q4_1.gguf@cuda:0  (or @wgpu:0)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="../shared/models/stories260K@cpu:0"; MAX_TOKENS=128; REPS=3; CONC="1,8,32"; THREADS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --max-tokens) MAX_TOKENS="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --concurrency) CONC="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$work"' EXIT
MAX_SEQS=$(echo "$CONC" | tr ',' '\n' | sort -n | tail -1)
target/release/prism serve --model "$MODEL" --port 0 --threads "$THREADS" --max-seqs "$MAX_SEQS" \
    2>"$work/server.log" &
SERVER=$!
for _ in $(seq 600); do
    grep -q "listening on" "$work/server.log" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$work/server.log")
until curl -sf "$URL/health" >/dev/null; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
done
DEVICE=$(curl -s "$URL/v1/models" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"][0]; print(d["backend"], "-", d["device"])')
echo "model: $MODEL | $DEVICE | max_tokens $MAX_TOKENS | reps $REPS"
python3 benches/stream_client.py "$URL" --concurrency "$CONC" --max-tokens "$MAX_TOKENS" --reps "$REPS" \
    | tee "$work/out.jsonl"
python3 - "$work/out.jsonl" "$MODEL" "$DEVICE" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]["decode_tps"]
cells = " | ".join(f'{r["decode_tps"]:.0f} ({r["decode_tps"] / base:.1f}x)' for r in rows)
print(f"| {sys.argv[2]} | {sys.argv[3]} | {cells} |")
PY

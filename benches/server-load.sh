#!/usr/bin/env bash
# Load test of `prism serve` from a separate process (ApacheBench `ab`, Debian's apache2-utils; wrk has
# no fixed request count): N requests (default 500) at concurrency C
# (default 64) on loopback, each a greedy 64-token completion; reports requests/s, latency percentiles,
# failures, and the server's peak and final memory over two rounds (memory must not grow).
#
#   benches/server-load.sh [--model PATH@backend:device] [-n 500] [-c 64] [--max-tokens 64] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="../shared/models/stories260K@cpu:0"; N=500; C=64; MAX_TOKENS=64; THREADS=0; ROUNDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        -n) N="$2"; shift 2 ;;
        -c) C="$2"; shift 2 ;;
        --max-tokens) MAX_TOKENS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if ! command -v ab >/dev/null; then
    apt-get update && apt-get install -y apache2-utils
fi
cargo build --release --quiet

work=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/prism serve --model "$MODEL" --port 0 --threads "$THREADS" --max-seqs "$C" 2>"$work/server.log" &
SERVER=$!
for _ in $(seq 200); do
    grep -q "listening on" "$work/server.log" 2>/dev/null && break
    sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$work/server.log")
until curl -sf "$URL/health" >/dev/null; do sleep 0.2; done

printf '{"prompt": "Once upon a time", "max_tokens": %s, "temperature": 0}' "$MAX_TOKENS" >"$work/body.json"

echo "server: $MODEL at $URL; $N requests, concurrency $C, max_tokens $MAX_TOKENS"
for round in $(seq "$ROUNDS"); do
    # -l: completions differ in length (ids); -k: keep-alive connections.
    ab -n "$N" -c "$C" -l -k -s 120 -p "$work/body.json" -T application/json "$URL/v1/completions" \
        >"$work/ab.txt" 2>&1
    echo "--- round $round"
    grep -E "Complete requests|Failed requests|Non-2xx|Requests per second|Time per request.*mean\)|  (50|66|75|90|95|99|100)%" \
        "$work/ab.txt"
    if ! grep -qE "Failed requests: +0$" "$work/ab.txt" || grep -q "Non-2xx" "$work/ab.txt" \
        || ! grep -qE "Complete requests: +$N$" "$work/ab.txt"; then
        echo "FAILED: not every request succeeded" >&2
        cat "$work/ab.txt" >&2
        exit 1
    fi
    grep -E "VmHWM|VmRSS" "/proc/$SERVER/status" | tr -s ' \t' ' '
done
curl -s "$URL/metrics" | grep -E '^prism_(requests_total\{endpoint="/v1/completions"|running_sequences|kv_cache_blocks_used|cancelled_total|preemptions_total)'

"""Aggregate decode throughput of `prism serve`: K concurrent streaming completions of a fixed length
(ignore_eos), repeated; prints one JSON line per concurrency with the median over repetitions.
Standard library only. Usage: stream_client.py URL --concurrency 1,8,32 --max-tokens 128 --reps 3"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def one_stream(url, body, out, i):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = last = None
    tokens = 0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if "error" in ev:
            raise RuntimeError(ev["error"]["message"])
        if ev.get("usage"):
            tokens = ev["usage"]["completion_tokens"]
        now = time.perf_counter()
        if ev.get("choices") and ev["choices"][0].get("text"):
            first = first or now
            last = now
    conn.close()
    out[i] = (t0, first, last, tokens)


def run(url, k, max_tokens, prompt):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    out = [None] * k
    threads = [threading.Thread(target=one_stream, args=(url, body, out, i)) for i in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(o is None for o in out):
        raise RuntimeError("a stream failed")
    wall = time.perf_counter() - start
    tokens = sum(o[3] for o in out)
    # Decode phase: from the last stream's first token to the end, every stream decoding together.
    decode_start = max(o[1] for o in out)
    decode_end = max(o[2] for o in out)
    decode_tokens = sum(o[3] for o in out) - k  # tokens after each stream's first
    ttft = statistics.median(o[1] - o[0] for o in out)
    per_stream = [(o[3] - 1) / max(o[2] - o[1], 1e-9) for o in out]
    return {
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tps": tokens / wall,
        "decode_tps": decode_tokens / max(decode_end - min(o[1] for o in out), 1e-9),
        "per_stream_tps": statistics.median(per_stream),
        "ttft_s": ttft,
        "steady_window_s": decode_end - decode_start,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prompt", default="Once upon a time")
    a = p.parse_args()
    run(a.url, 2, 8, a.prompt)  # warm-up
    for k in [int(x) for x in a.concurrency.split(",")]:
        runs = [run(a.url, k, a.max_tokens, a.prompt) for _ in range(a.reps)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        med["samples_decode_tps"] = [round(r["decode_tps"], 1) for r in runs]
        print(json.dumps({"streams": k, "max_tokens": a.max_tokens, "reps": a.reps, **{
            key: (round(v, 4) if isinstance(v, float) else v) for key, v in med.items()}}), flush=True)


if __name__ == "__main__":
    main()

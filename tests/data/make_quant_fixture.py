"""Writes tests/data/quant_fixture.json: llama.cpp's gguf-py (`gguf.quants`) as the reference for
prism's quantized block formats.

Run from the repository root with numpy and llama.cpp's gguf-py on the path:
    PYTHONPATH=.peers/llama.cpp-src/gguf-py .peers/convert-venv/bin/python tests/data/make_quant_fixture.py

- "blocks": real blocks of each type (two of 32, one of 256) (raw bytes, and gguf-py's dequantized f32 bits).
- "quantize": gguf-py's Q8_0/Q4_0/Q4_1 quantization of a deterministic input (`quant_input` below,
  reproduced bit for bit by tests/quant.rs).
- "tensors": sha256 of gguf-py's dequantization of whole tensors of local model files (checked when the
  files are present).
"""
import hashlib
import json

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize, quantize
from gguf.constants import GGMLQuantizationType as T

SMOL = ".dev/SmolLM2-135M-Instruct.Q4_1.gguf"
KQ = ".peers/models/syn-smollm2-135m-q4_k_m.gguf"
Q40 = ".peers/models/syn-llama-1b-q4_0.gguf"
NAMES = {T.Q8_0: "q8_0", T.Q4_0: "q4_0", T.Q4_1: "q4_1", T.Q4_K: "q4_k", T.Q6_K: "q6_k"}


def tensor(path, name):
    for t in GGUFReader(path).tensors:
        if t.name == name:
            return t
    raise KeyError(name)


def quant_input():
    """32 blocks of 32: an LCG scaled by a power of two per block, then hand-made edge blocks."""
    s = 12345
    vals = []
    for i in range(28 * 32):
        s = (s * 1664525 + 1013904223) % 2**32
        v = np.float32(s >> 8) / np.float32(16777216.0) * np.float32(2.0) - np.float32(1.0)
        vals.append(v * np.float32(2.0 ** ((i // 32) % 7 - 3)))
    x = np.array(vals, dtype=np.float32)
    zeros = np.zeros(32, np.float32)
    # Halves after scaling by 1/d = 1: round half away from zero (roundf), not to even.
    halves = np.array([127, 2.5, -3.5, 0.5, -0.5, 1.5, -1.5] + [0.25 * k for k in range(25)], np.float32)
    # Two values of the largest magnitude with opposite signs: Q4_0 takes the first one's sign.
    tie_neg = np.array([-1, 1] + [0.1 * k - 1.0 for k in range(30)], np.float32)
    tie_pos = np.array([1, -1] + [0.03 * k for k in range(30)], np.float32)
    return np.concatenate([x, zeros, halves, tie_neg, tie_pos])


def main():
    out = {"blocks": [], "quantize": {}, "tensors": []}
    for path, name, block in [
        (SMOL, "token_embd.weight", 1000),
        (SMOL, "blk.3.ffn_down.weight", 777),
        (Q40, "blk.0.attn_k.weight", 4321),
        (KQ, "blk.3.ffn_down.weight", 99),
        (Q40, "output.weight", 12345),
    ]:
        t = tensor(path, name)
        qt = T(t.tensor_type)
        bs, ts = {T.Q8_0: (32, 34), T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q4_K: (256, 144), T.Q6_K: (256, 210)}[qt]
        nb = 2 if bs == 32 else 1
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[block * ts : (block + nb) * ts]
        f = dequantize(raw, qt).astype(np.float32).reshape(-1)
        assert f.size == nb * bs
        out["blocks"].append(
            {"source": f"{path} {name} blocks {block}..{block + nb}", "dtype": NAMES[qt], "bytes": raw.tobytes().hex(),
             "f32": f.astype("<f4").tobytes().hex()}
        )
    x = quant_input()
    out["quantize"]["n"] = int(x.size)
    for qt in (T.Q8_0, T.Q4_0, T.Q4_1):
        out["quantize"][NAMES[qt]] = quantize(x, qt).tobytes().hex()
    for path, name in [
        (SMOL, "token_embd.weight"),
        (SMOL, "blk.0.attn_q.weight"),
        (SMOL, "blk.29.ffn_down.weight"),
        (KQ, "blk.0.ffn_down.weight"),
        (KQ, "blk.4.ffn_down.weight"),
        (Q40, "blk.0.attn_k.weight"),
        (Q40, "output.weight"),
    ]:
        t = tensor(path, name)
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)
        f = dequantize(raw, T(t.tensor_type)).astype("<f4")
        out["tensors"].append({"file": path, "tensor": name, "dtype": NAMES[T(t.tensor_type)],
                               "sha256": hashlib.sha256(f.tobytes()).hexdigest()})
    with open("tests/data/quant_fixture.json", "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


main()

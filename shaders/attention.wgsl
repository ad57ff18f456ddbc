// Causal attention over the paged KV cache, fused (scores, online softmax, weighted values), for
// decode and prefill alike: one workgroup per (step token, query head). Positions are taken in chunks
// of 128: each invocation scores one position, then every invocation folds the chunk into the running
// max, denominator and its own output dimensions (d = lid, lid + 128). GQA: query head h reads kv head
// h / (heads / kv_heads). Included before this file: lib/step.wgsl, and the inputs: lib/attn_cached.wgsl
// (rotated queries, everything in the cache) or lib/cos_sin.wgsl + lib/attn_rope.wgsl (decode with
// RoPE and the KV store folded in: the token's own key and value come from `own_key` / `own_value`).
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,   // ≤ 256
    block_size: u32,
    window: u32,     // 0: full causal attention
    scale: f32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>; // [n, heads, head_dim]

alias E = f32;
const LANES: u32 = 1u;
const QN: u32 = 256u;
const CH: u32 = 128u;
var<workgroup> qs: array<f32, QN>;
var<workgroup> scores: array<f32, CH>;
var<workgroup> rows: array<u32, CH>; // cache row of each position of the chunk

// An E of LANES floats (the RoPE prologue builds the query, key and value from floats).
fn e_from(f: array<f32, LANES>) -> E {
    return f[0];
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = wid.x + wid.y * p.groups_x;
    let i = id / p.heads;
    let h = id % p.heads;
    let hd = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    let kw = p.kv_heads * hd;
    let s = step_seq(i);
    let pos = step_position(i);
    var lo = 0u;
    if p.window != 0u && pos + 1u > p.window {
        lo = pos + 1u - p.window;
    }
    load_query(i, h, kvh, s, pos, lid);
    var m = -3.0e38; // running max (finite, so exp(m − m_new) never makes NaN)
    var l = 0.0;     // running denominator
    var acc0 = 0.0;  // output dimension lid
    var acc1 = 0.0;  // output dimension lid + 128
    for (var c0 = lo; c0 <= pos; c0 += CH) {
        let cnt = min(CH, pos + 1u - c0);
        // The index in the chunk of the token's own position when it is not read from the cache
        // (it is the chunk's last), else CH (none).
        let own = select(CH, pos - c0, OWN_KV && pos - c0 < CH);
        workgroupBarrier(); // qs written; the previous chunk's scores read
        if lid < cnt {
            var dot = 0.0;
            if lid == own {
                for (var d = 0u; d < hd; d++) {
                    dot = fma(qs[d], own_key(d), dot);
                }
            } else {
                let r = kv_row(s, c0 + lid, p.block_size);
                rows[lid] = r;
                let kb = r * kw + kvh * hd;
                for (var d = 0u; d < hd; d++) {
                    dot = fma(qs[d], k_cache[kb + d], dot);
                }
            }
            scores[lid] = dot * p.scale;
        }
        workgroupBarrier();
        var cmax = m;
        for (var j = 0u; j < cnt; j++) {
            cmax = max(cmax, scores[j]);
        }
        let alpha = exp(m - cmax);
        l *= alpha;
        acc0 *= alpha;
        acc1 *= alpha;
        for (var j = 0u; j < min(cnt, own); j++) {
            let e = exp(scores[j] - cmax);
            l += e;
            let vb = rows[j] * kw + kvh * hd;
            if lid < hd {
                acc0 = fma(e, v_cache[vb + lid], acc0);
            }
            if lid + CH < hd {
                acc1 = fma(e, v_cache[vb + lid + CH], acc1);
            }
        }
        // The own position is the chunk's last: added in the same order as from the cache.
        if own < cnt {
            let e = exp(scores[own] - cmax);
            l += e;
            if lid < hd {
                acc0 = fma(e, own_value(lid), acc0);
            }
            if lid + CH < hd {
                acc1 = fma(e, own_value(lid + CH), acc1);
            }
        }
        m = cmax;
    }
    let o = (i * p.heads + h) * hd;
    if lid < hd {
        out[o + lid] = acc0 / l;
    }
    if lid + CH < hd {
        out[o + lid + CH] = acc1 / l;
    }
}

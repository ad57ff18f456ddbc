// Causal attention over the paged KV cache, fused (scores, online softmax, weighted values), for
// decode and prefill alike: one workgroup per (step token, query head). Positions are taken in chunks
// of 128: each invocation scores one position, then every invocation folds the chunk into the running
// max, denominator and its own output dimensions (d = lid, lid + 128). GQA: query head h reads kv head
// h / (heads / kv_heads). Included before this file: lib/step.wgsl.
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
@group(0) @binding(1) var<storage, read> q: array<f32>;       // [n, heads, head_dim]
@group(0) @binding(2) var<storage, read> k_cache: array<f32>; // [rows, kv_heads, head_dim]
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>; // [n, heads, head_dim]

const CH: u32 = 128u;
var<workgroup> qs: array<f32, 256>;
var<workgroup> scores: array<f32, CH>;
var<workgroup> rows: array<u32, CH>; // cache row of each position of the chunk

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
    for (var d = lid; d < hd; d += CH) {
        qs[d] = q[(i * p.heads + h) * hd + d];
    }
    var m = -3.0e38; // running max (finite, so exp(m − m_new) never makes NaN)
    var l = 0.0;     // running denominator
    var acc0 = 0.0;  // output dimension lid
    var acc1 = 0.0;  // output dimension lid + 128
    for (var c0 = lo; c0 <= pos; c0 += CH) {
        let cnt = min(CH, pos + 1u - c0);
        workgroupBarrier(); // qs written; the previous chunk's scores read
        if lid < cnt {
            let r = kv_row(s, c0 + lid, p.block_size);
            rows[lid] = r;
            let kb = r * kw + kvh * hd;
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot = fma(qs[d], k_cache[kb + d], dot);
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
        for (var j = 0u; j < cnt; j++) {
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

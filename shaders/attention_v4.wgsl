// Causal attention over the paged KV cache for head_dim a multiple of 4, fused (scores, online
// softmax, weighted values): one workgroup per (step token, query head). Positions go in chunks of
// 128: each invocation scores one position with vec4 loads of its key; the chunk's max and sum are
// workgroup reductions; then the invocations split into G = 128 / (head_dim/4) groups, group g
// summing the weighted values of positions g, g + G, ... (each invocation one vec4 of the output),
// and the groups' partial outputs are added at the end. GQA: query head h reads kv head
// h / (heads / kv_heads). Included before this file: lib/step.wgsl, and the inputs: lib/attn_cached.wgsl
// (rotated queries, everything in the cache) or lib/cos_sin.wgsl + lib/attn_rope.wgsl (decode with
// RoPE and the KV store folded in: the token's own key and value come from `own_key` / `own_value`).
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,   // a multiple of 4, ≤ 256
    block_size: u32,
    window: u32,     // 0: full causal attention
    scale: f32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [n, heads, head_dim/4]

alias E = vec4<f32>;
const LANES: u32 = 4u;
const QN: u32 = 64u;
const CH: u32 = 128u;
var<workgroup> qs: array<vec4<f32>, QN>;
var<workgroup> weights: array<f32, CH>; // e^(score − max) of each position of the chunk
var<workgroup> rows: array<u32, CH>;    // cache row of each position of the chunk
var<workgroup> red: array<f32, CH>;
var<workgroup> part: array<vec4<f32>, CH>;

// An E of LANES floats (the RoPE prologue builds the query, key and value from floats).
fn e_from(f: array<f32, LANES>) -> E {
    return E(f[0], f[1], f[2], f[3]);
}

// Max (`is_max`) or sum of `v` over the workgroup. Call from uniform control flow.
fn reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = CH / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = wid.x + wid.y * p.groups_x;
    let i = id / p.heads;
    let h = id % p.heads;
    let hd4 = p.head_dim / 4u;
    let kvh = h / (p.heads / p.kv_heads);
    let kw4 = p.kv_heads * hd4;
    let s = step_seq(i);
    let pos = step_position(i);
    var lo = 0u;
    if p.window != 0u && pos + 1u > p.window {
        lo = pos + 1u - p.window;
    }
    load_query(i, h, kvh, s, pos, lid);
    let n_groups = CH / hd4;
    let g = lid / hd4; // this invocation's group and output vec4
    let d4 = lid % hd4;
    var m = -3.0e38; // running max (finite, so exp(m − m_new) never makes NaN)
    var l = 0.0;     // running denominator
    var acc = vec4<f32>(0.0);
    for (var c0 = lo; c0 <= pos; c0 += CH) {
        let cnt = min(CH, pos + 1u - c0);
        // The index in the chunk of the token's own position when it is not read from the cache
        // (it is the chunk's last), else CH (none).
        let own = select(CH, pos - c0, OWN_KV && pos - c0 < CH);
        workgroupBarrier(); // qs written; the previous chunk's weights and rows read
        var score = -3.0e38;
        if lid < cnt {
            var dot4 = vec4<f32>(0.0);
            if lid == own {
                for (var d = 0u; d < hd4; d++) {
                    dot4 = fma(qs[d], own_key(d), dot4);
                }
            } else {
                let r = kv_row(s, c0 + lid, p.block_size);
                rows[lid] = r;
                let kb = r * kw4 + kvh * hd4;
                for (var d = 0u; d < hd4; d++) {
                    dot4 = fma(qs[d], k_cache[kb + d], dot4);
                }
            }
            score = ((dot4.x + dot4.y) + (dot4.z + dot4.w)) * p.scale;
        }
        let cmax = max(m, reduce(score, lid, true));
        let e = select(0.0, exp(score - cmax), lid < cnt);
        weights[lid] = e;
        let alpha = exp(m - cmax);
        l = l * alpha + reduce(e, lid, false); // its barriers also publish `weights` and `rows`
        acc *= alpha;
        m = cmax;
        if g < n_groups {
            let cached = min(cnt, own);
            for (var j = g; j < cached; j += n_groups) {
                acc = fma(vec4<f32>(weights[j]), v_cache[rows[j] * kw4 + kvh * hd4 + d4], acc);
            }
            // The own position is the chunk's last: added in the same order as from the cache.
            if own < cnt && own % n_groups == g {
                acc = fma(vec4<f32>(weights[own]), own_value(d4), acc);
            }
        }
    }
    part[lid] = select(vec4<f32>(0.0), acc, g < n_groups);
    workgroupBarrier();
    if lid < hd4 {
        var o = vec4<f32>(0.0);
        for (var k = 0u; k < n_groups; k++) {
            o += part[k * hd4 + lid];
        }
        out[(i * p.heads + h) * hd4 + lid] = o / l;
    }
}

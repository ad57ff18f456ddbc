// Attention's inputs for a decode step (one token per sequence) with RoPE and the KV store folded in:
// the query and the token's own key are rotated from the fused qkv row on load (as rope_store_kv does,
// to the bit), the own key and value are used from workgroup memory, and only earlier positions are
// read from the cache. The first query head of each kv group writes the token's key and value into
// the cache for later steps; no workgroup reads that row in this dispatch, so there is no race. The
// kernel declares `E` (f32 or vec4<f32>), `LANES` (its floats), `QN`, `qs`, `CH` and `e_from`;
// included after lib/step.wgsl and lib/cos_sin.wgsl.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;          // [n, (heads + 2·kv_heads)·head_dim]
@group(0) @binding(2) var<storage, read_write> k_cache: array<E>; // [rows, kv_heads, head_dim / LANES]
@group(0) @binding(3) var<storage, read_write> v_cache: array<E>;
@group(0) @binding(6) var<storage, read> inv_freq: array<f32>;    // [head_dim / 2]

const OWN_KV: bool = true;
var<workgroup> ks: array<E, QN>; // the token's rotated key (kv head kvh)
var<workgroup> vs: array<E, QN>; // and its value

// Float x (< head_dim) of the head starting at `src` of the qkv buffer, rotated to position `pos`.
fn rotated(src: u32, x: u32, pos: u32) -> f32 {
    let half = p.head_dim / 2u;
    let upper = x >= half;
    let j = select(x, x - half, upper);
    let cs = cos_sin(f32(pos) * inv_freq[j]);
    let x1 = qkv[src + j];
    let x2 = qkv[src + j + half];
    return select(x1 * cs.x - x2 * cs.y, x2 * cs.x + x1 * cs.y, upper);
}

// Floats LANES·d .. of the head at `src` of the qkv buffer, rotated to `pos`.
fn rope_e(src: u32, d: u32, pos: u32) -> E {
    var f: array<f32, LANES>;
    for (var c = 0u; c < LANES; c++) {
        f[c] = rotated(src, LANES * d + c, pos);
    }
    return e_from(f);
}

// Floats LANES·d .. of the head at `src` of the qkv buffer.
fn row_e(src: u32, d: u32) -> E {
    var f: array<f32, LANES>;
    for (var c = 0u; c < LANES; c++) {
        f[c] = qkv[src + LANES * d + c];
    }
    return e_from(f);
}

// Loads query head h of step token i into qs, rotated; the token's key and value of kv head kvh
// into ks and vs (and, from the group's first query head, into the cache).
fn load_query(i: u32, h: u32, kvh: u32, s: u32, pos: u32, lid: u32) {
    let hd = p.head_dim;
    let w = hd / LANES;
    let qw = p.heads * hd;
    let kw = p.kv_heads * hd;
    let row = i * (qw + 2u * kw);
    let writer = h % (p.heads / p.kv_heads) == 0u;
    let cache = kv_row(s, pos, p.block_size) * (p.kv_heads * w) + kvh * w;
    for (var d = lid; d < w; d += CH) {
        qs[d] = rope_e(row + h * hd, d, pos);
        let k = rope_e(row + qw + kvh * hd, d, pos);
        let v = row_e(row + qw + kw + kvh * hd, d);
        ks[d] = k;
        vs[d] = v;
        if writer {
            k_cache[cache + d] = k;
            v_cache[cache + d] = v;
        }
    }
}

fn own_key(d: u32) -> E {
    return ks[d];
}

fn own_value(d: u32) -> E {
    return vs[d];
}

// Attention's inputs when RoPE and the KV store ran before it (`rope_store_kv`): rotated queries, and
// every attended key and value in the cache. The kernel declares `E` (f32 or vec4<f32>), `LANES` (its
// floats), `qs` (the query in workgroup memory) and `CH`.
@group(0) @binding(1) var<storage, read> q: array<E>;       // [n, heads, head_dim / LANES]
@group(0) @binding(2) var<storage, read> k_cache: array<E>; // [rows, kv_heads, head_dim / LANES]
@group(0) @binding(3) var<storage, read> v_cache: array<E>;

// Whether the token's own key and value come from the prologue instead of the cache.
const OWN_KV: bool = false;

// Loads query head h of step token i into qs.
fn load_query(i: u32, h: u32, kvh: u32, s: u32, pos: u32, lid: u32) {
    let w = p.head_dim / LANES;
    for (var d = lid; d < w; d += CH) {
        qs[d] = q[(i * p.heads + h) * w + d];
    }
}

// Never called without OWN_KV.
fn own_key(d: u32) -> E {
    return E();
}

fn own_value(d: u32) -> E {
    return E();
}

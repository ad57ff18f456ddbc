// Embedding lookup: out[i, :] = table[step token i, :] as f32, for the rows of one table chunk.
// One invocation per (token, unit of 32 columns). Included before this file: a weight format and
// lib/step.wgsl.
struct Params {
    rows: u32,     // table rows in this chunk
    cols: u32,
    upr: u32,      // units of 32 per row
    row0: u32,     // first table row of this chunk
    n: u32,        // tokens
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// The activation row of token `t` (only the weight library's gemv helper reads through it).
fn in_row(t: u32) -> u32 {
    return t;
}
@group(0) @binding(3) var<storage, read> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = (wid.x + wid.y * p.groups_x) * 64u + lid;
    if id >= p.n * p.upr {
        return;
    }
    let i = id / p.upr;
    let u = id % p.upr;
    let tok = step_token(i);
    if tok < p.row0 || tok >= p.row0 + p.rows {
        return;
    }
    let w = load_unit(tok - p.row0, u, p.upr);
    for (var e = 0u; e < 32u; e++) {
        let c = u * 32u + e;
        if c < p.cols {
            out[i * p.cols + c] = w[e / 4u][e % 4u];
        }
    }
}

// SwiGLU: out[r, j] = silu(gu[r, j]) · gu[r, ffn + j], silu(v) = v / (1 + exp(−v)).
struct Params {
    rows: u32,
    ffn: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gu: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = (wid.x + wid.y * p.groups_x) * 256u + lid;
    if id >= p.rows * p.ffn {
        return;
    }
    let r = id / p.ffn;
    let j = id % p.ffn;
    let g = gu[r * 2u * p.ffn + j];
    out[id] = g / (1.0 + exp(-g)) * gu[r * 2u * p.ffn + p.ffn + j];
}

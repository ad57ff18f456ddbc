// RMS norm, HF LlamaRMSNorm in f32: out[r, :] = w · (x[r, :] · 1/sqrt(mean(x[r, :]²) + eps)).
// One workgroup per row. Included before this file: a reduction (`reduce_sum`).
struct Params {
    dim: u32,
    eps: f32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 @SG_PARAMS@) {
    let ln = lanes(lid @SG_ARGS@);
    let base = (wid.x + wid.y * p.groups_x) * p.dim;
    // Four independent loads per iteration: a single workgroup per row is latency-bound.
    var ss = vec4<f32>(0.0);
    var j = lid;
    for (; j + 3u * WG < p.dim; j += 4u * WG) {
        let v = vec4<f32>(x[base + j], x[base + j + WG], x[base + j + 2u * WG], x[base + j + 3u * WG]);
        ss = fma(v, v, ss);
    }
    for (; j < p.dim; j += WG) {
        let v = x[base + j];
        ss.x = fma(v, v, ss.x);
    }
    let total = reduce_sum((ss.x + ss.y) + (ss.z + ss.w), ln);
    let inv = 1.0 / sqrt(total / f32(p.dim) + p.eps);
    for (var j = lid; j < p.dim; j += WG) {
        out[base + j] = w[j] * (x[base + j] * inv);
    }
}

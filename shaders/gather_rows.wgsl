// Output rows: dst[i, :] = src[step output row i, :]. Included before this file: lib/step.wgsl.
struct Params {
    cols: u32,
    n: u32, // output rows
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> step: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = (wid.x + wid.y * p.groups_x) * 256u + lid;
    if id >= p.n * p.cols {
        return;
    }
    let i = id / p.cols;
    let c = id % p.cols;
    dst[id] = src[step_output_row(i) * p.cols + c];
}

// Copy of a range: dst[dst_off + i] = src[src_off + i] for i < len. `copy_within` moves a range
// inside one buffer (the ranges never overlap: the backend checks it).
struct Params {
    src_off: u32,
    dst_off: u32,
    len: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * p.groups_x) * 256u + lid;
    if i < p.len {
        dst[p.dst_off + i] = src[p.src_off + i];
    }
}

@compute @workgroup_size(256)
fn copy_within(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * p.groups_x) * 256u + lid;
    if i < p.len {
        dst[p.dst_off + i] = dst[p.src_off + i];
    }
}

// Greedy pick: out[r] = index of the largest x[r, :], the first on ties; NaN never wins (0 when
// every element is NaN). One workgroup per row; (value, index) pairs reduced in workgroup memory.
struct Params {
    cols: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

const NONE: u32 = 0xffffffffu;
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Whether candidate (v, i) beats (bv, bi): a real index beats none, a larger value wins, then the
// smaller index.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if i == NONE {
        return false;
    }
    return bi == NONE || v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * p.groups_x;
    var bv = 0.0;
    var bi = NONE;
    for (var j = lid; j < p.cols; j += 256u) {
        let v = x[row * p.cols + j];
        // NaN by its bits: a compiler may fold `v == v` to true.
        let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
        if !nan && better(v, j, bv, bi) {
            bv = v;
            bi = j;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s && better(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid]) {
            best_v[lid] = best_v[lid + s];
            best_i[lid] = best_i[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[row] = select(best_i[0], 0u, best_i[0] == NONE);
    }
}

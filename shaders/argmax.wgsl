// Greedy pick: out[r] = index of the largest x[r, :], the first on ties; NaN never wins (0 when
// every element is NaN). Two passes, so a long row (the vocabulary) is read by many workgroups:
// `partial` reduces `span` columns per workgroup to a (value, index) pair, `main` reduces a row's
// pairs. (value, index) pairs are reduced in workgroup memory.
struct Params {
    cols: u32,
    parts: u32, // pairs per row
    span: u32,  // columns per pair
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // pairs (partial) or ids (main)
@group(0) @binding(3) var<storage, read> pairs: array<u32>;    // [rows, parts, (value bits, index)]

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

// The workgroup's best of each invocation's (bv, bi), valid in invocation 0.
fn reduce_best(bv: f32, bi: u32, lid: u32) -> vec2<u32> {
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
    return vec2<u32>(bitcast<u32>(best_v[0]), best_i[0]);
}

// Pass 1: workgroup (part, row) reduces columns part·span .. (part + 1)·span of its row.
@compute @workgroup_size(256)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = wid.x + wid.y * p.groups_x;
    let row = id / p.parts;
    let part = id % p.parts;
    let end = min(p.cols, (part + 1u) * p.span);
    var bv = 0.0;
    var bi = NONE;
    for (var j = part * p.span + lid; j < end; j += 256u) {
        let v = x[row * p.cols + j];
        // NaN by its bits: a compiler may fold `v == v` to true.
        let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
        if !nan && better(v, j, bv, bi) {
            bv = v;
            bi = j;
        }
    }
    let best = reduce_best(bv, bi, lid);
    if lid == 0u {
        out[2u * id] = best.x;
        out[2u * id + 1u] = best.y;
    }
}

// Pass 2: one workgroup per row reduces the row's pairs.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * p.groups_x;
    var bv = 0.0;
    var bi = NONE;
    for (var k = lid; k < p.parts; k += 256u) {
        let at = 2u * (row * p.parts + k);
        let v = bitcast<f32>(pairs[at]);
        if better(v, pairs[at + 1u], bv, bi) {
            bv = v;
            bi = pairs[at + 1u];
        }
    }
    let best = reduce_best(bv, bi, lid);
    if lid == 0u {
        out[row] = select(best.y, 0u, best.y == NONE);
    }
}

// Workgroup sum without subgroup operations: a tree in workgroup memory (WG is a power of two).
var<workgroup> red: array<f32, WG>;

struct Lanes { lid: u32 }

fn lanes(lid: u32) -> Lanes {
    return Lanes(lid);
}

// The sum of `v` over the workgroup, returned to every invocation. Call from uniform control flow.
fn reduce_sum(v: f32, ln: Lanes) -> f32 {
    red[ln.lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if ln.lid < s {
            red[ln.lid] += red[ln.lid + s];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

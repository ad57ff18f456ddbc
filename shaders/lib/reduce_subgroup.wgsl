// Workgroup sum through subgroup operations: one subgroupAdd, one partial per subgroup in workgroup
// memory, then every invocation adds the partials. Any subgroup size works (4 to 128 lanes).
var<workgroup> red: array<f32, 64>;

struct Lanes { lid: u32, sg: u32, n_sg: u32, lane: u32 }

fn lanes(lid: u32, sg: u32, n_sg: u32, lane: u32) -> Lanes {
    return Lanes(lid, sg, n_sg, lane);
}

// The sum of `v` over the workgroup, returned to every invocation. Call from uniform control flow.
fn reduce_sum(v: f32, ln: Lanes) -> f32 {
    let s = subgroupAdd(v);
    if ln.lane == 0u {
        red[ln.sg] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < ln.n_sg; i++) {
        t += red[i];
    }
    workgroupBarrier();
    return t;
}

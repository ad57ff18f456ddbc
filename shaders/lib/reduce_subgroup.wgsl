// Workgroup sum through subgroup operations: one subgroupAdd, one partial per subgroup in workgroup
// memory, then every invocation adds the partials. Any subgroup size works (4 to 128 lanes).
var<workgroup> red: array<f32, 64>;

struct Lanes { lid: u32, sg: u32, n_sg: u32, lane: u32, size: u32 }

fn lanes(lid: u32, sg: u32, n_sg: u32, lane: u32, size: u32) -> Lanes {
    return Lanes(lid, sg, n_sg, lane, size);
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

// Teams: the invocations that sum one gemv row together. Here a team is one subgroup.
fn team(ln: Lanes) -> u32 {
    return ln.sg;
}

fn n_teams(ln: Lanes) -> u32 {
    return ln.n_sg;
}

fn team_lane(ln: Lanes) -> u32 {
    return ln.lane;
}

fn team_size(ln: Lanes) -> u32 {
    return ln.size;
}

// The sum of `v` over the team (valid in lane 0). Call from control flow uniform in the team.
fn team_sum(v: f32, ln: Lanes) -> f32 {
    return subgroupAdd(v);
}

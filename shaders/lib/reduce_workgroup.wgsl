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

// Teams: the invocations that sum one gemv row together. Here 32 consecutive invocations.
const TEAM: u32 = 32u;

fn team(ln: Lanes) -> u32 {
    return ln.lid / TEAM;
}

fn n_teams(ln: Lanes) -> u32 {
    return WG / TEAM;
}

fn team_lane(ln: Lanes) -> u32 {
    return ln.lid % TEAM;
}

fn team_size(ln: Lanes) -> u32 {
    return TEAM;
}

// The sum of `v` over the team (valid in lane 0). Call from uniform control flow.
fn team_sum(v: f32, ln: Lanes) -> f32 {
    red[ln.lid] = v;
    workgroupBarrier();
    var s = 0.0;
    if ln.lid % TEAM == 0u {
        for (var i = 0u; i < TEAM; i++) {
            s += red[ln.lid + i];
        }
    }
    workgroupBarrier();
    return s;
}

// Matrix-vector product for a few tokens (decode): out[t, row0 + r] (+)= s[t]·Σ_k W[r, k]·in(t, k) + bias.
// A team of invocations (a subgroup, or 32 invocations without subgroups) owns NR (1 or 2) weight
// rows at a time: its lanes read consecutive 16-byte words of each row (coalesced), two words per
// row in flight per lane, load each input piece once for the NR rows, and the team sums its lanes'
// partial dot products. Straight-line code with no arrays in the loop, so that every value stays in
// registers. Included before this file: a reduction library (`reduce_sum`, `team_sum`), a weight
// format (`dot_piece`, `PPU` words per unit, `PX` input vec4s per word), an activation reader
// (`x4_at`) and an input (`in4`: plain, RMS-normed or SwiGLU; `input_scales`: the factor s).
struct Params {
    rows: u32,       // weight rows in this chunk
    cols: u32,       // weight columns (= input row length)
    upr: u32,        // units of 32 per weight row
    row0: u32,       // first output column of this chunk
    out_stride: u32, // output row length (all rows of the weight)
    accumulate: u32, // 1: out += result
    has_bias: u32,
    eps: f32,        // RMS-norm epsilon of a normed input
    rows_per_wg: u32,
    t0: u32,         // first token row of this dispatch (tokens t0 .. t0 + T)
    groups_x: u32,   // workgroups along x of the 2-D grid
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const T: u32 = @T@u;
const NR: u32 = @NR@u;

// The activation row of token `t` of this dispatch (the input libraries read through it).
fn in_row(t: u32) -> u32 {
    return p.t0 + t;
}

// The inputs of word `pc` of a row for token `t`: PX vec4s, the first four in `lo`.
struct Piece { lo: mat4x4<f32>, hi: mat4x4<f32> }

fn piece_inputs(t: u32, pc: u32) -> Piece {
    let c = pc * PX;
    let z = vec4<f32>(0.0);
    var lo = mat4x4<f32>(in4(t, c), z, z, z);
    var hi = mat4x4<f32>(z, z, z, z);
    if PX > 1u {
        lo[1] = in4(t, c + 1u);
    }
    if PX > 2u {
        lo[2] = in4(t, c + 2u);
        lo[3] = in4(t, c + 3u);
    }
    if PX > 4u {
        hi = mat4x4<f32>(in4(t, c + 4u), in4(t, c + 5u), in4(t, c + 6u), in4(t, c + 7u));
    }
    return Piece(lo, hi);
}

// Writes one result: scaled, plus bias, plus the old value when accumulating.
fn store(t: u32, row: u32, total: f32, scale: f32) {
    let o = in_row(t) * p.out_stride + p.row0 + row;
    var v = scale * total;
    if p.has_bias != 0u {
        v += bias[p.row0 + row];
    }
    if p.accumulate != 0u {
        v += out[o];
    }
    out[o] = v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 @SG_PARAMS@) {
    let ln = lanes(lid @SG_ARGS@);
    let scales = input_scales(ln);
    let first = (wid.x + wid.y * p.groups_x) * p.rows_per_wg;
    let ppr = p.upr * PPU; // words per row
    let lane = team_lane(ln);
    let size = team_size(ln);
    let teams = n_teams(ln);
    // Every team runs the same number of rounds, so the team sums stay in uniform control flow.
    let rounds = (p.rows_per_wg + NR * teams - 1u) / (NR * teams);
    for (var k = 0u; k < rounds; k++) {
        let r0 = (team(ln) + k * teams) * NR; // first row of the team, within the workgroup
        let ra = min(first + r0, p.rows - 1u); // rows clamped into the chunk
        let rb = min(first + r0 + NR - 1u, p.rows - 1u);
        var acc_a: array<f32, T>;
        var acc_b: array<f32, T>;
        for (var pc = lane; pc < ppr; pc += 2u * size) {
            // The second word past the row is read clamped and its products dropped.
            let pc1 = min(pc + size, ppr - 1u);
            let has1 = pc + size < ppr;
            let wa0 = wq[ra * ppr + pc];
            let wa1 = wq[ra * ppr + pc1];
            var wb0 = wa0;
            var wb1 = wa1;
            if NR > 1u {
                wb0 = wq[rb * ppr + pc];
                wb1 = wq[rb * ppr + pc1];
            }
            for (var t = 0u; t < T; t++) {
                let x0 = piece_inputs(t, pc);
                let x1 = piece_inputs(t, pc1);
                let da1 = dot_piece(wa1, ra, pc1, x1.lo, x1.hi);
                acc_a[t] += dot_piece(wa0, ra, pc, x0.lo, x0.hi) + select(0.0, da1, has1);
                if NR > 1u {
                    let db1 = dot_piece(wb1, rb, pc1, x1.lo, x1.hi);
                    acc_b[t] += dot_piece(wb0, rb, pc, x0.lo, x0.hi) + select(0.0, db1, has1);
                }
            }
        }
        for (var t = 0u; t < T; t++) {
            let total_a = team_sum(acc_a[t], ln);
            if lane == 0u && r0 < p.rows_per_wg && first + r0 < p.rows {
                store(t, first + r0, total_a, scales[t]);
            }
            if NR > 1u {
                let total_b = team_sum(acc_b[t], ln);
                if lane == 0u && r0 + 1u < p.rows_per_wg && first + r0 + 1u < p.rows {
                    store(t, first + r0 + 1u, total_b, scales[t]);
                }
            }
        }
    }
}

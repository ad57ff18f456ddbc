// Matrix-vector product for a few tokens (decode): out[t, row0 + r] (+)= s[t]·Σ_k W[r, k]·in(t, k) + bias.
// A team of invocations (a subgroup, or 32 invocations without subgroups) owns NR weight rows at a
// time: its lanes read consecutive 16-byte words of each row (coalesced), two words per row in
// flight per lane, load each input piece once for the NR rows, and the team sums its lanes' partial
// dot products. Included before this file: a reduction library (`reduce_sum`, `team_sum`), a weight
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
const NR: u32 = 4u;

// The activation row of token `t` of this dispatch (the input libraries read through it).
fn in_row(t: u32) -> u32 {
    return p.t0 + t;
}

// The inputs of word `pc` of a row for token `t`: PX vec4s.
fn piece_inputs(t: u32, pc: u32) -> array<vec4<f32>, 8> {
    var xs: array<vec4<f32>, 8>;
    for (var j = 0u; j < PX; j++) {
        xs[j] = in4(t, pc * PX + j);
    }
    return xs;
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
        var rr: array<u32, NR>; // the rows, clamped into the chunk
        for (var r = 0u; r < NR; r++) {
            rr[r] = min(first + r0 + r, p.rows - 1u);
        }
        var acc: array<array<f32, NR>, T>;
        for (var pc = lane; pc < ppr; pc += 2u * size) {
            // The second word past the row is read clamped and its products dropped.
            let pc1 = min(pc + size, ppr - 1u);
            let has1 = pc + size < ppr;
            var w0: array<vec4<u32>, NR>;
            var w1: array<vec4<u32>, NR>;
            for (var r = 0u; r < NR; r++) {
                w0[r] = wq[rr[r] * ppr + pc];
                w1[r] = wq[rr[r] * ppr + pc1];
            }
            for (var t = 0u; t < T; t++) {
                let xs0 = piece_inputs(t, pc);
                let xs1 = piece_inputs(t, pc1);
                for (var r = 0u; r < NR; r++) {
                    let d1 = dot_piece(w1[r], rr[r], pc1, xs1);
                    acc[t][r] += dot_piece(w0[r], rr[r], pc, xs0) + select(0.0, d1, has1);
                }
            }
        }
        for (var t = 0u; t < T; t++) {
            for (var r = 0u; r < NR; r++) {
                let total = team_sum(acc[t][r], ln);
                let row = first + r0 + r;
                if lane == 0u && r0 + r < p.rows_per_wg && row < p.rows {
                    let o = in_row(t) * p.out_stride + p.row0 + row;
                    var v = scales[t] * total;
                    if p.has_bias != 0u {
                        v += bias[p.row0 + row];
                    }
                    if p.accumulate != 0u {
                        v += out[o];
                    }
                    out[o] = v;
                }
            }
        }
    }
}

// Matrix-vector product for a few tokens (decode): out[t, row0 + r] (+)= s[t]·Σ_k W[r, k]·in(t, k) + bias.
// A team of invocations (a subgroup, or 32 invocations without subgroups) owns one weight row at a
// time; its lanes read consecutive 16-byte words of the row (coalesced), four words in flight per
// lane, and the team sums its lanes' partial dot products. Included before this file: a reduction
// library (`reduce_sum`, `team_sum`), a weight format (`dot_piece`, `PPU`), an activation reader
// (`x4_at`) and an input (`in4`: plain, RMS-normed or SwiGLU; `input_scales`: the per-token factor s).
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

// The activation row of token `t` of this dispatch (the input libraries read through it).
fn in_row(t: u32) -> u32 {
    return p.t0 + t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 @SG_PARAMS@) {
    let ln = lanes(lid @SG_ARGS@);
    let scales = input_scales(ln);
    let first = (wid.x + wid.y * p.groups_x) * p.rows_per_wg;
    let ppr = p.upr * PPU; // words per row
    let lane = team_lane(ln);
    let size = team_size(ln);
    // Every team runs the same number of rounds, so the team sums stay in uniform control flow.
    let rounds = (p.rows_per_wg + n_teams(ln) - 1u) / n_teams(ln);
    for (var k = 0u; k < rounds; k++) {
        let r = team(ln) + k * n_teams(ln);
        let row = first + r;
        let valid = r < p.rows_per_wg && row < p.rows;
        let rr = min(row, p.rows - 1u);
        let base = rr * ppr;
        var acc: array<f32, T>;
        for (var pc = lane; pc < ppr; pc += 4u * size) {
            // Words past the row are read clamped and their products dropped.
            let p1 = min(pc + size, ppr - 1u);
            let p2 = min(pc + 2u * size, ppr - 1u);
            let p3 = min(pc + 3u * size, ppr - 1u);
            let w0 = wq[base + pc];
            let w1 = wq[base + p1];
            let w2 = wq[base + p2];
            let w3 = wq[base + p3];
            for (var t = 0u; t < T; t++) {
                var d = dot_piece(w0, rr, pc, t);
                d += select(0.0, dot_piece(w1, rr, p1, t), pc + size < ppr);
                d += select(0.0, dot_piece(w2, rr, p2, t), pc + 2u * size < ppr);
                d += select(0.0, dot_piece(w3, rr, p3, t), pc + 3u * size < ppr);
                acc[t] += d;
            }
        }
        for (var t = 0u; t < T; t++) {
            let total = team_sum(acc[t], ln);
            if lane == 0u && valid {
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

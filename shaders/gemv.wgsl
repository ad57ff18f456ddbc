// Matrix-vector product for a few tokens (decode): out[t, row0 + r] (+)= Σ_k W[r, k]·x[t, k] + bias.
// Each workgroup owns NR weight rows; its invocations stride over the rows' 32-element units, so
// every weight byte is read once, with wide loads, and x stays in cache. Included before this file:
// a weight format (`load_unit`), an activation reader (`load_x`) and a reduction (`reduce_sum`).
struct Params {
    rows: u32,       // weight rows in this chunk
    cols: u32,       // weight columns (= x row length)
    upr: u32,        // units of 32 per weight row
    row0: u32,       // first output column of this chunk
    out_stride: u32, // output row length (all rows of the weight)
    accumulate: u32, // 1: out += result
    has_bias: u32,
    groups_x: u32,   // workgroups along x of the 2-D grid
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const NR: u32 = 4u; // rows per workgroup: the four lanes of acc[t]
const T: u32 = @T@u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 @SG_PARAMS@) {
    let ln = lanes(lid @SG_ARGS@);
    let r0 = (wid.x + wid.y * p.groups_x) * NR;
    var acc: array<vec4<f32>, T>; // acc[t][r]
    let rl = p.rows - 1u;
    let rows = vec4<u32>(min(r0, rl), min(r0 + 1u, rl), min(r0 + 2u, rl), min(r0 + 3u, rl));
    for (var u = lid; u < p.upr; u += WG) {
        for (var t = 0u; t < T; t++) {
            acc[t] += vec4<f32>(
                dot_unit(rows.x, u, p.upr, t, p.cols),
                dot_unit(rows.y, u, p.upr, t, p.cols),
                dot_unit(rows.z, u, p.upr, t, p.cols),
                dot_unit(rows.w, u, p.upr, t, p.cols),
            );
        }
    }
    for (var r = 0u; r < NR; r++) {
        for (var t = 0u; t < T; t++) {
            let total = reduce_sum(acc[t][r], ln);
            let row = r0 + r;
            if lid == 0u && row < p.rows {
                let o = t * p.out_stride + p.row0 + row;
                var v = total;
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

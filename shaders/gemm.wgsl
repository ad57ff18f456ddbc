// Tiled matrix product for many tokens (prefill): out[t, row0 + r] (+)= Σ_k x[t, k]·W[r, k] + bias.
// A workgroup computes a 64-token × 64-row tile; per step of 32 columns it dequantizes 64 weight
// units and loads 64×32 activations into workgroup memory, then each invocation accumulates a 4×4
// block of the tile (4 consecutive tokens × 4 consecutive rows: two vec4 reads of workgroup
// memory per 16 multiply-adds). Included before this file: a weight format (`load_unit`), `load_x4` and
// lib/gemm_io.wgsl (`Params`, `store_out`).

const TM: u32 = 64u; // tokens per tile
const TN: u32 = 64u; // weight rows per tile
var<workgroup> xs: array<vec4<f32>, 512>; // [k = 32][token / 4 = 16]
var<workgroup> wt: array<vec4<f32>, 512>; // [k = 32][row / 4 = 16]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = wid.y * TM;
    let n0 = wid.x * TN;
    let tm = lid / 16u; // this invocation's tokens: t0 + 4·tm + i
    let tn = lid % 16u; // this invocation's rows: n0 + 4·tn + j
    var acc: array<vec4<f32>, 4>; // acc[i][j]
    for (var u = 0u; u < p.upr; u++) {
        if lid < 64u {
            // One weight unit per invocation, transposed into wt[k][row].
            let w = load_unit(min(n0 + lid, p.rows - 1u), u, p.upr);
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    wt[(i * 4u + j) * 16u + lid / 4u][lid % 4u] = w[i][j];
                }
            }
        } else {
            // The other 192 invocations load 64 tokens × 8 vec4 of activations into xs[k][token].
            for (var e = lid - 64u; e < 512u; e += 192u) {
                let tok = e / 8u;
                let part = e % 8u;
                let v = load_x4(min(t0 + tok, p.tokens - 1u), u, part, p.cols);
                for (var j = 0u; j < 4u; j++) {
                    xs[(part * 4u + j) * 16u + tok / 4u][tok % 4u] = v[j];
                }
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let a = xs[k * 16u + tm];
            let b = wt[k * 16u + tn];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + tm * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let r = n0 + tn * 4u + j;
            if t < p.tokens && r < p.rows {
                store_out(t, r, acc[i][j]);
            }
        }
    }
}

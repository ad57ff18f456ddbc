// The parameters and output of the matrix-product kernels (gemm.wgsl, gemm_coop.wgsl):
// out[t, row0 + r] (+)= Σ_k x[t, k]·W[r, k] + bias.
struct Params {
    rows: u32,       // weight rows in this chunk
    cols: u32,       // weight columns (= x row length)
    upr: u32,        // units of 32 per weight row
    row0: u32,       // first output column of this chunk
    out_stride: u32, // output row length (all rows of the weight)
    accumulate: u32, // 1: out += result
    has_bias: u32,
    tokens: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Writes `sum` for token `t` and weight row `r` of this chunk, with the bias and accumulation.
fn store_out(t: u32, r: u32, sum: f32) {
    let o = t * p.out_stride + p.row0 + r;
    var v = sum;
    if p.has_bias != 0u {
        v += bias[p.row0 + r];
    }
    if p.accumulate != 0u {
        v += out[o];
    }
    out[o] = v;
}

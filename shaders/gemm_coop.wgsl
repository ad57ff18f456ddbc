// Matrix product on cooperative matrices (tensor cores): out[t, row0 + r] (+)= Σ_k x[t, k]·W[r, k] + bias,
// f16 operands and f32 accumulation, for batched decode and prefill. Needs subgroups of exactly 32.
// A workgroup is 4 subgroups. Each owns a 16-row block of W and a slice of the K units; with `ksplit`
// slices (1, 2 or 4) the workgroup covers 16·(4 / ksplit) rows of one 32-token tile. One slice per
// subgroup keeps many workgroups busy on narrow matrices (decode); whole rows let the 4 subgroups share
// the activation tile (prefill). Per unit of 32 columns every invocation stages activations and
// dequantized weights as f16 in workgroup memory; each subgroup then does 2 × 2 multiply-adds of 16×16
// tiles. The slices' partial sums meet in workgroup memory at the end.
// Included before this file: `enable f16; enable wgpu_cooperative_matrix;` (directives come first), a
// weight format (`load_w4`) and `load_x4`.

struct Params {
    rows: u32,       // weight rows in this chunk
    cols: u32,       // weight columns (= x row length)
    upr: u32,        // units of 32 per weight row
    row0: u32,       // first output column of this chunk
    out_stride: u32, // output row length (all rows of the weight)
    accumulate: u32, // 1: out += result
    has_bias: u32,
    tokens: u32,
    ksplit: u32,     // K slices per workgroup: 1, 2 or 4
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const TT: u32 = 32u; // tokens per tile
const BK: u32 = 32u; // columns per step (one unit)
var<workgroup> xs: array<f16, 4096>; // [slice 4][token 32][k 32]
var<workgroup> wt: array<f16, 2048>; // [subgroup 4][row 16][k 32]
var<workgroup> cs: array<f32, 2048>; // [subgroup 4][token 32][row 16]

@compute @workgroup_size(128)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let ks = p.ksplit;
    let blocks = 4u / ks;
    let n0 = wid.x * 16u * blocks;
    let t0 = wid.y * TT;
    let per_slice = (p.upr + ks - 1u) / ks;
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    for (var j = 0u; j < per_slice; j++) {
        // Activations: ks slices × 32 tokens × 8 vec4.
        for (var e = lid; e < ks * 256u; e += 128u) {
            let slice = e / 256u;
            let tok = (e / 8u) % TT;
            let part = e % 8u;
            let u = slice * per_slice + j;
            var v = vec4<f32>(0.0);
            if u < p.upr {
                v = load_x4(min(t0 + tok, p.tokens - 1u), u, part, p.cols);
            }
            let o = slice * 1024u + tok * BK + part * 4u;
            xs[o] = f16(v.x);
            xs[o + 1u] = f16(v.y);
            xs[o + 2u] = f16(v.z);
            xs[o + 3u] = f16(v.w);
        }
        // Weights: 4 subgroups × 16 rows × 8 vec4.
        for (var e = lid; e < 512u; e += 128u) {
            let s = e / 128u;
            let r = (e / 8u) % 16u;
            let part = e % 8u;
            let u = (s % ks) * per_slice + j;
            var w = vec4<f32>(0.0);
            if u < p.upr {
                w = load_w4(min(n0 + (s / ks) * 16u + r, p.rows - 1u), u, p.upr, part);
            }
            let o = s * 512u + r * BK + part * 4u;
            wt[o] = f16(w.x);
            wt[o + 1u] = f16(w.y);
            wt[o + 2u] = f16(w.z);
            wt[o + 3u] = f16(w.w);
        }
        workgroupBarrier();
        let xo = (sg % ks) * 1024u;
        let wo = sg * 512u;
        for (var kk = 0u; kk < BK; kk += 16u) {
            // B is k × row: column-major over wt[row][k]; A is token × k: row-major over xs[token][k].
            let b = coopLoad<coop_mat16x16<f16, B>>(&wt[wo + kk], BK);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xo + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xo + 16u * BK + kk], BK);
            c0 = coopMultiplyAdd(a0, b, c0);
            c1 = coopMultiplyAdd(a1, b, c1);
        }
        workgroupBarrier();
    }
    coopStoreT(c0, &cs[sg * 512u], 16u);
    coopStoreT(c1, &cs[sg * 512u + 256u], 16u);
    workgroupBarrier();
    // Sum the slices of each row block and write: consecutive invocations take consecutive rows.
    for (var e = lid; e < blocks * 512u; e += 128u) {
        let block = e / 512u;
        let t = (e / 16u) % TT;
        let r = e % 16u;
        let row = n0 + block * 16u + r;
        if t0 + t < p.tokens && row < p.rows {
            var v = 0.0;
            for (var s = 0u; s < ks; s++) {
                v += cs[(block * ks + s) * 512u + t * 16u + r];
            }
            let o = (t0 + t) * p.out_stride + p.row0 + row;
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

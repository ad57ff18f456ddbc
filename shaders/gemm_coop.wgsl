// Matrix product on cooperative matrices (tensor cores): out[t, row0 + r] (+)= Σ_k x[t, k]·W[r, k] + bias,
// f16 operands and f32 accumulation, for batched decode and prefill. Needs subgroups of exactly 32.
// A workgroup is 4 subgroups. Each owns a 16-row block of W and one of KS slices of the K units; the
// workgroup covers 16·(4 / KS) rows of one 32-token tile. Whole rows (KS = 1) let the 4 subgroups share
// the activation tile (prefill); more slices make more, narrower workgroups (decode of few tokens).
// Per step of 64 columns every invocation stages activations and dequantized weights as f16 in
// workgroup memory, and each subgroup does 4 × 2 multiply-adds of 16×16 tiles. The next step's global
// loads are issued before this step's multiply-adds, into registers: the REGS, FETCH and PUT
// placeholders become straight-line lists of variables and `fetch_*` / `put_*` calls written out by the
// kernel builder (arrays indexed in loops would live in slow local memory). The slices' sums meet at the end.
// Included before this file: `enable f16; enable wgpu_cooperative_matrix;` (directives come first), a
// weight format (`load_w4`), `load_x4` and lib/gemm_io.wgsl (`Params`, `store_out`); `const KS` is set
// by the builder.

const TT: u32 = 32u; // tokens per tile
const BK: u32 = 64u; // columns per step (two units)
const BLOCKS: u32 = 4u / KS; // 16-row blocks per workgroup
var<workgroup> xs: array<f16, KS * 2048u>; // [slice][token 32][k 64]
var<workgroup> wt: array<f16, 4096>; // [subgroup 4][row 16][k 64]
var<workgroup> cs: array<f32, 2048>; // [subgroup 4][token 32][row 16]

// Where this workgroup is: first weight row and token, and units per slice (even).
struct Tile {
    n0: u32,
    t0: u32,
    per_slice: u32,
}

// Activations of entry `e` of a step (KS slices × 32 tokens × 16 vec4) at unit offset `j`.
fn fetch_x(tile: Tile, e: u32, j: u32) -> vec4<f32> {
    let slice = e / 512u;
    let tok = (e / 16u) % TT;
    let part = e % 16u;
    let u = slice * tile.per_slice + j + part / 8u;
    let t = min(tile.t0 + tok, p.tokens - 1u);
    return select(vec4<f32>(0.0), load_x4(t, min(u, p.upr - 1u), part % 8u, p.cols), u < p.upr);
}

fn put_x(e: u32, v: vec4<f32>) {
    let o = (e / 512u) * 2048u + ((e / 16u) % TT) * BK + (e % 16u) * 4u;
    xs[o] = f16(v.x);
    xs[o + 1u] = f16(v.y);
    xs[o + 2u] = f16(v.z);
    xs[o + 3u] = f16(v.w);
}

// Weights of entry `e` of a step (4 subgroups × 16 rows × 16 vec4) at unit offset `j`.
fn fetch_w(tile: Tile, e: u32, j: u32) -> vec4<f32> {
    let s = e / 256u;
    let r = (e / 16u) % 16u;
    let part = e % 16u;
    let u = (s % KS) * tile.per_slice + j + part / 8u;
    let row = min(tile.n0 + (s / KS) * 16u + r, p.rows - 1u);
    return select(vec4<f32>(0.0), load_w4(row, min(u, p.upr - 1u), p.upr, part % 8u), u < p.upr);
}

fn put_w(e: u32, v: vec4<f32>) {
    let o = (e / 256u) * 1024u + ((e / 16u) % 16u) * BK + (e % 16u) * 4u;
    wt[o] = f16(v.x);
    wt[o + 1u] = f16(v.y);
    wt[o + 2u] = f16(v.z);
    wt[o + 3u] = f16(v.w);
}

@compute @workgroup_size(128)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let per_slice = ((p.upr + KS - 1u) / KS + 1u) / 2u * 2u;
    let tile = Tile(wid.x * 16u * BLOCKS, wid.y * TT, per_slice);
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    let xo = (sg % KS) * 2048u;
    let wo = sg * 1024u;
    var j = 0u;
    @REGS@
    @FETCH@
    loop {
        @PUT@
        workgroupBarrier();
        j += 2u;
        if j < per_slice {
            @FETCH@
        }
        for (var kk = 0u; kk < BK; kk += 16u) {
            // B is k × row: column-major over wt[row][k]; A is token × k: row-major over xs[token][k].
            let b = coopLoad<coop_mat16x16<f16, B>>(&wt[wo + kk], BK);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xo + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[xo + 16u * BK + kk], BK);
            c0 = coopMultiplyAdd(a0, b, c0);
            c1 = coopMultiplyAdd(a1, b, c1);
        }
        workgroupBarrier();
        if j >= per_slice {
            break;
        }
    }
    coopStoreT(c0, &cs[sg * 512u], 16u);
    coopStoreT(c1, &cs[sg * 512u + 256u], 16u);
    workgroupBarrier();
    // Sum the slices of each row block and write: consecutive invocations take consecutive rows.
    for (var e = lid; e < BLOCKS * 512u; e += 128u) {
        let block = e / 512u;
        let t = (e / 16u) % TT;
        let r = e % 16u;
        let row = tile.n0 + block * 16u + r;
        if tile.t0 + t < p.tokens && row < p.rows {
            var v = 0.0;
            for (var s = 0u; s < KS; s++) {
                v += cs[(block * KS + s) * 512u + t * 16u + r];
            }
            store_out(tile.t0 + t, row, v);
        }
    }
}

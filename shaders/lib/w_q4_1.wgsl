// Weight format Q4_1 (llama.cpp blocks of 32: f16 scale d and minimum m, 16 bytes of nibbles laid out
// as Q4_0; w = d·q + m), stored split: the nibbles of block b in wq[b], (d, m) as one word in ws[b].
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

// The low (shift 0) or high (shift 4) nibbles of the four bytes of a word.
fn nib4(w: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) >> vec4<u32>(shift)) & vec4<u32>(15u));
}

// The 32 weights of block `u` of weight row `row`; `upr` blocks per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let b = row * upr + u;
    let dm = unpack2x16float(ws[b]);
    let d = vec4<f32>(dm.x);
    let m = vec4<f32>(dm.y);
    let q = wq[b];
    var o: array<vec4<f32>, 8>;
    o[0] = fma(nib4(q.x, 0u), d, m);
    o[1] = fma(nib4(q.y, 0u), d, m);
    o[2] = fma(nib4(q.z, 0u), d, m);
    o[3] = fma(nib4(q.w, 0u), d, m);
    o[4] = fma(nib4(q.x, 4u), d, m);
    o[5] = fma(nib4(q.y, 4u), d, m);
    o[6] = fma(nib4(q.z, 4u), d, m);
    o[7] = fma(nib4(q.w, 4u), d, m);
    return o;
}

// Pieces (16-byte words of `wq`) per block of 32 weights.
const PPU: u32 = 1u;

// Σ of the 32 weights of block word `w` (piece `pc` of row `row`) times the matching inputs of token
// `t`: nibbles times inputs first, then d·Σ q·x + m·Σ x.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, t: u32) -> f32 {
    var qx = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let lo = in4(t, 8u * pc + i);
        let hi = in4(t, 8u * pc + i + 4u);
        qx = fma(nib4(w[i], 0u), lo, qx);
        qx = fma(nib4(w[i], 4u), hi, qx);
        sx += lo + hi;
    }
    let dm = unpack2x16float(ws[row * p.upr + pc]);
    return dm.x * ((qx.x + qx.y) + (qx.z + qx.w)) + dm.y * ((sx.x + sx.y) + (sx.z + sx.w));
}

// Weights 4i .. 4i + 4 of block `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    let b = row * upr + u;
    let dm = unpack2x16float(ws[b]);
    return fma(nib4(wq[b][i % 4u], (i / 4u) * 4u), vec4<f32>(dm.x), vec4<f32>(dm.y));
}

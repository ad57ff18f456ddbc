// Weight format Q8_0 (llama.cpp blocks of 32: an f16 scale d and 32 int8 q; w = d·q), stored split:
// the quants of block b in wq[2b..2b+2], the scales two per word in ws.
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

// Four signed bytes of a word as f32.
fn i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w)) >> vec4<u32>(24u);
    return vec4<f32>(v);
}

// The 32 weights of block `u` of weight row `row`; `upr` blocks per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let b = row * upr + u;
    let d = unpack2x16float(ws[b >> 1u])[b & 1u];
    let q0 = wq[2u * b];
    let q1 = wq[2u * b + 1u];
    var o: array<vec4<f32>, 8>;
    o[0] = d * i8x4(q0.x);
    o[1] = d * i8x4(q0.y);
    o[2] = d * i8x4(q0.z);
    o[3] = d * i8x4(q0.w);
    o[4] = d * i8x4(q1.x);
    o[5] = d * i8x4(q1.y);
    o[6] = d * i8x4(q1.z);
    o[7] = d * i8x4(q1.w);
    return o;
}

// Pieces (16-byte words of `wq`) per block of 32 weights, and input vec4s per piece.
const PPU: u32 = 2u;
const PX: u32 = 4u;

// Σ of the 16 weights in word `w` (piece `pc` of row `row`) times the piece's inputs `xl`:
// integer quants times inputs first, the block's scale once.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, xl: mat4x4<f32>, xh: mat4x4<f32>) -> f32 {
    let b = row * p.upr + pc / 2u;
    var s = i8x4(w.x) * xl[0];
    s = fma(i8x4(w.y), xl[1], s);
    s = fma(i8x4(w.z), xl[2], s);
    s = fma(i8x4(w.w), xl[3], s);
    return unpack2x16float(ws[b >> 1u])[b & 1u] * ((s.x + s.y) + (s.z + s.w));
}

// Weights 4i .. 4i + 4 of block `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    let b = row * upr + u;
    let d = unpack2x16float(ws[b >> 1u])[b & 1u];
    return d * i8x4(wq[2u * b + i / 4u][i % 4u]);
}

// Weight format Q4_1 (llama.cpp blocks of 32: f16 scale d and minimum m, 16 bytes of nibbles laid out
// as w_nibbles.wgsl says (appended after this file); w = d·q + m), stored split: the nibbles of block b
// in wq[b], (d, m) as one word in ws[b].
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> ws: array<u32>;

// The 32 weights of block `u` of weight row `row`; `upr` blocks per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let b = row * upr + u;
    let dm = unpack2x16float(ws[b]);
    return nib_unit(wq[b], vec4<f32>(dm.x), vec4<f32>(dm.y));
}

// Pieces (16-byte words of `wq`) per block of 32 weights, and input vec4s per piece.
const PPU: u32 = 1u;
const PX: u32 = 8u;

// Σ of the 32 weights of block word `w` (piece `pc` of row `row`) times the piece's inputs
// (`xl`: elements 0..16, `xh`: 16..32): nibbles times inputs first, then d·Σ q·x + m·Σ x.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, xl: mat4x4<f32>, xh: mat4x4<f32>) -> f32 {
    let s = nib_dots(w, xl, xh);
    let dm = unpack2x16float(ws[row * p.upr + pc]);
    return dm.x * s.x + dm.y * s.y;
}

// Weights 4i .. 4i + 4 of block `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    let b = row * upr + u;
    let dm = unpack2x16float(ws[b]);
    return fma(nib4(wq[b][i % 4u], (i / 4u) * 4u), vec4<f32>(dm.x), vec4<f32>(dm.y));
}

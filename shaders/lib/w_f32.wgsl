// Weight format f32: rows padded to whole units of 32 elements, 8 vec4 per unit.
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

// The 32 weights of unit `u` (elements 32u..32u+32) of weight row `row`; `upr` units per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let base = (row * upr + u) * 8u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = bitcast<vec4<f32>>(wq[base + i]);
    }
    return o;
}

// Pieces (16-byte words of `wq`) per unit of 32 weights, and input vec4s per piece.
const PPU: u32 = 8u;
const PX: u32 = 1u;

// Σ of the 4 weights in word `w` (piece `pc` of row `row`) times the piece's input `xl[0]`.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, xl: mat4x4<f32>, xh: mat4x4<f32>) -> f32 {
    return dot(bitcast<vec4<f32>>(w), xl[0]);
}

// Weights 4i .. 4i + 4 of unit `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(wq[(row * upr + u) * 8u + i]);
}

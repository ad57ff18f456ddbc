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

// Pieces (16-byte words of `wq`) per unit of 32 weights.
const PPU: u32 = 8u;

// Σ of the 4 weights in word `w`, piece `pc` of row `row`, times the matching inputs of token `t`.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, t: u32) -> f32 {
    return dot(bitcast<vec4<f32>>(w), in4(t, pc));
}

// Weights 4i .. 4i + 4 of unit `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(wq[(row * upr + u) * 8u + i]);
}

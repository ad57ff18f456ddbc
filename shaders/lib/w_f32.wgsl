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

// Σ of the 32 weights of unit `u` of row `row` times the matching activations of token `t`
// (`load_x4`), without staging the unit in an array (gemv keeps everything in registers).
fn dot_unit(row: u32, u: u32, upr: u32, t: u32, cols: u32) -> f32 {
    let base = (row * upr + u) * 8u;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        s = fma(bitcast<vec4<f32>>(wq[base + i]), load_x4(t, u, i, cols), s);
    }
    return (s.x + s.y) + (s.z + s.w);
}

// Weights 4i .. 4i + 4 of unit `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(wq[(row * upr + u) * 8u + i]);
}

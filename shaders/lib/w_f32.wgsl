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

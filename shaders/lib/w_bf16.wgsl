// Weight format bf16: rows padded to whole units of 32 elements, 4 vec4<u32> (two bf16 each) per unit.
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

// bf16 is the high half of an f32: shift the low half up, mask the high half.
fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// The 32 weights of unit `u` (elements 32u..32u+32) of weight row `row`; `upr` units per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let base = (row * upr + u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq[base + i];
        o[2u * i] = vec4<f32>(bf16x2(w.x), bf16x2(w.y));
        o[2u * i + 1u] = vec4<f32>(bf16x2(w.z), bf16x2(w.w));
    }
    return o;
}

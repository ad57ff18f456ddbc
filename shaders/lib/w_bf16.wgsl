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

// Σ of the 32 weights of unit `u` of row `row` times the matching activations of token `t`
// (`load_x4`), without staging the unit in an array (gemv keeps everything in registers).
fn dot_unit(row: u32, u: u32, upr: u32, t: u32, cols: u32) -> f32 {
    let base = (row * upr + u) * 4u;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let w = wq[base + i];
        s = fma(vec4<f32>(bf16x2(w.x), bf16x2(w.y)), load_x4(t, u, 2u * i, cols), s);
        s = fma(vec4<f32>(bf16x2(w.z), bf16x2(w.w)), load_x4(t, u, 2u * i + 1u, cols), s);
    }
    return (s.x + s.y) + (s.z + s.w);
}

// Weights 4i .. 4i + 4 of unit `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    let w = wq[(row * upr + u) * 4u + i / 2u];
    let h = select(w.xy, w.zw, (i & 1u) == 1u);
    return vec4<f32>(bf16x2(h.x), bf16x2(h.y));
}

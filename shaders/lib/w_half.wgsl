// Weight formats of 16-bit floats (f16, bf16): rows padded to whole units of 32 elements, 4 vec4<u32>
// (two values each) per unit. The format's file in front of this one defines `half2`, the two values
// of a word.
@group(0) @binding(1) var<storage, read> wq: array<vec4<u32>>;

// The 32 weights of unit `u` (elements 32u..32u+32) of weight row `row`; `upr` units per row.
fn load_unit(row: u32, u: u32, upr: u32) -> array<vec4<f32>, 8> {
    let base = (row * upr + u) * 4u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = wq[base + i];
        o[2u * i] = vec4<f32>(half2(w.x), half2(w.y));
        o[2u * i + 1u] = vec4<f32>(half2(w.z), half2(w.w));
    }
    return o;
}

// Pieces (16-byte words of `wq`) per unit of 32 weights.
const PPU: u32 = 4u;

// Σ of the 8 weights in word `w`, piece `pc` of row `row`, times the matching inputs of token `t`.
fn dot_piece(w: vec4<u32>, row: u32, pc: u32, t: u32) -> f32 {
    let lo = dot(vec4<f32>(half2(w.x), half2(w.y)), in4(t, 2u * pc));
    return lo + dot(vec4<f32>(half2(w.z), half2(w.w)), in4(t, 2u * pc + 1u));
}

// Weights 4i .. 4i + 4 of unit `u` of row `row` (i < 8).
fn load_w4(row: u32, u: u32, upr: u32, i: u32) -> vec4<f32> {
    let w = wq[(row * upr + u) * 4u + i / 2u];
    let h = select(w.xy, w.zw, (i & 1u) == 1u);
    return vec4<f32>(half2(h.x), half2(h.y));
}

// The 4-bit formats' shared part (Q4_0, Q4_1): byte j of a block's 16 bytes holds element j in its low
// and element j + 16 in its high nibble. The format's file in front of this one holds its scales.

// The low (shift 0) or high (shift 4) nibbles of the four bytes of a word.
fn nib4(w: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) >> vec4<u32>(shift)) & vec4<u32>(15u));
}

// The 32 values nibble·d + m of block word `q`.
fn nib_unit(q: vec4<u32>, d: vec4<f32>, m: vec4<f32>) -> array<vec4<f32>, 8> {
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

// (Σ nibble·x, Σ x) over a block's 32 elements: inputs `xl` (elements 0..16) and `xh` (16..32).
fn nib_dots(w: vec4<u32>, xl: mat4x4<f32>, xh: mat4x4<f32>) -> vec2<f32> {
    var qx = nib4(w.x, 0u) * xl[0];
    qx = fma(nib4(w.y, 0u), xl[1], qx);
    qx = fma(nib4(w.z, 0u), xl[2], qx);
    qx = fma(nib4(w.w, 0u), xl[3], qx);
    qx = fma(nib4(w.x, 4u), xh[0], qx);
    qx = fma(nib4(w.y, 4u), xh[1], qx);
    qx = fma(nib4(w.z, 4u), xh[2], qx);
    qx = fma(nib4(w.w, 4u), xh[3], qx);
    let sx = ((xl[0] + xl[1]) + (xl[2] + xl[3])) + ((xh[0] + xh[1]) + (xh[2] + xh[3]));
    return vec2<f32>((qx.x + qx.y) + (qx.z + qx.w), (sx.x + sx.y) + (sx.z + sx.w));
}

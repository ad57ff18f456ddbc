// Weight format f16 (the shared 16-bit layout is in w_half.wgsl, appended after this file).
fn half2(w: u32) -> vec2<f32> {
    return unpack2x16float(w);
}

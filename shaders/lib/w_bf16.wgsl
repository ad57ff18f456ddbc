// Weight format bf16 (the shared 16-bit layout is in w_half.wgsl, appended after this file): bf16 is
// the high half of an f32, so shift the low half up and mask the high half.
fn half2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

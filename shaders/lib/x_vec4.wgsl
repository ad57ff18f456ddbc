// Activation rows whose length is a multiple of 4, read as vec4.
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;

// Activations 4·c4 .. 4·c4 + 4 of the row starting at element `off` (a multiple of 4), zero past
// `cols`.
fn x4_at(off: u32, c4: u32, cols: u32) -> vec4<f32> {
    let n4 = cols / 4u;
    return select(vec4<f32>(0.0), x[off / 4u + min(c4, n4 - 1u)], c4 < n4);
}

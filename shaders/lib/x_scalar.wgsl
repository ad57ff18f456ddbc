// Activation rows of any length, read one element at a time.
@group(0) @binding(4) var<storage, read> x: array<f32>;

// Activations 4·c4 .. 4·c4 + 4 of the row starting at element `off`, zero past `cols`.
fn x4_at(off: u32, c4: u32, cols: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = c4 * 4u + j;
        v[j] = select(0.0, x[off + min(c, cols - 1u)], c < cols);
    }
    return v;
}

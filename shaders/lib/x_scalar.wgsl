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

// Activations 32u + 4i .. 32u + 4i + 4 of token row `t` (zero past `cols`).
fn load_x4(t: u32, u: u32, i: u32, cols: u32) -> vec4<f32> {
    return x4_at(t * cols, u * 8u + i, cols);
}

// The 32 activations of unit `u` of token row `t` (zero past `cols`).
fn load_x(t: u32, u: u32, cols: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = load_x4(t, u, i, cols);
    }
    return o;
}

// Activation rows whose length is a multiple of 4, read as vec4.
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;

// Activations 4·c4 .. 4·c4 + 4 of the row starting at element `off` (a multiple of 4), zero past
// `cols`.
fn x4_at(off: u32, c4: u32, cols: u32) -> vec4<f32> {
    let n4 = cols / 4u;
    return select(vec4<f32>(0.0), x[off / 4u + min(c4, n4 - 1u)], c4 < n4);
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

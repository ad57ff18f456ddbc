// Activation rows of any length, read one element at a time.
@group(0) @binding(4) var<storage, read> x: array<f32>;

// Activations 32u + 4i .. 32u + 4i + 4 of token row `t` (zero past `cols`).
fn load_x4(t: u32, u: u32, i: u32, cols: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = u * 32u + i * 4u + j;
        v[j] = select(0.0, x[t * cols + min(c, cols - 1u)], c < cols);
    }
    return v;
}

// The 32 activations of unit `u` of token row `t` (zero past `cols`).
fn load_x(t: u32, u: u32, cols: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = load_x4(t, u, i, cols);
    }
    return o;
}

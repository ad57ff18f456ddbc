// Activations by weight unit (32 columns), over either reader (`x4_at` of x_vec4.wgsl or
// x_scalar.wgsl, in front of this file).
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

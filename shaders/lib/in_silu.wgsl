// Matrix input through SwiGLU, fused: row `t` of the activations holds gate | up (2·cols), and the
// input is silu(gate) · up.
fn in4(t: u32, c4: u32) -> vec4<f32> {
    let g = x4_at(2u * in_row(t) * p.cols, c4, p.cols);
    let u = x4_at(2u * in_row(t) * p.cols + p.cols, c4, p.cols);
    return g / (1.0 + exp(-g)) * u;
}


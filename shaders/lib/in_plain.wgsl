// Matrix input read as it is: row `t` of the activations.
fn in4(t: u32, c4: u32) -> vec4<f32> {
    return x4_at(in_row(t) * p.cols, c4, p.cols);
}


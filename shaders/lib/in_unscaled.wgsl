// Per-token factors of a gemv result where the input needs none.
fn input_scales(ln: Lanes) -> array<f32, T> {
    var s: array<f32, T>;
    for (var t = 0u; t < T; t++) {
        s[t] = 1.0;
    }
    return s;
}

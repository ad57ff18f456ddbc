// Matrix input through an RMS norm, fused: in = g ⊙ x, and the result of each token row is scaled
// by 1/sqrt(mean(x²) + eps) (a factor of the whole dot product), which the workgroup computes once
// from x before the weights are read.
@group(0) @binding(6) var<storage, read> gn: array<f32>;

fn in4(t: u32, c4: u32) -> vec4<f32> {
    let c = min(4u * c4, p.cols - 1u);
    let g = vec4<f32>(gn[c], gn[min(c + 1u, p.cols - 1u)], gn[min(c + 2u, p.cols - 1u)], gn[min(c + 3u, p.cols - 1u)]);
    return x4_at(in_row(t) * p.cols, c4, p.cols) * g;
}

// 1/sqrt(mean(x[t]²) + eps) for each token row. Call from uniform control flow.
fn input_scales(ln: Lanes) -> array<f32, T> {
    var s: array<f32, T>;
    let n4 = (p.cols + 3u) / 4u;
    for (var t = 0u; t < T; t++) {
        var ss = vec4<f32>(0.0);
        for (var c4 = ln.lid; c4 < n4; c4 += WG) {
            let v = x4_at(in_row(t) * p.cols, c4, p.cols);
            ss = fma(v, v, ss);
        }
        let total = reduce_sum((ss.x + ss.y) + (ss.z + ss.w), ln);
        s[t] = 1.0 / sqrt(total / f32(p.cols) + p.eps);
    }
    return s;
}

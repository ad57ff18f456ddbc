// cos and sin of `a` to about one ulp on every driver (drivers' own are only bounded within ±π):
// reduction by π/2 in three exact-product steps, then minimax polynomials on [−π/4, π/4].
fn cos_sin(a: f32) -> vec2<f32> {
    let x = abs(a);
    var j = u32(x * 1.27323954473516); // 4/π
    j += j & 1u;
    let y = f32(j);
    let r = ((x - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
        - 0.5 * z + 1.0;
    let q = (j / 2u) & 3u; // quadrant
    var cs = select(vec2<f32>(c, s), vec2<f32>(-s, c), (q & 1u) == 1u);
    if q >= 2u {
        cs = -cs;
    }
    // sin is odd, cos even.
    return vec2<f32>(cs.x, select(cs.y, -cs.y, a < 0.0));
}

// The input row of gemv_t1 for quantized weights, in workgroup memory as 8-bit integers per block of 32:
// in ≈ d·(q + r/254) with q and the rounding remainder r both int8 (q alone moved SmolLM2 Q4_1's greedy
// text after 29 tokens; with r it matches). Block j's q in xq[2j] (elements 0..16) and xq[2j+1]
// (16..32), r likewise in xr, and xd[j] = (d, d·Σ(q + r/254)) for the offset/minimum terms of Q4_0/Q4_1.
// XH (half blocks of the longest row) and XB (its blocks) are set before this file.
var<workgroup> xq: array<vec4<u32>, XH>;
var<workgroup> xr: array<vec4<u32>, XH>;
var<workgroup> xd: array<vec2<f32>, XB>;

// Four elements (already times 127/amax) as packed int8 q and r, and 254·q + r.
struct Quad { q: u32, r: u32, s: vec4<i32> }

fn quad(v: vec4<f32>, id: f32) -> Quad {
    let t = v * id;
    let q = round(t);
    let r = vec4<i32>(clamp(round((t - q) * 254.0), vec4<f32>(-127.0), vec4<f32>(127.0)));
    let qi = vec4<i32>(q);
    return Quad(pack4xI8(qi), pack4xI8(r), 254 * qi + r);
}

fn amax4(v: vec4<f32>) -> f32 {
    let a = abs(v);
    return max(max(a.x, a.y), max(a.z, a.w));
}

// Writes the input row, one block of 32 per invocation at a time (zero past `cols`). Call from uniform
// control flow.
fn build_input(ln: Lanes) {
    for (var j = ln.lid; j < p.upr; j += WG) {
        let c = 8u * j;
        let v0 = in4(0u, c);
        let v1 = in4(0u, c + 1u);
        let v2 = in4(0u, c + 2u);
        let v3 = in4(0u, c + 3u);
        let v4 = in4(0u, c + 4u);
        let v5 = in4(0u, c + 5u);
        let v6 = in4(0u, c + 6u);
        let v7 = in4(0u, c + 7u);
        let amax = max(
            max(max(amax4(v0), amax4(v1)), max(amax4(v2), amax4(v3))),
            max(max(amax4(v4), amax4(v5)), max(amax4(v6), amax4(v7))),
        );
        let id = select(0.0, 127.0 / amax, amax > 0.0);
        let a0 = quad(v0, id);
        let a1 = quad(v1, id);
        let a2 = quad(v2, id);
        let a3 = quad(v3, id);
        let a4 = quad(v4, id);
        let a5 = quad(v5, id);
        let a6 = quad(v6, id);
        let a7 = quad(v7, id);
        xq[2u * j] = vec4<u32>(a0.q, a1.q, a2.q, a3.q);
        xq[2u * j + 1u] = vec4<u32>(a4.q, a5.q, a6.q, a7.q);
        xr[2u * j] = vec4<u32>(a0.r, a1.r, a2.r, a3.r);
        xr[2u * j + 1u] = vec4<u32>(a4.r, a5.r, a6.r, a7.r);
        let s4 = ((a0.s + a1.s) + (a2.s + a3.s)) + ((a4.s + a5.s) + (a6.s + a7.s));
        let d = amax / 127.0;
        xd[j] = vec2<f32>(d, d * (f32((s4.x + s4.y) + (s4.z + s4.w)) / 254.0));
    }
}

// Σ w·x over 16 int8 pairs.
fn dot16(w: vec4<u32>, x: vec4<u32>) -> i32 {
    return (dot4I8Packed(w.x, x.x) + dot4I8Packed(w.y, x.y)) + (dot4I8Packed(w.z, x.z) + dot4I8Packed(w.w, x.w));
}

// Σ nibble·x over a 4-bit block word `w` (byte k: element k low, element k + 16 high; the nibbles 0..15
// are valid int8) and the block's input halves `lo` (elements 0..16) and `hi` (16..32).
fn dot_nibbles(w: vec4<u32>, lo: vec4<u32>, hi: vec4<u32>) -> i32 {
    let m = 0x0f0f0f0fu;
    let l = dot16(w & vec4<u32>(m), lo);
    return l + dot16((w >> vec4<u32>(4u)) & vec4<u32>(m), hi);
}

// The input block's integer sums s = Σ w·q and s2 = Σ w·r as Σ w·(q + r/254).
fn q_sum(s: i32, s2: i32) -> f32 {
    return f32(s) + f32(s2) * (1.0 / 254.0);
}

// gemv_t1's words of Q4_0 weights (`wq`, `ws` in front): a word is one block; w = d·(q − 8), so
// Σ w·in = d·(Σ q·in − 8·Σ in), with Σ in per block from the input row.
struct Word { q: vec4<u32>, s: u32 }

fn load_word(row: u32, pc: u32, ppr: u32) -> Word {
    let b = row * p.upr + pc;
    return Word(wq[b], ws[b >> 1u]);
}

fn dot_word(w: Word, row: u32, pc: u32) -> f32 {
    let dw = unpack2x16float(w.s)[(row * p.upr + pc) & 1u];
    let x = xd[pc];
    let s = dot_nibbles(w.q, xq[2u * pc], xq[2u * pc + 1u]);
    let s2 = dot_nibbles(w.q, xr[2u * pc], xr[2u * pc + 1u]);
    return dw * (x.x * q_sum(s, s2) - 8.0 * x.y);
}

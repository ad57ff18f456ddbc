// gemv_t1's words of Q4_1 weights (`wq`, `ws` in front): a word is one block; w = d·q + m, so
// Σ w·in = d·Σ q·in + m·Σ in, with Σ in per block from the input row.
struct Word { q: vec4<u32>, s: u32 }

fn load_word(row: u32, pc: u32, ppr: u32) -> Word {
    let b = row * p.upr + pc;
    return Word(wq[b], ws[b]);
}

fn dot_word(w: Word, row: u32, pc: u32) -> f32 {
    let dm = unpack2x16float(w.s);
    let x = xd[pc];
    let s = dot_nibbles(w.q, xq[2u * pc], xq[2u * pc + 1u]);
    let s2 = dot_nibbles(w.q, xr[2u * pc], xr[2u * pc + 1u]);
    return dm.x * x.x * q_sum(s, s2) + dm.y * x.y;
}

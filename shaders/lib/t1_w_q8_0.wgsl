// gemv_t1's words of Q8_0 weights (`wq`, `ws` in front): a word is half a block (16 int8 quants), word
// pc half pc % 2 of block pc / 2; the scale word is kept raw so that its conversion waits for the load.
struct Word { q: vec4<u32>, s: u32 }

fn load_word(row: u32, pc: u32, ppr: u32) -> Word {
    let b = row * p.upr + pc / 2u;
    return Word(wq[row * ppr + pc], ws[b >> 1u]);
}

fn dot_word(w: Word, row: u32, pc: u32) -> f32 {
    let b = row * p.upr + pc / 2u;
    let dw = unpack2x16float(w.s)[b & 1u];
    return dw * xd[pc / 2u].x * q_sum(dot16(w.q, xq[pc]), dot16(w.q, xr[pc]));
}

// gemv_t1's words of 16-bit float weights (f16, bf16: `half2` and `wq` in front): 8 weights per word,
// met by the f32 input row of t1_x_f32.wgsl.
struct Word { q: vec4<u32> }

// Word `pc` of chunk row `row` (`ppr` words per row).
fn load_word(row: u32, pc: u32, ppr: u32) -> Word {
    return Word(wq[row * ppr + pc]);
}

// Σ weight·input over word `pc` of row `row`.
fn dot_word(w: Word, row: u32, pc: u32) -> f32 {
    let lo = dot(vec4<f32>(half2(w.q.x), half2(w.q.y)), xa[pc]);
    return lo + dot(vec4<f32>(half2(w.q.z), half2(w.q.w)), xb[pc]);
}

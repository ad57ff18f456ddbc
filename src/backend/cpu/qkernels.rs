//! Quantized-weight kernels (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), written once over an instruction set's
//! helpers and stamped out per instruction set by [`quant_kernels!`].
//!
//! Besides the helpers [`super::kernels::simd_kernels!`] uses, an instruction-set module defines an
//! integer vector `VI` of `W` i32 lanes and `ld_u8`/`ld_i8` (widen `W` bytes), `isplat`, `iand`,
//! `ior`, `isub`, `shr4`, `shr2`, `shl4`, `shl2` (logical shifts), `cvt` (i32 → f32), `mul`, `sub`,
//! `nibbles::<SUB8>` (the low and high nibbles of `W` bytes as f32, minus 8 if `SUB8`), `prefetch`,
//! `QM` (tokens a gemv pass keeps in registers) and `QM4` (the most tokens of a pass over
//! four weight rows at a time; more take two, so the accumulators stay in registers).
//!
//! **gemv** (≤ 8 tokens): weights are read once per group of up to `QM` tokens, four or two rows at a
//! time (Q4_K, Q6_K: one, whose block bodies are too large to unroll over rows), dequantized in
//! registers, never to memory, and prefetched far ahead ([`PREFETCH`]). Q8_0/Q4_0/Q4_1/Q4_K use the
//! integer-times-activation algebra: per (sub-)block `Σ (d·q + m)·x = d·Σ q·x + m·Σx` (Q4_0:
//! `d·Σ (q − 8)·x`, the `− 8` free in AVX-512's nibble table lookup), with `Σx` per 32 activations
//! computed once per matmul ([`crate::backend::quant::block_sums`]) — so the nibbles are only
//! widened and converted, one FMA per weight lane per token, and the scale costs one FMA per block.
//! Q6_K, whose 16-element sub-blocks would need a scale FMA every vector, dequantizes `q·(d·sc)`.
//! Block scales (f16) come from a 256 KiB table ([`crate::backend::quant::F16_TO_F32`]) and are
//! broadcast straight from it.
//!
//! **dequant** (GEMM panels, embedding rows): blocks to f32 with the same operations as
//! [`crate::backend::quant::dequantize_block`], so the values are bit-identical, written as
//! 16-element chunks a given stride apart (straight into the GEMM's packed weight panel).

/// Bytes ahead of the current block of each weight row that the gemv prefetches (into L2). Hardware
/// prefetchers stop at 4 KiB pages and mapped model files are not in huge pages, so without this a
/// gemv streaming from DRAM ran at half the bandwidth. Rows are contiguous, so this runs a sweep
/// ~32 KiB ahead through the rows that follow. Measured (SmolLM2-1B-shape Q4_0 decode, 2 threads):
/// 768 B: 27 t/s, 4 KiB: 42, 16 KiB: 54, 32 KiB: 57 (61 with the L2 hint), 64 KiB: 56.
pub const PREFETCH: usize = 32768;

/// Defines `gemv_q8_0/q4_0/q4_1/q4k/q6k` and `deq_q8_0/...` with `#[target_feature(enable = $feat)]`;
/// the kernel table of [`super::kernels::simd_kernels!`] points at them.
macro_rules! quant_kernels {
    ($feat:literal) => {
        use super::qkernels::PREFETCH;

        super::qkernels::quant_kernels!(@gemv $feat, gemv_q8_0, rows_q8_0, 34, 32);
        super::qkernels::quant_kernels!(@gemv $feat, gemv_q4_0, rows_q4_0, 18, 32);
        super::qkernels::quant_kernels!(@gemv $feat, gemv_q4_1, rows_q4_1, 20, 32);
        super::qkernels::quant_kernels!(@gemv $feat, gemv_q4k, rows_q4k, 144, 256);
        super::qkernels::quant_kernels!(@gemv $feat, gemv_q6k, rows_q6k, 210, 256);

        /// Each of `N` slices as whole arrays of `B` elements.
        #[inline]
        fn chunks<const N: usize, const B: usize, T>(s: [&[T]; N]) -> [&[[T; B]]; N] {
            s.map(|v| v.as_chunks::<B>().0)
        }

        /// The f16 at `b[at..at + 2]` (a table load, see `quant::F16_TO_F32`).
        #[inline]
        fn f16le(b: &[u8], at: usize) -> f32 {
            crate::backend::quant::F16_TO_F32[u16::from_le_bytes([b[at], b[at + 1]]) as usize]
        }

        /// `Σ_t-wise` block dot of Q8_0 rows: `Σ_b d_b·Σ q·x`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q8_0<const R: usize, const M: usize>(
            x: [&[f32]; M],
            _xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            let (xc, wc) = (chunks::<M, 32, f32>(x), chunks::<R, 34, u8>(w));
            let mut acc = [[zero(); M]; R];
            for b in 0..xc[0].len() {
                for r in 0..R {
                    let blk = &wc[r][b];
                    prefetch(w[r], b * 34 + PREFETCH);
                    let qs = blk[2..].as_chunks::<W>().0;
                    let mut ba = [zero(); M];
                    for c in 0..32 / W {
                        let q = cvt(ld_i8(&qs[c]));
                        for t in 0..M {
                            let xb = xc[t][b].as_chunks::<W>().0;
                            ba[t] = fma(q, ld(&xb[c]), ba[t]);
                        }
                    }
                    let d = splat(f16le(blk, 0));
                    for t in 0..M {
                        acc[r][t] = fma(ba[t], d, acc[r][t]);
                    }
                }
            }
            let mut out = [[0f32; M]; R];
            for r in 0..R {
                for t in 0..M {
                    out[r][t] = hsum(acc[r][t]);
                }
            }
            out
        }

        /// Q4_0 (`OFF = 2`, `SUB8`: `x = d·(q − 8)`) and Q4_1 (`OFF = 4`: `x = d·q + m`) rows:
        /// `Σ_b d_b·Σ (q − 8)·x`, and `Σ_b d_b·Σ q·x + Σ_b m_b·Σx_b`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q4<const R: usize, const M: usize, const BB: usize, const OFF: usize, const SUB8: bool>(
            x: [&[f32]; M],
            xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            let (xc, wc) = (chunks::<M, 32, f32>(x), chunks::<R, BB, u8>(w));
            let mut acc = [[zero(); M]; R];
            let mut side = [[0f32; M]; R];
            for b in 0..xc[0].len() {
                for r in 0..R {
                    let blk = &wc[r][b];
                    prefetch(w[r], b * BB + PREFETCH);
                    let qs = blk[OFF..].as_chunks::<W>().0;
                    let mut ba = [zero(); M];
                    for c in 0..16 / W {
                        let (lo, hi) = nibbles::<SUB8>(&qs[c]);
                        for t in 0..M {
                            let xb = xc[t][b].as_chunks::<W>().0;
                            ba[t] = fma(lo, ld(&xb[c]), ba[t]);
                            ba[t] = fma(hi, ld(&xb[16 / W + c]), ba[t]);
                        }
                    }
                    let dv = splat(f16le(blk, 0));
                    for t in 0..M {
                        acc[r][t] = fma(ba[t], dv, acc[r][t]);
                        if !SUB8 {
                            side[r][t] += f16le(blk, 2) * xs[t][b];
                        }
                    }
                }
            }
            let mut out = [[0f32; M]; R];
            for r in 0..R {
                for t in 0..M {
                    out[r][t] = hsum(acc[r][t]) + side[r][t];
                }
            }
            out
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q4_0<const R: usize, const M: usize>(
            x: [&[f32]; M],
            xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            rows_q4::<R, M, 18, 2, true>(x, xs, w)
        }

        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q4_1<const R: usize, const M: usize>(
            x: [&[f32]; M],
            xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            rows_q4::<R, M, 20, 4, false>(x, xs, w)
        }

        /// Q4_K rows: per sub-block `s`, `d·sc_s·Σ q·x − dmin·m_s·Σx` (the min terms kept in eight
        /// lanes, one per sub-block, summed at the end). One row at a time, four accumulators per
        /// token (one per 64-element chunk): a block's body is too large for the compiler to unroll
        /// over rows, and accumulators indexed by a loop variable would live in memory.
        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q4k<const R: usize, const M: usize>(
            x: [&[f32]; M],
            xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            let (xc, wc) = (chunks::<M, 256, f32>(x), chunks::<R, 144, u8>(w));
            let sc = chunks::<M, 8, f32>(xs);
            let mut out = [[0f32; M]; R];
            for r in 0..R {
                let mut acc = [[zero(); 4]; M];
                let mut side = [[0f32; 8]; M];
                for b in 0..xc[0].len() {
                    let blk = &wc[r][b];
                    for p in (0..144).step_by(64) {
                        prefetch(w[r], b * 144 + p + PREFETCH);
                    }
                    let (s, m) = crate::backend::quant::q4k_scales(blk);
                    for c in 0..4 {
                        let qs = blk[16 + 32 * c..][..32].as_chunks::<W>().0;
                        let mut lo_acc = [zero(); M];
                        let mut hi_acc = [zero(); M];
                        for l in 0..32 / W {
                            let (lo, hi) = nibbles::<false>(&qs[l]);
                            for t in 0..M {
                                let xb = xc[t][b][64 * c..][..64].as_chunks::<W>().0;
                                lo_acc[t] = fma(lo, ld(&xb[l]), lo_acc[t]);
                                hi_acc[t] = fma(hi, ld(&xb[32 / W + l]), hi_acc[t]);
                            }
                        }
                        let (sv0, sv1) = (splat(s[2 * c]), splat(s[2 * c + 1]));
                        for t in 0..M {
                            acc[t][c] = fma(lo_acc[t], sv0, acc[t][c]);
                            acc[t][c] = fma(hi_acc[t], sv1, acc[t][c]);
                        }
                    }
                    for t in 0..M {
                        for j in 0..8 {
                            side[t][j] -= m[j] * sc[t][b][j];
                        }
                    }
                }
                for t in 0..M {
                    let (a, sd) = (&acc[t], &side[t]);
                    let v = hsum(add(add(a[0], a[1]), add(a[2], a[3])));
                    out[r][t] = v + (((sd[0] + sd[4]) + (sd[1] + sd[5])) + ((sd[2] + sd[6]) + (sd[3] + sd[7])));
                }
            }
            out
        }

        /// The 16 sub-block multipliers `d·sc` of a Q6_K block (computed once per block, then
        /// broadcast from memory).
        #[inline]
        #[target_feature(enable = $feat)]
        fn q6k_scales(blk: &[u8; 210]) -> [f32; 16] {
            let d = splat(f16le(blk, 208));
            let mut sc = [0f32; 16];
            let (src, dst) = (blk[192..208].as_chunks::<W>().0, sc.as_chunks_mut::<W>().0);
            for i in 0..16 / W {
                st(&mut dst[i], mul(d, cvt(ld_i8(&src[i]))));
            }
            sc
        }

        /// The four quant vectors `q − 32` (as f32) of Q6_K lanes `l0..l0 + W` of a 128-element half:
        /// elements `32i + l` for `i < 4`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn q6k_quants(ql: &[u8], qh: &[u8], l0: usize) -> [V; 4] {
            let a = ld_u8(ql[l0..][..W].try_into().unwrap());
            let b = ld_u8(ql[32 + l0..][..W].try_into().unwrap());
            let h = ld_u8(qh[l0..][..W].try_into().unwrap());
            let (m4, k32) = (isplat(0xF), isplat(32));
            let q1 = ior(iand(a, m4), shl4(iand(h, isplat(3))));
            let q2 = ior(iand(b, m4), shl2(iand(h, isplat(12))));
            let q3 = ior(shr4(a), iand(h, isplat(48)));
            let q4 = ior(shr4(b), iand(shr2(h), isplat(48)));
            [cvt(isub(q1, k32)), cvt(isub(q2, k32)), cvt(isub(q3, k32)), cvt(isub(q4, k32))]
        }

        /// Q6_K rows: lanes dequantized in registers (`q·(d·sc)`), then one FMA per token. One row
        /// at a time (see `rows_q4k`), four accumulators per token (one per quant of a lane).
        #[inline]
        #[target_feature(enable = $feat)]
        fn rows_q6k<const R: usize, const M: usize>(
            x: [&[f32]; M],
            _xs: [&[f32]; M],
            w: [&[u8]; R],
        ) -> [[f32; M]; R] {
            let (xc, wc) = (chunks::<M, 256, f32>(x), chunks::<R, 210, u8>(w));
            let mut out = [[0f32; M]; R];
            for r in 0..R {
                let mut acc = [[zero(); 4]; M];
                for b in 0..xc[0].len() {
                    let blk = &wc[r][b];
                    for p in (0..210).step_by(64) {
                        prefetch(w[r], b * 210 + p + PREFETCH);
                    }
                    let sc = q6k_scales(blk);
                    for h in 0..2 {
                        let (ql, qh) = (&blk[64 * h..][..64], &blk[128 + 32 * h..][..32]);
                        for l in 0..32 / W {
                            let q = q6k_quants(ql, qh, l * W);
                            for i in 0..4 {
                                let wv = mul(q[i], splat(sc[8 * h + 2 * i + l * W / 16]));
                                for t in 0..M {
                                    let xb = xc[t][b][128 * h + 32 * i..][..32].as_chunks::<W>().0;
                                    acc[t][i] = fma(wv, ld(&xb[l]), acc[t][i]);
                                }
                            }
                        }
                    }
                }
                for t in 0..M {
                    let a = &acc[t];
                    out[r][t] = hsum(add(add(a[0], a[1]), add(a[2], a[3])));
                }
            }
            out
        }

        /// Stores `v` as elements `e..e + W` of a dequantized row whose 16-element chunks lie
        /// `stride` floats apart in `out` (`stride` = 16: contiguous).
        #[inline]
        #[target_feature(enable = $feat)]
        fn put(out: &mut [f32], stride: usize, e: usize, v: V) {
            if let Some(o) = out[e / 16 * stride + e % 16..].first_chunk_mut::<W>() {
                st(o, v);
            }
        }

        /// Q8_0 blocks to f32: `d·q`.
        #[target_feature(enable = $feat)]
        fn deq_q8_0(w: &[u8], out: &mut [f32], stride: usize) {
            for (b, blk) in w.as_chunks::<34>().0.iter().enumerate() {
                let d = splat(f16le(blk, 0));
                let qs = blk[2..].as_chunks::<W>().0;
                for c in 0..32 / W {
                    put(out, stride, 32 * b + c * W, mul(d, cvt(ld_i8(&qs[c]))));
                }
            }
        }

        /// Q4_0 blocks to f32: `d·(q − 8)`.
        #[target_feature(enable = $feat)]
        fn deq_q4_0(w: &[u8], out: &mut [f32], stride: usize) {
            for (b, blk) in w.as_chunks::<18>().0.iter().enumerate() {
                let d = splat(f16le(blk, 0));
                let qs = blk[2..].as_chunks::<W>().0;
                for c in 0..16 / W {
                    let (lo, hi) = nibbles::<true>(&qs[c]);
                    put(out, stride, 32 * b + c * W, mul(d, lo));
                    put(out, stride, 32 * b + 16 + c * W, mul(d, hi));
                }
            }
        }

        /// Q4_1 blocks to f32: `d·q + m`.
        #[target_feature(enable = $feat)]
        fn deq_q4_1(w: &[u8], out: &mut [f32], stride: usize) {
            for (b, blk) in w.as_chunks::<20>().0.iter().enumerate() {
                let (d, m) = (splat(f16le(blk, 0)), splat(f16le(blk, 2)));
                let qs = blk[4..].as_chunks::<W>().0;
                for c in 0..16 / W {
                    let (lo, hi) = nibbles::<false>(&qs[c]);
                    put(out, stride, 32 * b + c * W, add(mul(d, lo), m));
                    put(out, stride, 32 * b + 16 + c * W, add(mul(d, hi), m));
                }
            }
        }

        /// Q4_K blocks to f32: `(d·sc)·q − dmin·m`.
        #[target_feature(enable = $feat)]
        fn deq_q4k(w: &[u8], out: &mut [f32], stride: usize) {
            for (b, blk) in w.as_chunks::<144>().0.iter().enumerate() {
                let (s, m) = crate::backend::quant::q4k_scales(blk);
                for c in 0..4 {
                    let qs = blk[16 + 32 * c..][..32].as_chunks::<W>().0;
                    let (s0, m0, s1, m1) =
                        (splat(s[2 * c]), splat(m[2 * c]), splat(s[2 * c + 1]), splat(m[2 * c + 1]));
                    for l in 0..32 / W {
                        let (lo, hi) = nibbles::<false>(&qs[l]);
                        let e = 256 * b + 64 * c + l * W;
                        put(out, stride, e, sub(mul(s0, lo), m0));
                        put(out, stride, e + 32, sub(mul(s1, hi), m1));
                    }
                }
            }
        }

        /// Q6_K blocks to f32: `(d·sc)·(q − 32)`.
        #[target_feature(enable = $feat)]
        fn deq_q6k(w: &[u8], out: &mut [f32], stride: usize) {
            for (b, blk) in w.as_chunks::<210>().0.iter().enumerate() {
                let sc = q6k_scales(blk);
                for h in 0..2 {
                    let (ql, qh) = (&blk[64 * h..][..64], &blk[128 + 32 * h..][..32]);
                    for l in 0..32 / W {
                        let q = q6k_quants(ql, qh, l * W);
                        for i in 0..4 {
                            let v = mul(splat(sc[8 * h + 2 * i + l * W / 16]), q[i]);
                            put(out, stride, 256 * b + 128 * h + 32 * i + l * W, v);
                        }
                    }
                }
            }
        }
    };

    // The gemv of one quantized dtype over its `$rows` body: `m = x.len() / k` tokens in passes of up
    // to `QM`, weight rows four (up to `QM4` tokens) or two at a time, then the rest one at a time.
    (@gemv $feat:literal, $name:ident, $rows:ident, $bb:literal, $be:literal) => {
        #[target_feature(enable = $feat)]
        fn $name(x: &[f32], k: usize, xs: &[f32], w: &[u8], out: &mut [f32], ldo: usize) {
            let m = x.len() / k;
            let kb = k / 32;
            let rb = k / $be * $bb;
            let rows = w.len() / rb;
            let mut t0 = 0;
            while t0 < m {
                let tm = (m - t0).min(QM);
                let xr = &x[t0 * k..];
                let xsr = &xs[t0 * kb..];
                let o = &mut out[t0 * ldo..];
                match tm {
                    1 => $name::pass::<1>(xr, xsr, k, w, rb, rows, o, ldo),
                    2 => $name::pass::<2>(xr, xsr, k, w, rb, rows, o, ldo),
                    3 => $name::pass::<3>(xr, xsr, k, w, rb, rows, o, ldo),
                    _ => $name::pass::<4>(xr, xsr, k, w, rb, rows, o, ldo),
                }
                t0 += tm;
            }
        }

        mod $name {
            use super::*;

            /// One pass of `M` tokens over every weight row.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = $feat)]
            pub(super) fn pass<const M: usize>(
                x: &[f32],
                xs: &[f32],
                k: usize,
                w: &[u8],
                rb: usize,
                rows: usize,
                out: &mut [f32],
                ldo: usize,
            ) {
                let kb = k / 32;
                let mut xt: [&[f32]; M] = [&[]; M];
                let mut st: [&[f32]; M] = [&[]; M];
                for t in 0..M {
                    xt[t] = &x[t * k..][..k];
                    st[t] = &xs[t * kb..][..kb];
                }
                let mut r = 0;
                while M <= QM4 && r + 4 <= rows {
                    let mut wr: [&[u8]; 4] = [&[]; 4];
                    for q in 0..4 {
                        wr[q] = &w[(r + q) * rb..][..rb];
                    }
                    let res = $rows::<4, M>(xt, st, wr);
                    for q in 0..4 {
                        for t in 0..M {
                            out[t * ldo + r + q] = res[q][t];
                        }
                    }
                    r += 4;
                }
                while r + 2 <= rows {
                    let res = $rows::<2, M>(xt, st, [&w[r * rb..][..rb], &w[(r + 1) * rb..][..rb]]);
                    for q in 0..2 {
                        for t in 0..M {
                            out[t * ldo + r + q] = res[q][t];
                        }
                    }
                    r += 2;
                }
                while r < rows {
                    let res = $rows::<1, M>(xt, st, [&w[r * rb..][..rb]]);
                    for t in 0..M {
                        out[t * ldo + r] = res[0][t];
                    }
                    r += 1;
                }
            }
        }
    };
}

pub(crate) use quant_kernels;

//! The SIMD kernel bodies, written once and stamped out per instruction set by [`simd_kernels!`].
//!
//! An instruction-set module defines the vector type `V` (`W` f32 lanes), the GEMM register tile
//! `MR`×`NR`, and small `#[target_feature]` helpers — `zero`, `splat`, `ld`, `st`,
//! `ld_f16`, `ld_bf16` (16-bit weights widened to f32), `fma(a, b, c) = a·b + c`, `add`, `hsum`,
//! `hsum4` — then invokes `simd_kernels!("features")` to get the kernels and their `KERNELS` table.

/// Defines `gemv_f32/f16/bf16`, `f16_to_f32`, `bf16_to_f32`, `tile`, `dot`, `axpy` with
/// `#[target_feature(enable = $feat)]`, and `pub static KERNELS` pointing at safe wrappers of them and
/// of the quantized kernels of [`super::qkernels::quant_kernels!`].
macro_rules! simd_kernels {
    ($feat:literal, $level:expr) => {
        pub static KERNELS: super::simd::Kernels = super::simd::Kernels {
            level: $level,
            // SAFETY (every entry): this table is handed out only by `Kernels::for_level`, which
            // first checks that the CPU supports this module's target features.
            gemv_f32: |x, w, o| unsafe { gemv_f32(x, w, o) },
            gemv_f16: |x, w, o| unsafe { gemv_f16(x, w, o) },
            gemv_bf16: |x, w, o| unsafe { gemv_bf16(x, w, o) },
            f16_to_f32: |s, o| unsafe { f16_to_f32(s, o) },
            bf16_to_f32: |s, o| unsafe { bf16_to_f32(s, o) },
            mr: MR,
            tile: |a, b, ks, o| unsafe { tile(a, b, ks, o) },
            dot: |a, b| unsafe { dot(a, b) },
            sum_sq: |x| unsafe { dot(x, x) },
            axpy: |a, x, y| unsafe { axpy(a, x, y) },
            q8_0: super::simd::QuantKernels {
                gemv: |x, k, s, w, o, l| unsafe { gemv_q8_0(x, k, s, w, o, l) },
                dequant: |w, o, s| unsafe { deq_q8_0(w, o, s) },
            },
            q4_0: super::simd::QuantKernels {
                gemv: |x, k, s, w, o, l| unsafe { gemv_q4_0(x, k, s, w, o, l) },
                dequant: |w, o, s| unsafe { deq_q4_0(w, o, s) },
            },
            q4_1: super::simd::QuantKernels {
                gemv: |x, k, s, w, o, l| unsafe { gemv_q4_1(x, k, s, w, o, l) },
                dequant: |w, o, s| unsafe { deq_q4_1(w, o, s) },
            },
            q4k: super::simd::QuantKernels {
                gemv: |x, k, s, w, o, l| unsafe { gemv_q4k(x, k, s, w, o, l) },
                dequant: |w, o, s| unsafe { deq_q4k(w, o, s) },
            },
            q6k: super::simd::QuantKernels {
                gemv: |x, k, s, w, o, l| unsafe { gemv_q6k(x, k, s, w, o, l) },
                dequant: |w, o, s| unsafe { deq_q6k(w, o, s) },
            },
        };

        super::kernels::simd_kernels!(@gemv $feat, gemv_f32, rows_f32, f32, ld, |v: f32| v);
        super::kernels::simd_kernels!(@gemv $feat, gemv_f16, rows_f16, u16, ld_f16, f16_bits);
        super::kernels::simd_kernels!(@gemv $feat, gemv_bf16, rows_bf16, u16, ld_bf16, bf16_bits);
        super::kernels::simd_kernels!(@convert $feat, f16_to_f32, ld_f16, f16_bits);
        super::kernels::simd_kernels!(@convert $feat, bf16_to_f32, ld_bf16, bf16_bits);

        /// One MR×NR register tile over `ks` k-steps of packed panels (see `Kernels::tile`): per
        /// `W`-lane slice of a k-step, MR activation vectors are loaded, then each weight vector
        /// feeds MR FMAs (MR·NR accumulators + MR + 1 registers).
        #[target_feature(enable = $feat)]
        fn tile(a: &[f32], b: &[f32], ks: usize, out: &mut [f32]) {
            let ap = &a.as_chunks::<{ MR * P }>().0[..ks];
            let bp = &b.as_chunks::<{ NR * P }>().0[..ks];
            let mut acc = [[zero(); NR]; MR];
            for (ak, bk) in ap.iter().zip(bp) {
                let av_all = ak.as_chunks::<W>().0;
                let bv_all = bk.as_chunks::<W>().0;
                for h in 0..P / W {
                    let mut av = [zero(); MR];
                    for p in 0..MR {
                        av[p] = ld(&av_all[p * (P / W) + h]);
                    }
                    for q in 0..NR {
                        let bv = ld(&bv_all[q * (P / W) + h]);
                        for p in 0..MR {
                            acc[p][q] = fma(av[p], bv, acc[p][q]);
                        }
                    }
                }
            }
            for p in 0..MR {
                out[p * NR..][..NR].copy_from_slice(&hsum4(&acc[p]));
            }
        }

        /// `Σ a[i]·b[i]` with two accumulators.
        #[target_feature(enable = $feat)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            let b = &b[..a.len()];
            let (ac, at) = a.as_chunks::<W>();
            let (bc, bt) = b.as_chunks::<W>();
            let (ap, ar) = ac.as_chunks::<2>();
            let (bp, br) = bc.as_chunks::<2>();
            let (mut a0, mut a1) = (zero(), zero());
            for (x, y) in ap.iter().zip(bp) {
                a0 = fma(ld(&x[0]), ld(&y[0]), a0);
                a1 = fma(ld(&x[1]), ld(&y[1]), a1);
            }
            for (x, y) in ar.iter().zip(br) {
                a0 = fma(ld(x), ld(y), a0);
            }
            let mut s = hsum(add(a0, a1));
            for (x, y) in at.iter().zip(bt) {
                s += x * y;
            }
            s
        }

        /// `y[i] += a·x[i]`.
        #[target_feature(enable = $feat)]
        fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
            let x = &x[..y.len()];
            let av = splat(a);
            let (xc, xt) = x.as_chunks::<W>();
            let (yc, yt) = y.as_chunks_mut::<W>();
            for (xv, yv) in xc.iter().zip(yc) {
                let r = fma(av, ld(xv), ld(yv));
                st(yv, r);
            }
            for (xv, yv) in xt.iter().zip(yt) {
                *yv += a * xv;
            }
        }
    };

    // gemv of one weight dtype: `$rows` computes R dot products sharing the loads of `x` (two
    // accumulators per row, so every row sums in the same order), `$name` walks rows four at a time.
    (@gemv $feat:literal, $name:ident, $rows:ident, $t:ty, $ld:ident, $cv:expr) => {
        #[inline]
        #[target_feature(enable = $feat)]
        fn $rows<const R: usize>(x: &[f32], w: [&[$t]; R]) -> [f32; R] {
            let (xc, xt) = x.as_chunks::<W>();
            let n = xc.len();
            // (Loops, not closures: a closure would not inherit the target features.)
            let mut wc: [&[[$t; W]]; R] = [&[]; R];
            for r in 0..R {
                wc[r] = &w[r].as_chunks::<W>().0[..n];
            }
            let mut a0 = [zero(); R];
            let mut a1 = [zero(); R];
            let (xp, xr) = xc.as_chunks::<2>();
            let mut wp: [&[[[$t; W]; 2]]; R] = [&[]; R];
            for r in 0..R {
                wp[r] = &wc[r].as_chunks::<2>().0[..xp.len()];
            }
            for i in 0..xp.len() {
                let (x0, x1) = (ld(&xp[i][0]), ld(&xp[i][1]));
                for r in 0..R {
                    a0[r] = fma($ld(&wp[r][i][0]), x0, a0[r]);
                    a1[r] = fma($ld(&wp[r][i][1]), x1, a1[r]);
                }
            }
            if let [xv] = xr {
                let x0 = ld(xv);
                for r in 0..R {
                    a0[r] = fma($ld(&wc[r][n - 1]), x0, a0[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                let mut s = hsum(add(a0[r], a1[r]));
                for (k, xv) in xt.iter().enumerate() {
                    s += xv * $cv(w[r][n * W + k]);
                }
                out[r] = s;
            }
            out
        }

        #[target_feature(enable = $feat)]
        fn $name(x: &[f32], w: &[$t], out: &mut [f32]) {
            let cols = x.len();
            let mut quads = out.chunks_exact_mut(4);
            let mut r = 0;
            for o in &mut quads {
                let mut rows: [&[$t]; 4] = [&[]; 4];
                for q in 0..4 {
                    rows[q] = &w[(r + q) * cols..][..cols];
                }
                o.copy_from_slice(&$rows(x, rows));
                r += 4;
            }
            for o in quads.into_remainder() {
                *o = $rows(x, [&w[r * cols..][..cols]])[0];
                r += 1;
            }
        }
    };

    // Widening of 16-bit weights to f32.
    (@convert $feat:literal, $name:ident, $ld:ident, $cv:expr) => {
        #[target_feature(enable = $feat)]
        fn $name(src: &[u16], out: &mut [f32]) {
            let src = &src[..out.len()];
            let (sc, stail) = src.as_chunks::<W>();
            let (oc, otail) = out.as_chunks_mut::<W>();
            for (s, o) in sc.iter().zip(oc) {
                st(o, $ld(s));
            }
            for (s, o) in stail.iter().zip(otail) {
                *o = $cv(*s);
            }
        }
    };
}

pub(crate) use simd_kernels;

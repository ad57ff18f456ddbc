//! SIMD level detection and the table of kernels (function pointers) picked once per process.
//!
//! Each instruction-set module (`avx512`, `avx2`, `neon`, `scalar`) provides the same small set of
//! kernels; [`Kernels::for_level`] hands out a table only for a level the CPU supports, which is what
//! makes calling the `#[target_feature]` functions behind it sound.

use std::sync::OnceLock;

use super::scalar;
use crate::backend::DType;

/// Instruction-set level of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// AVX-512F (x86-64).
    Avx512,
    /// AVX2 + FMA + F16C (x86-64).
    Avx2,
    /// NEON (aarch64).
    Neon,
    /// Portable Rust.
    Scalar,
}

impl Level {
    /// Name as shown in the device string.
    pub fn name(self) -> &'static str {
        match self {
            Level::Avx512 => "avx512f",
            Level::Avx2 => "avx2+fma",
            Level::Neon => "neon",
            Level::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the kernels of this level.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "aarch64")]
            Level::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Level::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best level this CPU supports (detected once).
    pub fn detect() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            [Level::Avx512, Level::Avx2, Level::Neon]
                .into_iter()
                .find(|l| l.supported())
                .unwrap_or(Level::Scalar)
        })
    }
}

/// f32 lanes of one k-step of a packed GEMM panel (the same for every instruction set).
pub const P: usize = 16;
/// Weight rows per GEMM register tile (every instruction set).
pub const NR: usize = 4;

/// `gemv(x, k, xs, w, out, ldo)` of quantized weights (see [`QuantKernels::gemv`]).
pub type QuantGemv = fn(&[f32], usize, &[f32], &[u8], &mut [f32], usize);

/// The kernels of one quantized weight dtype.
pub struct QuantKernels {
    /// `gemv(x, k, xs, w, out, ldo)`: for each of the `m = x.len() / k` activation rows `x[t]` (with
    /// their per-32 sums `xs[t·k/32 ..]`, [`crate::backend::quant::block_sums`]) and each of the
    /// `w.len() / row_bytes` quantized weight rows `w[r]`, `out[t·ldo + r] = x[t]·w[r]`. Each output
    /// is computed with the same operations whatever row or token position it has.
    pub gemv: QuantGemv,
    /// `dequant(w, out, stride)`: the blocks of `w` as f32, bit-identical to
    /// [`crate::backend::quant::dequantize`], written in chunks of [`P`] elements `stride` floats
    /// apart in `out` (`stride = P`: contiguous; `NR·P`: a row of a packed GEMM panel).
    pub dequant: fn(&[u8], &mut [f32], usize),
}

/// One instruction-set level's kernels. Every gemv computes each output with the same operation
/// order whatever row it sits in, so results do not depend on how rows are split among threads.
pub struct Kernels {
    pub level: Level,
    /// `out[r] = Σ_k x[k]·w[r·cols + k]` with `cols = x.len()`, for `out.len()` f32 rows.
    pub gemv_f32: fn(&[f32], &[f32], &mut [f32]),
    /// As `gemv_f32` for f16 weights (raw bits).
    pub gemv_f16: fn(&[f32], &[u16], &mut [f32]),
    /// As `gemv_f32` for bf16 weights (raw bits).
    pub gemv_bf16: fn(&[f32], &[u16], &mut [f32]),
    /// `out[i] = f16(src[i])` for `out.len()` elements.
    pub f16_to_f32: fn(&[u16], &mut [f32]),
    /// `out[i] = bf16(src[i])` for `out.len()` elements.
    pub bf16_to_f32: fn(&[u16], &mut [f32]),
    /// Tokens per GEMM register tile.
    pub mr: usize,
    /// GEMM register tile: `tile(a, b, ks, out)` sets `out[p·NR + q] = Σ_k a_p[k]·b_q[k]` for
    /// `p < mr`, `q < NR`, over `ks` k-steps of packed panels: `a` is `[ks][mr][P]`, `b` is
    /// `[ks][NR][P]` (rows interleaved per k-step, zero-padded).
    pub tile: fn(&[f32], &[f32], usize, &mut [f32]),
    /// `Σ a[i]·b[i]` over `a.len()` elements.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// `Σ x[i]²`.
    pub sum_sq: fn(&[f32]) -> f32,
    /// `y[i] += a·x[i]` over `y.len()` elements.
    pub axpy: fn(f32, &[f32], &mut [f32]),
    /// Quantized weights.
    pub q8_0: QuantKernels,
    pub q4_0: QuantKernels,
    pub q4_1: QuantKernels,
    pub q4k: QuantKernels,
    pub q6k: QuantKernels,
}

static SCALAR: Kernels = Kernels {
    level: Level::Scalar,
    gemv_f32: scalar::gemv_f32,
    gemv_f16: scalar::gemv_f16,
    gemv_bf16: scalar::gemv_bf16,
    f16_to_f32: scalar::f16_to_f32,
    bf16_to_f32: scalar::bf16_to_f32,
    mr: scalar::MR,
    tile: scalar::tile,
    dot: scalar::dot,
    sum_sq: scalar::sum_sq,
    axpy: scalar::axpy,
    q8_0: QuantKernels { gemv: scalar::gemv_q8_0, dequant: scalar::deq_q8_0 },
    q4_0: QuantKernels { gemv: scalar::gemv_q4_0, dequant: scalar::deq_q4_0 },
    q4_1: QuantKernels { gemv: scalar::gemv_q4_1, dequant: scalar::deq_q4_1 },
    q4k: QuantKernels { gemv: scalar::gemv_q4k, dequant: scalar::deq_q4k },
    q6k: QuantKernels { gemv: scalar::gemv_q6k, dequant: scalar::deq_q6k },
};

impl Kernels {
    /// The kernels of `level`, or `None` when this CPU cannot run them.
    pub fn for_level(level: Level) -> Option<&'static Kernels> {
        if !level.supported() {
            return None;
        }
        match level {
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Some(&super::avx512::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Some(&super::avx2::KERNELS),
            #[cfg(target_arch = "aarch64")]
            Level::Neon => Some(&super::neon::KERNELS),
            Level::Scalar => Some(&SCALAR),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The kernels of a quantized dtype (`None` for the float types).
    pub fn quant(&self, dtype: DType) -> Option<&QuantKernels> {
        match dtype {
            DType::Q8_0 => Some(&self.q8_0),
            DType::Q4_0 => Some(&self.q4_0),
            DType::Q4_1 => Some(&self.q4_1),
            DType::Q4K => Some(&self.q4k),
            DType::Q6K => Some(&self.q6k),
            DType::F32 | DType::F16 | DType::BF16 => None,
        }
    }

    /// The kernels of the best detected level.
    pub fn best() -> &'static Kernels {
        Kernels::for_level(Level::detect()).unwrap_or(&SCALAR)
    }
}

/// f16 bits to f32 (scalar).
#[inline]
pub fn f16_bits(v: u16) -> f32 {
    half::f16::from_bits(v).to_f32()
}

/// bf16 bits to f32 (scalar, exact).
#[inline]
pub fn bf16_bits(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// The SIMD levels this CPU runs (the scalar table is the reference).
    fn simd_tables() -> Vec<&'static Kernels> {
        let t: Vec<_> =
            [Level::Avx512, Level::Avx2, Level::Neon].into_iter().filter_map(Kernels::for_level).collect();
        eprintln!("testing {:?} against scalar", t.iter().map(|k| k.level).collect::<Vec<_>>());
        t
    }

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// `|a - b| <= 1e-5 · Σ|terms|`: the rounding bound of an f32 dot product of that size.
    fn close(a: f32, b: f32, abs_sum: f32, what: &str) {
        assert!((a - b).abs() <= 1e-5 * abs_sum + 1e-30, "{what}: {a} vs {b} (Σ|x·w| = {abs_sum})");
    }

    const COLS: [usize; 10] = [0, 1, 7, 15, 16, 17, 33, 64, 257, 1000];

    #[test]
    fn gemv_matches_scalar() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for k in simd_tables() {
            for cols in COLS {
                for rows in [1, 3, 4, 5, 9] {
                    let x = rand_vec(&mut rng, cols);
                    let wf = rand_vec(&mut rng, rows * cols);
                    let wh: Vec<u16> = wf.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
                    let wb: Vec<u16> = wf.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
                    let abs: Vec<f32> = (0..rows)
                        .map(|r| (0..cols).map(|c| (x[c] * wf[r * cols + c]).abs()).sum::<f32>())
                        .collect();
                    let (mut a, mut b) = (vec![0f32; rows], vec![0f32; rows]);
                    for (name, f, g) in
                        [("f16", k.gemv_f16, SCALAR.gemv_f16), ("bf16", k.gemv_bf16, SCALAR.gemv_bf16)]
                    {
                        let w = if name == "f16" { &wh } else { &wb };
                        f(&x, w, &mut a);
                        g(&x, w, &mut b);
                        for r in 0..rows {
                            close(a[r], b[r], abs[r], &format!("{:?} gemv {name} {rows}x{cols}", k.level));
                        }
                    }
                    (k.gemv_f32)(&x, &wf, &mut a);
                    (SCALAR.gemv_f32)(&x, &wf, &mut b);
                    for r in 0..rows {
                        close(a[r], b[r], abs[r], &format!("{:?} gemv f32 {rows}x{cols}", k.level));
                        // The single-row path gives the same bits as the four-row path.
                        let mut one = [0f32];
                        (k.gemv_f32)(&x, &wf[r * cols..][..cols], &mut one);
                        assert_eq!(one[0].to_bits(), a[r].to_bits(), "{:?} row {r} of {rows}", k.level);
                    }
                }
            }
        }
    }

    #[test]
    fn conversions_are_exact() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for k in simd_tables() {
            for n in COLS {
                let bits: Vec<u16> = (0..n).map(|_| rng.random()).collect();
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                for (f, g) in [(k.f16_to_f32, SCALAR.f16_to_f32), (k.bf16_to_f32, SCALAR.bf16_to_f32)] {
                    f(&bits, &mut a);
                    g(&bits, &mut b);
                    for (x, y) in a.iter().zip(&b) {
                        assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_tile_matches_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in simd_tables().into_iter().chain([&SCALAR]) {
            assert!(k.mr <= 8, "matmul keeps at most 8×NR sums");
            for ks in [0, 1, 2, 5, 64] {
                let a = rand_vec(&mut rng, ks * k.mr * P);
                let b = rand_vec(&mut rng, ks * NR * P);
                let mut out = vec![f32::NAN; k.mr * NR];
                (k.tile)(&a, &b, ks, &mut out);
                for p in 0..k.mr {
                    for q in 0..NR {
                        let terms = (0..ks * P).map(|i| {
                            let (s, l) = (i / P, i % P);
                            a[(s * k.mr + p) * P + l] * b[(s * NR + q) * P + l]
                        });
                        let want: f32 = terms.clone().sum();
                        let abs: f32 = terms.map(f32::abs).sum();
                        close(out[p * NR + q], want, abs, &format!("{:?} tile ks {ks} ({p}, {q})", k.level));
                    }
                }
            }
        }
    }

    #[test]
    fn dot_sum_sq_axpy_match_scalar() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for k in simd_tables() {
            for n in COLS {
                let (x, y) = (rand_vec(&mut rng, n), rand_vec(&mut rng, n));
                let abs = x.iter().zip(&y).map(|(a, b)| (a * b).abs()).sum::<f32>();
                close((k.dot)(&x, &y), (SCALAR.dot)(&x, &y), abs, "dot");
                let sq = x.iter().map(|a| a * a).sum::<f32>();
                close((k.sum_sq)(&x), (SCALAR.sum_sq)(&x), sq, "sum_sq");
                let (mut y1, mut y2) = (y.clone(), y.clone());
                (k.axpy)(0.37, &x, &mut y1);
                (SCALAR.axpy)(0.37, &x, &mut y2);
                for i in 0..n {
                    close(y1[i], y2[i], y[i].abs() + (0.37 * x[i]).abs(), "axpy");
                }
            }
        }
    }
}

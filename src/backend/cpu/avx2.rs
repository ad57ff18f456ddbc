//! AVX2 + FMA + F16C kernels (x86-64): vector helpers for [`simd_kernels!`] and [`quant_kernels!`];
//! 3×4 GEMM register tile.

use std::arch::x86_64::*;

use super::simd::{Level, NR, P, bf16_bits, f16_bits};

type V = __m256;
/// f32 lanes of one vector.
const W: usize = 8;
/// Tokens per GEMM register tile: 3×4 accumulators + 3 activation vectors + 1 = 16 ymm.
const MR: usize = 3;

super::qkernels::quant_kernels!("avx2,fma,f16c");
super::kernels::simd_kernels!("avx2,fma,f16c", Level::Avx2);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn zero() -> V {
    _mm256_setzero_ps()
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn splat(v: f32) -> V {
    _mm256_set1_ps(v)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fma(a: V, b: V, c: V) -> V {
    _mm256_fmadd_ps(a, b, c)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add(a: V, b: V) -> V {
    _mm256_add_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld(s: &[f32; W]) -> V {
    // SAFETY: `s` is 8 readable f32; the load is unaligned.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn st(d: &mut [f32; W], v: V) {
    // SAFETY: `d` is 8 writable f32; the store is unaligned.
    unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f16(s: &[u16; W]) -> V {
    // SAFETY: `s` is 16 readable bytes; the load is unaligned.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_bf16(s: &[u16; W]) -> V {
    // SAFETY: `s` is 16 readable bytes; the load is unaligned.
    let h = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: V) -> f32 {
    let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2)))
}

/// Horizontal sums of four vectors, `[Σv0, Σv1, Σv2, Σv3]`, each summed in the same order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4(v: &[V; 4]) -> [f32; 4] {
    let t0 = _mm256_add_ps(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1]));
    let t1 = _mm256_add_ps(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3]));
    let s =
        _mm256_add_ps(_mm256_shuffle_ps::<0b01_00_01_00>(t0, t1), _mm256_shuffle_ps::<0b11_10_11_10>(t0, t1));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let mut out = [0f32; 4];
    // SAFETY: `out` is 4 writable f32.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s4) };
    out
}

// ---- quantized-weight helpers (see `qkernels.rs`) ----------------------------------------------

type VI = __m256i;
/// Tokens one quantized gemv pass keeps in registers (4 rows × 2 tokens of accumulators: 16 registers).
const QM: usize = 2;
/// The most tokens of a gemv pass over four weight rows at a time (more take two: no spills).
const QM4: usize = 1;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_u8(s: &[u8; W]) -> VI {
    // SAFETY: `s` is 8 readable bytes; the load is unaligned.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_i8(s: &[u8; W]) -> VI {
    // SAFETY: `s` is 8 readable bytes; the load is unaligned.
    _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isplat(v: i32) -> VI {
    _mm256_set1_epi32(v)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iand(a: VI, b: VI) -> VI {
    _mm256_and_si256(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ior(a: VI, b: VI) -> VI {
    _mm256_or_si256(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isub(a: VI, b: VI) -> VI {
    _mm256_sub_epi32(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shr4(a: VI) -> VI {
    _mm256_srli_epi32::<4>(a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shr2(a: VI) -> VI {
    _mm256_srli_epi32::<2>(a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shl4(a: VI) -> VI {
    _mm256_slli_epi32::<4>(a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shl2(a: VI) -> VI {
    _mm256_slli_epi32::<2>(a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn cvt(a: VI) -> V {
    _mm256_cvtepi32_ps(a)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul(a: V, b: V) -> V {
    _mm256_mul_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sub(a: V, b: V) -> V {
    _mm256_sub_ps(a, b)
}

/// Asks for the cache line at `s[at..]` (which may lie past the end: a prefetch never faults).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch(s: &[u8], at: usize) {
    _mm_prefetch::<_MM_HINT_T1>(s.as_ptr().wrapping_add(at).cast())
}

/// The low and high nibbles of `W` bytes as f32, minus 8 when `SUB8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles<const SUB8: bool>(s: &[u8; W]) -> (V, V) {
    let v = ld_u8(s);
    let (lo, hi) = (iand(v, isplat(0xF)), shr4(v));
    if SUB8 { (cvt(isub(lo, isplat(8))), cvt(isub(hi, isplat(8)))) } else { (cvt(lo), cvt(hi)) }
}

//! AVX-512F kernels (x86-64): vector helpers for [`simd_kernels!`] and [`quant_kernels!`]; 6×4 GEMM
//! register tile.

use std::arch::x86_64::*;

use super::simd::{Level, NR, P, bf16_bits, f16_bits};

type V = __m512;
/// f32 lanes of one vector.
const W: usize = 16;
/// Tokens per GEMM register tile: 6×4 accumulators + 6 activation vectors + 1 = 31 zmm.
const MR: usize = 6;

super::qkernels::quant_kernels!("avx512f");
super::kernels::simd_kernels!("avx512f", Level::Avx512);

#[inline]
#[target_feature(enable = "avx512f")]
fn zero() -> V {
    _mm512_setzero_ps()
}

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(v: f32) -> V {
    _mm512_set1_ps(v)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn fma(a: V, b: V, c: V) -> V {
    _mm512_fmadd_ps(a, b, c)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn add(a: V, b: V) -> V {
    _mm512_add_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ld(s: &[f32; W]) -> V {
    // SAFETY: `s` is 16 readable f32; the load is unaligned.
    unsafe { _mm512_loadu_ps(s.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn st(d: &mut [f32; W], v: V) {
    // SAFETY: `d` is 16 writable f32; the store is unaligned.
    unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ld_f16(s: &[u16; W]) -> V {
    // SAFETY: `s` is 32 readable bytes; the load is unaligned.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ld_bf16(s: &[u16; W]) -> V {
    // SAFETY: `s` is 32 readable bytes; the load is unaligned.
    let h = unsafe { _mm256_loadu_si256(s.as_ptr().cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn hsum(v: V) -> f32 {
    _mm512_reduce_add_ps(v)
}

/// Horizontal sums of four vectors, `[Σv0, Σv1, Σv2, Σv3]`, each summed in the same order.
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum4(v: &[V; 4]) -> [f32; 4] {
    let t0 = _mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    let t1 = _mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    let s =
        _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(t0, t1), _mm512_shuffle_ps::<0b11_10_11_10>(t0, t1));
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(s), hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let mut out = [0f32; 4];
    // SAFETY: `out` is 4 writable f32.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), s4) };
    out
}

// ---- quantized-weight helpers (see `qkernels.rs`) ----------------------------------------------

type VI = __m512i;
/// Tokens one quantized gemv pass keeps in registers (4 rows × 4 tokens of accumulators).
const QM: usize = 4;
/// The most tokens of a gemv pass over four weight rows at a time (more take two: no spills).
const QM4: usize = 2;

#[inline]
#[target_feature(enable = "avx512f")]
fn ld_u8(s: &[u8; W]) -> VI {
    // SAFETY: `s` is 16 readable bytes; the load is unaligned.
    _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ld_i8(s: &[u8; W]) -> VI {
    // SAFETY: `s` is 16 readable bytes; the load is unaligned.
    _mm512_cvtepi8_epi32(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn isplat(v: i32) -> VI {
    _mm512_set1_epi32(v)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn iand(a: VI, b: VI) -> VI {
    _mm512_and_si512(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn ior(a: VI, b: VI) -> VI {
    _mm512_or_si512(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn isub(a: VI, b: VI) -> VI {
    _mm512_sub_epi32(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn shr4(a: VI) -> VI {
    _mm512_srli_epi32::<4>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn shr2(a: VI) -> VI {
    _mm512_srli_epi32::<2>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn shl4(a: VI) -> VI {
    _mm512_slli_epi32::<4>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn shl2(a: VI) -> VI {
    _mm512_slli_epi32::<2>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn cvt(a: VI) -> V {
    _mm512_cvtepi32_ps(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn mul(a: V, b: V) -> V {
    _mm512_mul_ps(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn sub(a: V, b: V) -> V {
    _mm512_sub_ps(a, b)
}

/// Asks for the cache line at `s[at..]` (which may lie past the end: a prefetch never faults).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch(s: &[u8], at: usize) {
    _mm_prefetch::<_MM_HINT_T1>(s.as_ptr().wrapping_add(at).cast())
}

/// The low and high nibbles of `W` bytes as f32, minus 8 when `SUB8`: a 16-entry table lookup
/// (`vpermps` reads only the low 4 bits of each index), no masking or conversion.
#[inline]
#[target_feature(enable = "avx512f")]
fn nibbles<const SUB8: bool>(s: &[u8; W]) -> (V, V) {
    let v = ld_u8(s);
    let o = if SUB8 { 8.0 } else { 0.0 };
    #[rustfmt::skip]
    let table = _mm512_setr_ps(
        0.0 - o, 1.0 - o, 2.0 - o, 3.0 - o, 4.0 - o, 5.0 - o, 6.0 - o, 7.0 - o,
        8.0 - o, 9.0 - o, 10.0 - o, 11.0 - o, 12.0 - o, 13.0 - o, 14.0 - o, 15.0 - o,
    );
    (_mm512_permutexvar_ps(v, table), _mm512_permutexvar_ps(shr4(v), table))
}

//! NEON kernels (aarch64): vector helpers for [`simd_kernels!`]; 4×4 GEMM register tile.

use std::arch::aarch64::*;

use super::simd::{Level, NR, P, bf16_bits, f16_bits};

type V = float32x4_t;
/// f32 lanes of one vector.
const W: usize = 4;
/// Tokens per GEMM register tile: 4×4 accumulators + 4 activation vectors + 1 = 21 of 32 registers.
const MR: usize = 4;

super::kernels::simd_kernels!("neon", Level::Neon);

#[inline]
#[target_feature(enable = "neon")]
fn zero() -> V {
    vdupq_n_f32(0.0)
}

#[inline]
#[target_feature(enable = "neon")]
fn splat(v: f32) -> V {
    vdupq_n_f32(v)
}

#[inline]
#[target_feature(enable = "neon")]
fn fma(a: V, b: V, c: V) -> V {
    vfmaq_f32(c, a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn add(a: V, b: V) -> V {
    vaddq_f32(a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn ld(s: &[f32; W]) -> V {
    // SAFETY: `s` is 4 readable f32.
    unsafe { vld1q_f32(s.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn st(d: &mut [f32; W], v: V) {
    // SAFETY: `d` is 4 writable f32.
    unsafe { vst1q_f32(d.as_mut_ptr(), v) }
}

/// f16 through the portable conversion (the NEON f16 vector types are not stable Rust).
#[inline]
#[target_feature(enable = "neon")]
fn ld_f16(s: &[u16; W]) -> V {
    ld(&s.map(f16_bits))
}

#[inline]
#[target_feature(enable = "neon")]
fn ld_bf16(s: &[u16; W]) -> V {
    // SAFETY: `s` is 8 readable bytes.
    let h = unsafe { vld1_u16(s.as_ptr()) };
    vreinterpretq_f32_u32(vshlq_n_u32::<16>(vmovl_u16(h)))
}

#[inline]
#[target_feature(enable = "neon")]
fn hsum(v: V) -> f32 {
    vaddvq_f32(v)
}

/// Horizontal sums of four vectors, `[Σv0, Σv1, Σv2, Σv3]`, each summed in the same order.
#[inline]
#[target_feature(enable = "neon")]
fn hsum4(v: &[V; 4]) -> [f32; 4] {
    let s = vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
    let mut out = [0f32; 4];
    st(&mut out, s);
    out
}

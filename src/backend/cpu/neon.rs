//! NEON kernels (aarch64): vector helpers for [`simd_kernels!`] and [`quant_kernels!`]; 4×4 GEMM register
//! tile.

use std::arch::aarch64::*;

use super::simd::{Level, NR, P, bf16_bits, f16_bits};

type V = float32x4_t;
/// f32 lanes of one vector.
const W: usize = 4;
/// Tokens per GEMM register tile: 4×4 accumulators + 4 activation vectors + 1 = 21 of 32 registers.
const MR: usize = 4;

super::qkernels::quant_kernels!("neon");
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

// ---- quantized-weight helpers (see `qkernels.rs`) ----------------------------------------------

type VI = int32x4_t;
/// Tokens one quantized gemv pass keeps in registers.
const QM: usize = 4;
/// The most tokens of a gemv pass over four weight rows at a time (more take two: no spills).
const QM4: usize = 2;

#[inline]
#[target_feature(enable = "neon")]
fn ld_u8(s: &[u8; W]) -> VI {
    let b = vcreate_u8(u32::from_le_bytes(*s) as u64);
    vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(b))))
}

#[inline]
#[target_feature(enable = "neon")]
fn ld_i8(s: &[u8; W]) -> VI {
    let b = vcreate_s8(u32::from_le_bytes(*s) as u64);
    vmovl_s16(vget_low_s16(vmovl_s8(b)))
}

#[inline]
#[target_feature(enable = "neon")]
fn isplat(v: i32) -> VI {
    vdupq_n_s32(v)
}

#[inline]
#[target_feature(enable = "neon")]
fn iand(a: VI, b: VI) -> VI {
    vandq_s32(a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn ior(a: VI, b: VI) -> VI {
    vorrq_s32(a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn isub(a: VI, b: VI) -> VI {
    vsubq_s32(a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn shr4(a: VI) -> VI {
    vreinterpretq_s32_u32(vshrq_n_u32::<4>(vreinterpretq_u32_s32(a)))
}

#[inline]
#[target_feature(enable = "neon")]
fn shr2(a: VI) -> VI {
    vreinterpretq_s32_u32(vshrq_n_u32::<2>(vreinterpretq_u32_s32(a)))
}

#[inline]
#[target_feature(enable = "neon")]
fn shl4(a: VI) -> VI {
    vshlq_n_s32::<4>(a)
}

#[inline]
#[target_feature(enable = "neon")]
fn shl2(a: VI) -> VI {
    vshlq_n_s32::<2>(a)
}

#[inline]
#[target_feature(enable = "neon")]
fn cvt(a: VI) -> V {
    vcvtq_f32_s32(a)
}

#[inline]
#[target_feature(enable = "neon")]
fn mul(a: V, b: V) -> V {
    vmulq_f32(a, b)
}

#[inline]
#[target_feature(enable = "neon")]
fn sub(a: V, b: V) -> V {
    vsubq_f32(a, b)
}

/// Prefetch hint: none (the aarch64 prefetch intrinsic is not stable Rust).
#[inline]
#[target_feature(enable = "neon")]
fn prefetch(_s: &[u8], _at: usize) {}

/// The low and high nibbles of `W` bytes as f32, minus 8 when `SUB8`.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles<const SUB8: bool>(s: &[u8; W]) -> (V, V) {
    let v = ld_u8(s);
    let (lo, hi) = (iand(v, isplat(0xF)), shr4(v));
    if SUB8 { (cvt(isub(lo, isplat(8))), cvt(isub(hi, isplat(8)))) } else { (cvt(lo), cvt(hi)) }
}

//! Portable kernels: the fallback on CPUs without a SIMD level, and the reference the SIMD ones are
//! tested against.

use super::simd::{NR, P, bf16_bits, f16_bits};
use crate::backend::{DType, quant};

/// Lanes of the independent accumulators (lets the compiler vectorize without reassociating).
const L: usize = 8;

#[inline]
fn dot_conv<T: Copy>(x: &[f32], w: &[T], conv: impl Fn(T) -> f32) -> f32 {
    let w = &w[..x.len()];
    let mut acc = [0f32; L];
    let (xc, xt) = x.as_chunks::<L>();
    let (wc, wt) = w.as_chunks::<L>();
    for (xv, wv) in xc.iter().zip(wc) {
        for l in 0..L {
            acc[l] += xv[l] * conv(wv[l]);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (xv, wv) in xt.iter().zip(wt) {
        s += xv * conv(*wv);
    }
    s
}

fn gemv<T: Copy>(x: &[f32], w: &[T], out: &mut [f32], conv: impl Fn(T) -> f32 + Copy) {
    let cols = x.len();
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_conv(x, &w[r * cols..][..cols], conv);
    }
}

pub fn gemv_f32(x: &[f32], w: &[f32], out: &mut [f32]) {
    gemv(x, w, out, |v| v);
}

pub fn gemv_f16(x: &[f32], w: &[u16], out: &mut [f32]) {
    gemv(x, w, out, f16_bits);
}

pub fn gemv_bf16(x: &[f32], w: &[u16], out: &mut [f32]) {
    gemv(x, w, out, bf16_bits);
}

pub fn f16_to_f32(src: &[u16], out: &mut [f32]) {
    for (o, s) in out.iter_mut().zip(src) {
        *o = f16_bits(*s);
    }
}

pub fn bf16_to_f32(src: &[u16], out: &mut [f32]) {
    for (o, s) in out.iter_mut().zip(src) {
        *o = bf16_bits(*s);
    }
}

/// Tokens per GEMM register tile.
pub const MR: usize = 4;

pub fn tile(a: &[f32], b: &[f32], ks: usize, out: &mut [f32]) {
    let mut acc = [[[0f32; P]; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR * P).zip(b.chunks_exact(NR * P)).take(ks) {
        for (p, acc_p) in acc.iter_mut().enumerate() {
            for (q, acc_pq) in acc_p.iter_mut().enumerate() {
                for l in 0..P {
                    acc_pq[l] += ak[p * P + l] * bk[q * P + l];
                }
            }
        }
    }
    for p in 0..MR {
        for q in 0..NR {
            out[p * NR + q] = acc[p][q].iter().sum();
        }
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_conv(a, b, |v| v)
}

pub fn sum_sq(x: &[f32]) -> f32 {
    dot_conv(x, x, |v| v)
}

pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// Quantized gemv through the block math of [`crate::backend::quant`] (see `QuantKernels::gemv`).
fn gemv_quant(dtype: DType, x: &[f32], k: usize, xs: &[f32], w: &[u8], out: &mut [f32], ldo: usize) {
    let (kb, rb) = (k / quant::QK, k / dtype.block_elems() * dtype.block_bytes());
    for (t, (xr, sr)) in x.chunks_exact(k).zip(xs.chunks_exact(kb)).enumerate() {
        for (r, wr) in w.chunks_exact(rb).enumerate() {
            out[t * ldo + r] = quant::dot_row(dtype, xr, sr, wr);
        }
    }
}

/// Dequantization through [`crate::backend::quant`] (see `QuantKernels::dequant`).
fn dequant_strided(dtype: DType, w: &[u8], out: &mut [f32], stride: usize) {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    let mut buf = [0f32; quant::QK_K];
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        quant::dequantize_block(dtype, blk, &mut buf[..be]);
        for (c, chunk) in buf[..be].chunks_exact(P).enumerate() {
            let e = b * be + c * P;
            out[e / P * stride..][..P].copy_from_slice(chunk);
        }
    }
}

macro_rules! scalar_quant {
    ($($gemv:ident, $deq:ident, $dt:expr;)*) => {$(
        pub fn $gemv(x: &[f32], k: usize, xs: &[f32], w: &[u8], out: &mut [f32], ldo: usize) {
            gemv_quant($dt, x, k, xs, w, out, ldo);
        }

        pub fn $deq(w: &[u8], out: &mut [f32], stride: usize) {
            dequant_strided($dt, w, out, stride);
        }
    )*};
}

scalar_quant! {
    gemv_q8_0, deq_q8_0, DType::Q8_0;
    gemv_q4_0, deq_q4_0, DType::Q4_0;
    gemv_q4_1, deq_q4_1, DType::Q4_1;
    gemv_q4k, deq_q4k, DType::Q4K;
    gemv_q6k, deq_q6k, DType::Q6K;
}

//! Block quantization in llama.cpp's formats: block layouts, scalar dequantization and dot products
//! (the reference every SIMD kernel is tested against, and the scalar kernels themselves), and the
//! reference quantizers of Q8_0, Q4_0 and Q4_1 (bit-exact with llama.cpp's `quantize_row_*_ref`).
//!
//! Layouts (little-endian, `f16` = IEEE binary16), `j` = element index inside its block:
//! - Q8_0 (32 in 34 bytes): `{f16 d; i8 q[32]}`, `x_j = d·q_j`.
//! - Q4_0 (32 in 18 bytes): `{f16 d; u8 qs[16]}`, `q_j` = low nibble of `qs[j]` for `j < 16`, high
//!   nibble of `qs[j − 16]` otherwise; `x_j = d·(q_j − 8)`.
//! - Q4_1 (32 in 20 bytes): `{f16 d; f16 m; u8 qs[16]}`, nibbles as Q4_0, `x_j = d·q_j + m`.
//! - Q4_K (256 in 144 bytes): `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`: 8 sub-blocks of 32 with
//!   6-bit scale `sc_s` and min `m_s` ([`q4k_scale_min`]); 64-element chunk `c` keeps sub-block `2c` in
//!   the low and `2c + 1` in the high nibbles of `qs[32c ..][..32]`; `x = d·sc_s·q − dmin·m_s`.
//! - Q6_K (256 in 210 bytes): `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`: per 128-element half
//!   `h` (`ql += 64h, qh += 32h`), element `32i + l` (i < 4, l < 32) has low bits from nibble `i / 2`
//!   of `ql[l + 32·(i % 2)]` and high bits `(qh[l] >> 2i) & 3`; `q` is 6-bit, `x = d·sc·(q − 32)` with
//!   `sc = scales[8h + 2i + l / 16]` (sub-blocks of 16).

use thiserror::Error;

use super::DType;

/// Elements of a Q8_0/Q4_0/Q4_1 block, and of a Q4_K sub-block (the granularity of [`block_sums`]).
pub const QK: usize = 32;
/// Elements of a K-quant super-block.
pub const QK_K: usize = 256;

/// Errors of [`quantize`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantError {
    /// prism has no quantizer for this dtype (only q8_0, q4_0 and q4_1).
    #[error("cannot quantize to {0}: supported are q8_0, q4_0, q4_1")]
    Unsupported(DType),
    /// The input is not a whole number of blocks.
    #[error("{n} values are not a whole number of {dtype} blocks of {block}")]
    Length { dtype: DType, n: usize, block: usize },
}

/// f32 of every f16 bit pattern (256 KiB, built at compile time): a block scale costs one load
/// rather than a conversion, and vector kernels broadcast it straight from memory.
pub static F16_TO_F32: [f32; 65536] = f16_table();

const fn f16_table() -> [f32; 65536] {
    let mut t = [0f32; 65536];
    let mut i = 0;
    while i < t.len() {
        t[i] = half::f16::from_bits(i as u16).to_f32_const();
        i += 1;
    }
    t
}

/// The f16 at byte `at` of `b`, as f32.
#[inline]
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    F16_TO_F32[u16::from_le_bytes([b[at], b[at + 1]]) as usize]
}

/// Q4_K's 6-bit scale and min of sub-block `j < 8` from the 12 packed `scales` bytes (ggml's
/// `get_scale_min_k4`): `j < 4` in the low 6 bits of bytes `j` and `j + 4`; otherwise the low and
/// high nibbles of byte `j + 4` with the top 2 bits of bytes `j − 4` and `j` on top.
#[inline]
pub fn q4k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    }
}

/// The multipliers of one Q4_K block's 8 sub-blocks: `(d·sc_s, dmin·m_s)`.
#[inline]
pub fn q4k_scales(block: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (mut s, mut m) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let (sc, mn) = q4k_scale_min(&block[4..16], j);
        s[j] = d * sc as f32;
        m[j] = dmin * mn as f32;
    }
    (s, m)
}

/// The 6-bit quant of Q6_K element `32i + l` of a 128-element half (`ql`, `qh` of that half), before
/// subtracting 32.
#[inline]
pub fn q6k_quant(ql: &[u8], qh: &[u8], i: usize, l: usize) -> i32 {
    let lo = (ql[l + 32 * (i % 2)] >> (4 * (i / 2))) & 0xF;
    let hi = (qh[l] >> (2 * i)) & 3;
    (lo | (hi << 4)) as i32
}

/// Dequantizes one block of `dtype` (`dtype.block_bytes()` bytes) into `out[..dtype.block_elems()]`,
/// with exactly the f32 operations of gguf-py's `dequantize` (so the results are bit-identical).
pub fn dequantize_block(dtype: DType, b: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => out[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        DType::F16 => out[0] = f16_at(b, 0),
        DType::BF16 => out[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        DType::Q8_0 => {
            let d = f16_at(b, 0);
            for (o, &q) in out[..QK].iter_mut().zip(&b[2..34]) {
                *o = d * (q as i8) as f32;
            }
        }
        DType::Q4_0 | DType::Q4_1 => {
            let d = f16_at(b, 0);
            let (m, qs) = if dtype == DType::Q4_1 { (f16_at(b, 2), &b[4..20]) } else { (0.0, &b[2..18]) };
            for (j, &q) in qs.iter().enumerate() {
                let (lo, hi) = ((q & 0xF) as i32, (q >> 4) as i32);
                if dtype == DType::Q4_0 {
                    out[j] = d * (lo - 8) as f32;
                    out[j + 16] = d * (hi - 8) as f32;
                } else {
                    out[j] = d * lo as f32 + m;
                    out[j + 16] = d * hi as f32 + m;
                }
            }
        }
        DType::Q4K => {
            let (s, m) = q4k_scales(b);
            for c in 0..4 {
                let qs = &b[16 + 32 * c..][..32];
                for (l, &q) in qs.iter().enumerate() {
                    out[64 * c + l] = s[2 * c] * (q & 0xF) as f32 - m[2 * c];
                    out[64 * c + 32 + l] = s[2 * c + 1] * (q >> 4) as f32 - m[2 * c + 1];
                }
            }
        }
        DType::Q6K => {
            let d = f16_at(b, 208);
            for h in 0..2 {
                let (ql, qh) = (&b[64 * h..][..64], &b[128 + 32 * h..][..32]);
                for i in 0..4 {
                    for l in 0..32 {
                        let sc = b[192 + 8 * h + 2 * i + l / 16] as i8;
                        out[128 * h + 32 * i + l] = d * sc as f32 * (q6k_quant(ql, qh, i, l) - 32) as f32;
                    }
                }
            }
        }
    }
}

/// Dequantizes `out.len()` elements (whole blocks) of `dtype` from `bytes`.
pub fn dequantize(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    for (o, b) in out.chunks_exact_mut(be).zip(bytes.chunks_exact(bb)) {
        dequantize_block(dtype, b, o);
    }
}

/// `out[b] = Σ x[32b .. 32b + 32]` for each whole run of 32 in `x` — the activation sums the
/// quantized dot products use for their offset terms, computed once per activation row per matmul
/// (eight interleaved partial sums, the same order at every SIMD level).
pub fn block_sums(x: &[f32], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let mut acc = [0f32; 8];
        for part in c.chunks_exact(8) {
            for l in 0..8 {
                acc[l] += part[l];
            }
        }
        *o = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
}

/// `Σ_j q_j·x_j` for 4-bit nibbles laid out as in Q4_0/Q4_1 (`qs` 16 bytes, `x` 32 values).
#[inline]
fn dot_nibbles(qs: &[u8], x: &[f32]) -> f32 {
    let (mut lo, mut hi) = (0f32, 0f32);
    for (j, &q) in qs.iter().enumerate() {
        lo += (q & 0xF) as f32 * x[j];
        hi += (q >> 4) as f32 * x[j + 16];
    }
    lo + hi
}

/// `Σ_k x[k]·w[k]` of f32 activations `x` with one quantized row `w` (`x.len()` elements), using the
/// algebra that keeps the block math in integers × activations: per block
/// `d·Σq·x (+ m·Σx)`, with `xs` the [`block_sums`] of `x` (read by Q4_0, Q4_1 and Q4_K only).
pub fn dot_row(dtype: DType, x: &[f32], xs: &[f32], w: &[u8]) -> f32 {
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    let mut sum = 0f32;
    let mut side = 0f32;
    for (i, (b, xb)) in w.chunks_exact(bb).zip(x.chunks_exact(be)).enumerate() {
        match dtype {
            DType::Q8_0 => {
                let q = b[2..34].iter().zip(xb).map(|(&q, &v)| (q as i8) as f32 * v).sum::<f32>();
                sum += f16_at(b, 0) * q;
            }
            DType::Q4_0 => {
                let d = f16_at(b, 0);
                sum += d * dot_nibbles(&b[2..18], xb);
                side += -8.0 * d * xs[i];
            }
            DType::Q4_1 => {
                sum += f16_at(b, 0) * dot_nibbles(&b[4..20], xb);
                side += f16_at(b, 2) * xs[i];
            }
            DType::Q4K => {
                let (s, m) = q4k_scales(b);
                for c in 0..4 {
                    let qs = &b[16 + 32 * c..][..32];
                    let x0 = &xb[64 * c..][..64];
                    let lo = qs.iter().zip(x0).map(|(&q, &v)| (q & 0xF) as f32 * v).sum::<f32>();
                    let hi = qs.iter().zip(&x0[32..]).map(|(&q, &v)| (q >> 4) as f32 * v).sum::<f32>();
                    sum += s[2 * c] * lo + s[2 * c + 1] * hi;
                    side -= m[2 * c] * xs[8 * i + 2 * c] + m[2 * c + 1] * xs[8 * i + 2 * c + 1];
                }
            }
            DType::Q6K => {
                let d = f16_at(b, 208);
                for h in 0..2 {
                    let (ql, qh) = (&b[64 * h..][..64], &b[128 + 32 * h..][..32]);
                    for i in 0..4 {
                        for half in 0..2 {
                            let sc = b[192 + 8 * h + 2 * i + half] as i8;
                            let xs16 = &xb[128 * h + 32 * i + 16 * half..][..16];
                            let q = (0..16)
                                .map(|l| (q6k_quant(ql, qh, i, 16 * half + l) - 32) as f32 * xs16[l])
                                .sum::<f32>();
                            sum += d * sc as f32 * q;
                        }
                    }
                }
            }
            DType::F32 | DType::F16 | DType::BF16 => {
                let mut v = [0f32];
                dequantize_block(dtype, b, &mut v);
                sum += v[0] * xb[0];
            }
        }
    }
    sum + side
}

/// The f16 bytes of `v` (round to nearest even, as `GGML_FP32_TO_FP16`).
fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Quantizes `x` to `dtype` with llama.cpp's reference quantizers, bit for bit:
/// - Q8_0 (`quantize_row_q8_0_ref`): `d = amax/127`, `q = round(x/d)` (half away from zero).
/// - Q4_0 (`quantize_row_q4_0_ref`): `max` = the value of largest `|x|` (first one, with its sign),
///   `d = max/−8`, `q = min(15, trunc(x/d + 8.5))`.
/// - Q4_1 (`quantize_row_q4_1_ref`): `d = (max − min)/15`, `m = min`, `q = min(15, trunc((x − min)/d
///   + 0.5))`.
///
/// (`x/d` is `x·(1/d)` with `1/d` in f32, and 0 when `d` is 0, as in llama.cpp.)
pub fn quantize(dtype: DType, x: &[f32]) -> Result<Vec<u8>, QuantError> {
    if !matches!(dtype, DType::Q8_0 | DType::Q4_0 | DType::Q4_1) {
        return Err(QuantError::Unsupported(dtype));
    }
    let n = x.len();
    if !n.is_multiple_of(QK) {
        return Err(QuantError::Length { dtype, n, block: QK });
    }
    let mut out = Vec::with_capacity(n / QK * dtype.block_bytes());
    let inv = |d: f32| if d != 0.0 { 1.0 / d } else { 0.0 };
    for b in x.chunks_exact(QK) {
        match dtype {
            DType::Q8_0 => {
                let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = inv(d);
                out.extend(f16_bytes(d));
                out.extend(b.iter().map(|&v| (v * id).round() as i8 as u8));
            }
            DType::Q4_0 => {
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in b {
                    if amax < v.abs() {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -8.0;
                let id = inv(d);
                out.extend(f16_bytes(d));
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
            _ => {
                let (mut min, mut max) = (f32::MAX, -f32::MAX);
                for &v in b {
                    min = if v < min { v } else { min };
                    max = if v > max { v } else { max };
                }
                let d = (max - min) / 15.0;
                let id = inv(d);
                out.extend(f16_bytes(d));
                out.extend(f16_bytes(min));
                let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4k_scales_unpack_as_ggml() {
        // Sub-blocks 0..4: low 6 bits of bytes j (scale) and j + 4 (min).
        let mut s = [0u8; 12];
        s[1] = 0b11_000101; // scale 1 = 5; top bits 3 → scale 5's bits 4..5
        s[5] = 0b10_001001; // min 1 = 9; top bits 2 → min 5's bits 4..5
        s[9] = 0x7A; // scale 5 low nibble 0xA, min 5 low nibble 0x7
        assert_eq!(q4k_scale_min(&s, 1), (5, 9));
        assert_eq!(q4k_scale_min(&s, 5), (0x3A, 0x27));
    }

    #[test]
    fn dot_row_matches_dequantized_dot() {
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4K, DType::Q6K] {
            let n = 512;
            let mut w: Vec<u8> = (0..dtype.bytes_for(n).unwrap()).map(|_| next() as u8).collect();
            // Finite, modest scales.
            for b in w.chunks_exact_mut(dtype.block_bytes()) {
                let at: &[usize] = match dtype {
                    DType::Q4_1 | DType::Q4K => &[0, 2],
                    DType::Q6K => &[208],
                    _ => &[0],
                };
                for &a in at {
                    let v = (next() % 1000) as f32 / 1000.0 - 0.5;
                    b[a..a + 2].copy_from_slice(&f16_bytes(v * 0.1));
                }
            }
            let x: Vec<f32> = (0..n).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
            let mut xs = vec![0f32; n / QK];
            block_sums(&x, &mut xs);
            let mut deq = vec![0f32; n];
            dequantize(dtype, &w, &mut deq);
            let want: f64 = deq.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let abs: f64 = deq.iter().zip(&x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            let got = dot_row(dtype, &x, &xs, &w) as f64;
            assert!((got - want).abs() <= 1e-5 * abs, "{dtype}: {got} vs {want}");
        }
    }

    #[test]
    fn quantize_rejects_other_types_and_partial_blocks() {
        assert_eq!(quantize(DType::Q4K, &[0.0; 256]), Err(QuantError::Unsupported(DType::Q4K)));
        assert!(matches!(quantize(DType::Q8_0, &[0.0; 33]), Err(QuantError::Length { n: 33, .. })));
        // d = 0/−8 = −0.0 as in C; every q is 8.
        let zero: Vec<u8> = [0u8, 0x80].into_iter().chain([0x88; 16]).collect();
        assert_eq!(quantize(DType::Q4_0, &[0.0; 32]).unwrap(), zero);
    }
}

//! Row-wise and element-wise ops: RMS norm, SiLU·up, add, argmax, embedding rows.

use rayon::prelude::*;

use super::simd::{Kernels, P};
use super::weights::{CpuWeight, View};

/// Elements per parallel work item of element-wise ops (smaller ops run on one thread).
const ELEMS_PER_TASK: usize = 1 << 15;

/// Rows per work item so that one item touches about `ELEMS_PER_TASK` elements.
fn rows_per_item(cols: usize) -> usize {
    (ELEMS_PER_TASK / cols.max(1)).max(1)
}

/// HF `LlamaRMSNorm` in f32: `weight · (x · rsqrt(mean(x²) + eps))`.
pub fn rms_norm(kern: &Kernels, x: &[f32], w: &[f32], out: &mut [f32], rows: usize, dim: usize, eps: f32) {
    let w = &w[..dim];
    out[..rows * dim]
        .par_chunks_mut(dim)
        .with_min_len(rows_per_item(dim))
        .zip(x[..rows * dim].par_chunks(dim))
        .for_each(|(o, xr)| {
            let var = (kern.sum_sq)(xr) / dim as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((o, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
                *o = wv * (xv * inv);
            }
        });
}

/// `out[r, j] = silu(g[r, j]) · g[r, ffn + j]`, `silu(v) = v / (1 + exp(-v))`.
pub fn silu_mul(gate_up: &[f32], out: &mut [f32], rows: usize, ffn: usize) {
    out[..rows * ffn]
        .par_chunks_mut(ffn)
        .with_min_len(rows_per_item(ffn))
        .zip(gate_up[..rows * 2 * ffn].par_chunks(2 * ffn))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(ffn);
            for ((o, &gv), &uv) in o.iter_mut().zip(g).zip(u) {
                *o = gv / (1.0 + (-gv).exp()) * uv;
            }
        });
}

/// `dst += src` (same length).
pub fn add(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(ELEMS_PER_TASK).zip(src.par_chunks(ELEMS_PER_TASK)).for_each(|(d, s)| {
        for (d, s) in d.iter_mut().zip(s) {
            *d += s;
        }
    });
}

/// Index of the largest element; the first on ties; NaN never wins (0 if all are NaN or empty).
pub fn argmax_row(x: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (j, &v) in x.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((j, v));
        }
    }
    best.map_or(0, |(j, _)| j as u32)
}

/// `out[r] = argmax(x[r, :])` for each row.
pub fn argmax(x: &[f32], out: &mut [u32], rows: usize, cols: usize) {
    if cols == 0 {
        out[..rows].fill(0);
        return;
    }
    out[..rows]
        .par_iter_mut()
        .with_min_len(rows_per_item(cols))
        .zip(x[..rows * cols].par_chunks(cols))
        .for_each(|(o, r)| *o = argmax_row(r));
}

/// `out[i, :] = table[tokens[i], :]` converted (dequantized) to f32 (token ids were checked by the
/// caller).
pub fn embed(kern: &Kernels, table: &CpuWeight, tokens: &[u32], out: &mut [f32]) {
    let dim = table.cols;
    if dim == 0 {
        return;
    }
    out[..tokens.len() * dim]
        .par_chunks_mut(dim)
        .with_min_len(rows_per_item(dim))
        .zip(tokens.par_iter())
        .for_each(|(o, &t)| {
            let Some((part, r)) = table.locate(t as usize) else { return };
            match part.view(table.dtype).range(r * dim, dim) {
                View::F32(s) => o.copy_from_slice(s),
                View::F16(s) => (kern.f16_to_f32)(s, o),
                View::BF16(s) => (kern.bf16_to_f32)(s, o),
                View::Q(dt, s) => {
                    if let Some(qk) = kern.quant(dt) {
                        (qk.dequant)(s, o, P);
                    }
                }
            }
        });
}

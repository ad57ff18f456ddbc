//! Rotary embedding with the KV-cache store, and paged causal attention (GQA, sliding window).

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::Kernels;
use crate::backend::{AttnShape, KvSpec, StepBatch};

/// One layer's keys and values, each `[blocks, block_size, kv_heads, head_dim]`.
pub struct LayerKv<'a> {
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
}

/// Offset of `(position p of sequence s, kv head h)` in a layer array.
fn slot(step: &StepBatch, spec: &KvSpec, s: usize, p: usize, h: usize) -> usize {
    let block = step.block_tables[step.block_table_start[s] as usize + p / spec.block_size] as usize;
    ((block * spec.block_size + p % spec.block_size) * spec.kv_heads + h) * spec.head_dim
}

/// `cos`/`sin` of `pos · inv_freq[i]` computed in f32 as torch does (`angle` rounded to f32 first).
fn cos_sin(pos: u32, inv_freq: &[f32], cs: &mut Vec<(f32, f32)>) {
    cs.clear();
    cs.extend(inv_freq.iter().map(|&f| {
        let a = pos as f32 * f;
        (a.cos(), a.sin())
    }));
}

/// Rotate-half RoPE of every `head_dim` head of `src` into `dst`, with rounding as HF's
/// `x·cos + rotate_half(x)·sin` (each product rounded, then summed; no fused multiply-add).
fn rotate(src: &[f32], dst: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    let half = head_dim / 2;
    for (s, d) in src.chunks_exact(head_dim).zip(dst.chunks_exact_mut(head_dim)) {
        let (s1, s2) = s.split_at(half);
        let (d1, d2) = d.split_at_mut(half);
        for i in 0..half {
            let (c, sn) = cs[i];
            d1[i] = s1[i] * c - s2[i] * sn;
            d2[i] = s2[i] * c + s1[i] * sn;
        }
    }
}

/// For the first `n` step tokens: rotated queries into `q_out`, rotated keys and plain values into
/// the cache layer. `k_tmp` is scratch of `n · kv_width` (rotation runs in parallel, the stores
/// after it in order, so two tokens naming one slot leave the later one, as on a GPU's last write).
#[allow(clippy::too_many_arguments)]
pub fn rope_store_kv(
    step: &StepBatch,
    spec: &KvSpec,
    shape: &AttnShape,
    n: usize,
    qkv: &[f32],
    inv_freq: &[f32],
    q_out: &mut [f32],
    layer: LayerKv,
    k_tmp: &mut [f32],
) {
    let (qw, kw, hd) = (shape.q_width(), shape.kv_width(), shape.head_dim);
    let width = shape.qkv_width();
    let inv_freq = &inv_freq[..hd / 2];
    q_out[..n * qw].par_chunks_mut(qw).zip(k_tmp[..n * kw].par_chunks_mut(kw)).enumerate().for_each_init(
        Vec::new,
        |cs, (i, (q, k))| {
            cos_sin(step.positions[i], inv_freq, cs);
            let row = &qkv[i * width..][..width];
            rotate(&row[..qw], q, hd, cs);
            rotate(&row[qw..qw + kw], k, hd, cs);
        },
    );
    for i in 0..n {
        let (s, p) = (step.token_seq[i] as usize, step.positions[i] as usize);
        let v = &qkv[i * width + qw + kw..][..kw];
        for h in 0..spec.kv_heads {
            let o = slot(step, spec, s, p, h);
            layer.k[o..o + hd].copy_from_slice(&k_tmp[i * kw + h * hd..][..hd]);
            layer.v[o..o + hd].copy_from_slice(&v[h * hd..][..hd]);
        }
    }
}

thread_local! {
    /// Per-thread attention scores of one query and the cache offsets of its positions.
    static SCRATCH: RefCell<(Vec<f32>, Vec<usize>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Causal attention of the first `n` step tokens over their cached sequences into `out`; parallel
/// over (token, head). Scores are `(q·k)·scale`, softmax is max-subtracted in f32, then
/// `out = Σ p_j · v_j` with `p_j = e_j / Σe` (as torch's softmax followed by `probs @ V`).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    kern: &Kernels,
    step: &StepBatch,
    spec: &KvSpec,
    shape: &AttnShape,
    n: usize,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    out: &mut [f32],
) {
    let hd = shape.head_dim;
    let group = shape.heads / shape.kv_heads;
    out[..n * shape.q_width()].par_chunks_mut(hd).enumerate().for_each(|(idx, o)| {
        let (i, h) = (idx / shape.heads, idx % shape.heads);
        let kvh = h / group;
        let (s, p) = (step.token_seq[i] as usize, step.positions[i] as usize);
        let lo = match shape.window {
            Some(w) => (p + 1).saturating_sub(w as usize),
            None => 0,
        };
        let qv = &q[idx * hd..][..hd];
        o.fill(0.0);
        SCRATCH.with_borrow_mut(|(sc, offs)| {
            // Offsets of positions lo..=p, walking the sequence's block table block by block.
            offs.clear();
            let table = &step.block_tables[step.block_table_start[s] as usize..];
            let (bs, row) = (spec.block_size, spec.kv_heads * hd);
            let mut j = lo;
            while j <= p {
                let end = (p + 1).min((j / bs + 1) * bs);
                let base = (table[j / bs] as usize * bs + j % bs) * row + kvh * hd;
                offs.extend((0..end - j).map(|d| base + d * row));
                j = end;
            }
            sc.clear();
            let mut max = f32::NEG_INFINITY;
            for &off in offs.iter() {
                let v = (kern.dot)(qv, &k_cache[off..off + hd]) * shape.scale;
                max = max.max(v);
                sc.push(v);
            }
            let mut sum = 0f32;
            for v in sc.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for (&off, e) in offs.iter().zip(sc.iter()) {
                (kern.axpy)(e / sum, &v_cache[off..off + hd], o);
            }
        });
    });
}

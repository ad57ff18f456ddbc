//! Matmul driver: splits `out[m, n] (+)= x[m, k]·Wᵀ + bias` into blocks of weight rows × tokens run
//! on the thread pool, with a gemv for decode-sized `m` and a cache-blocked GEMM otherwise.
//!
//! Every task writes its own `[tokens, NB]` tile of a scratch buffer (so tasks never share output
//! memory); one final pass adds the bias and writes or accumulates the tiles into `out`.
//!
//! GEMM blocking: the activations are packed once per matmul, k-step-interleaved in groups of `MR`
//! tokens (`[group][k/P][MR][P]`, shared read-only by all tasks). A task (`NB` weight rows × up to
//! `MB` tokens), for each `KC`-deep slice of k, widens its weight rows to f32 and packs them likewise
//! in groups of `NR` (`NB × KC` floats, L2), then runs one `MR×NR` register tile per (token group,
//! weight group) pair: a token group's panel (`MR × KC`) stays in L1 while the weight groups stream
//! from L2 (fewer bytes per FMA than the other way round: `NR < MR`).
//!
//! Quantized weights stay in their blocks: the gemv kernels dequantize in registers (all of a task's
//! tokens per pass over the weights, with the per-32 activation sums computed once per matmul), and
//! the GEMM dequantizes each task's `NB × KC` weight slice into its packed f32 panel (L2-sized,
//! reused by all `MB` tokens of the task) and runs the same f32 register tile.

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::{Kernels, NR, P};
use super::weights::{CpuWeight, View};
use crate::backend::quant::{QK, block_sums};
use crate::backend::{BackendError, MatmulMode, Result};

/// Up to this many token rows, matmul runs a gemv per token over small groups of weight rows, so the
/// weights come from memory once and from L1/L2 for the other tokens; more rows take the GEMM
/// (whose weight packing only pays off from about this many tokens on).
pub const GEMV_MAX_ROWS: usize = 8;
/// Weight rows a gemv task handles for all its tokens before moving on (stay in L1/L2).
const GEMV_GROUP: usize = 8;
/// Weight rows per GEMM task (a multiple of 4).
const NB: usize = 64;
/// Most tokens per GEMM task: each widened weight panel is reused by this many tokens, and the
/// task's activation panel (`MB × KC` floats) shares L2 with it. A multiple of 12 (every kernel's
/// `MR`: 6, 3, 4).
const MB: usize = 120;
/// Depth of one k-slice of the GEMM.
const KC: usize = 1024;

/// A range of weight rows inside one part, writing output columns `j0..j0 + rows`.
#[derive(Clone, Copy)]
struct Block {
    part: usize,
    r0: usize,
    rows: usize,
    j0: usize,
}

/// Weight rows per task: `max` unless that leaves fewer than ~4 tasks per thread, never below 16.
fn rows_per_task(n: usize, threads: usize, token_blocks: usize, max: usize) -> usize {
    let want_tasks = 4 * threads;
    let per = n.div_ceil((want_tasks / token_blocks.max(1)).max(1));
    per.next_multiple_of(4).clamp(16, max)
}

/// Scratch of the matmuls, grown to the largest call: per-task output tiles, activation sums (gemv)
/// and packed activations (GEMM).
#[derive(Default)]
pub struct Scratch {
    tiles: Vec<f32>,
    sums: Vec<f32>,
    apack: Vec<f32>,
}

/// Grows `v` to `need` elements, or OutOfMemory naming `what`.
fn grow(v: &mut Vec<f32>, need: usize, what: impl FnOnce() -> String) -> Result<()> {
    if v.len() < need {
        v.try_reserve_exact(need - v.len()).map_err(|_| BackendError::OutOfMemory {
            backend: "cpu".into(),
            bytes: (need * 4) as u64,
            what: what(),
        })?;
        v.resize(need, 0.0);
    }
    Ok(())
}

/// `out[m, w.rows] (+)= x[m, w.cols]·Wᵀ + bias`. Lengths were checked by the caller.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    kern: &Kernels,
    threads: usize,
    w: &CpuWeight,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    mode: MatmulMode,
    scratch: &mut Scratch,
) -> Result<()> {
    let (n, k) = (w.rows, w.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let gemv = m <= GEMV_MAX_ROWS && k > 0;
    let nb = if gemv { rows_per_task(n, threads * 4, 1, 64) } else { rows_per_task(n, threads, 1, NB) };
    let mut blocks = Vec::new();
    for (pi, p) in w.parts.iter().enumerate() {
        for r0 in (0..p.rows).step_by(nb) {
            blocks.push(Block { part: pi, r0, rows: nb.min(p.rows - r0), j0: p.row0 + r0 });
        }
    }
    // Token blocks: one for a gemv; for the GEMM at most MB tokens each, and more (smaller) blocks
    // when there are too few weight blocks to keep every thread busy.
    let mb = if gemv {
        m
    } else {
        let n_tb = m.div_ceil(MB).max((4 * threads).div_ceil(blocks.len())).min(m.div_ceil(12));
        m.div_ceil(n_tb).next_multiple_of(12).min(m.next_multiple_of(kern.mr))
    };
    let n_tb = m.div_ceil(mb);
    let tile = mb * nb;
    let need = blocks.len() * n_tb * tile;
    let Scratch { tiles, sums, apack } = scratch;
    grow(tiles, need, || format!("matmul scratch for {}", w.name))?;
    let x = &x[..m * k];
    let quant = kern.quant(w.dtype);
    let kb = k / QK;
    if gemv && quant.is_some() {
        grow(sums, m * kb, || format!("activation sums for {}", w.name))?;
        block_sums(x, &mut sums[..m * kb]);
    }
    let (mr, ks_all) = (kern.mr, k.div_ceil(P));
    let group = mr * ks_all * P;
    let ga = m.div_ceil(mr);
    if !gemv {
        grow(apack, ga * group, || format!("packed activations for {}", w.name))?;
        apack[..ga * group].par_chunks_mut(group).enumerate().for_each(|(gi, g)| {
            for p in 0..mr {
                let t = gi * mr + p;
                pack_row(g, mr, ks_all, p, if t < m { &x[t * k..][..k] } else { &[] });
            }
        });
    }
    let (sums, apack) = (&sums[..], &apack[..]);
    tiles[..need].par_chunks_mut(tile).enumerate().for_each(|(idx, t)| {
        let (b, tb) = (blocks[idx / n_tb], idx % n_tb);
        let t0 = tb * mb;
        let tm = mb.min(m - t0);
        let view = w.parts[b.part].view(w.dtype).range(b.r0 * k, b.rows * k);
        if let (true, View::Q(_, wq), Some(qk)) = (gemv, view, quant) {
            (qk.gemv)(&x[t0 * k..][..tm * k], k, &sums[t0 * kb..], wq, t, nb);
        } else if gemv {
            for g0 in (0..b.rows).step_by(GEMV_GROUP) {
                let gr = GEMV_GROUP.min(b.rows - g0);
                let wg = view.range(g0 * k, gr * k);
                for i in 0..tm {
                    let xr = &x[(t0 + i) * k..][..k];
                    let o = &mut t[i * nb + g0..][..gr];
                    match wg {
                        View::F32(wr) => (kern.gemv_f32)(xr, wr, o),
                        View::F16(wr) => (kern.gemv_f16)(xr, wr, o),
                        View::BF16(wr) => (kern.gemv_bf16)(xr, wr, o),
                        View::Q(..) => {} // took the quantized gemv above
                    }
                }
            }
        } else {
            let ap = &apack[t0 / mr * group..][..tm.div_ceil(mr) * group];
            gemm_task(kern, view, ap, tm, b.rows, k, t, nb);
        }
    });
    // Combine: out[t, j0..] = (or +=) tile + bias, one token row per item.
    let bias = w.bias.as_deref();
    out[..m * n].par_chunks_mut(n).enumerate().for_each(|(t, row)| {
        let (tb, i) = (t / mb, t % mb);
        for (bi, b) in blocks.iter().enumerate() {
            let src = &tiles[((bi * n_tb + tb) * mb + i) * nb..][..b.rows];
            let dst = &mut row[b.j0..][..b.rows];
            match (mode, bias) {
                (MatmulMode::Overwrite, None) => dst.copy_from_slice(src),
                (MatmulMode::Overwrite, Some(bs)) => {
                    for ((d, s), c) in dst.iter_mut().zip(src).zip(&bs[b.j0..]) {
                        *d = s + c;
                    }
                }
                (MatmulMode::Accumulate, None) => {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                }
                (MatmulMode::Accumulate, Some(bs)) => {
                    for ((d, s), c) in dst.iter_mut().zip(src).zip(&bs[b.j0..]) {
                        *d += s + c;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Per-thread packed weight panel of one GEMM task and one k-slice, and a row of widened weights.
#[derive(Default)]
struct Panels {
    b: Vec<f32>,
    row: Vec<f32>,
}

thread_local! {
    static PANELS: RefCell<Panels> = RefCell::new(Panels::default());
}

/// Grows `v` to at least `n` elements.
fn at_least(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// Writes `src` (one row of a k-slice, `≤ ks·P` values, zero-padded) as row `r` of a panel packed
/// in groups of `g` rows: `[group][ks][g][P]`. An empty `src` writes a row of zeros.
fn pack_row(dst: &mut [f32], g: usize, ks: usize, r: usize, src: &[f32]) {
    let base = (r / g) * ks * g * P + (r % g) * P;
    let (whole, tail) = src.as_chunks::<P>();
    for s in 0..ks {
        let Some(d) = dst[base + s * g * P..].first_chunk_mut::<P>() else { return };
        match whole.get(s) {
            Some(c) => *d = *c,
            None if s == whole.len() => {
                d[..tail.len()].copy_from_slice(tail);
                d[tail.len()..].fill(0.0);
            }
            None => *d = [0.0; P],
        }
    }
}

/// One GEMM task: `c[tm, rows] = x[tm, k]·wᵀ` with `w` the task's `rows × k` weight rows and `a`
/// the task's tokens packed in groups of `mr` (`[group][k/P][mr][P]`); `c` has row stride `ldc`.
/// Per `KC`-slice of k, the weight rows are widened to f32 and packed in groups of `NR`, and every
/// (weight group, token group) pair runs one register tile whose sums are added into `c`.
#[allow(clippy::too_many_arguments)]
fn gemm_task(
    kern: &Kernels,
    w: View,
    a: &[f32],
    tm: usize,
    rows: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
) {
    c.fill(0.0);
    let (mr, ks_all) = (kern.mr, k.div_ceil(P));
    let (ga, gb) = (tm.div_ceil(mr), rows.div_ceil(NR));
    let mut sums = [0f32; 8 * NR];
    let sums = &mut sums[..mr * NR];
    PANELS.with_borrow_mut(|Panels { b, row }| {
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let ks = kc.div_ceil(P);
            at_least(b, gb * NR * ks * P);
            at_least(row, kc);
            for r in 0..gb * NR {
                let src: &[f32] = match w {
                    _ if r >= rows => &[],
                    View::Q(dt, wq) => {
                        // Straight into the panel: row r's k-steps lie NR·P floats apart.
                        let (be, bb) = (dt.block_elems(), dt.block_bytes());
                        let bytes = &wq[(r * k + k0) / be * bb..][..kc / be * bb];
                        if let Some(qk) = kern.quant(dt) {
                            (qk.dequant)(bytes, &mut b[(r / NR) * ks * NR * P + (r % NR) * P..], NR * P);
                        }
                        continue;
                    }
                    View::F32(wr) => &wr[r * k + k0..][..kc],
                    View::F16(wr) => {
                        (kern.f16_to_f32)(&wr[r * k + k0..][..kc], &mut row[..kc]);
                        &row[..kc]
                    }
                    View::BF16(wr) => {
                        (kern.bf16_to_f32)(&wr[r * k + k0..][..kc], &mut row[..kc]);
                        &row[..kc]
                    }
                };
                pack_row(b, NR, ks, r, src);
            }
            for gi in 0..ga {
                let ap = &a[(gi * ks_all + k0 / P) * mr * P..][..ks * mr * P];
                for gj in 0..gb {
                    let bp = &b[gj * ks * NR * P..][..ks * NR * P];
                    let nn = NR.min(rows - gj * NR);
                    (kern.tile)(ap, bp, ks, sums);
                    for p in 0..mr.min(tm - gi * mr) {
                        let crow = &mut c[(gi * mr + p) * ldc + gj * NR..][..nn];
                        for (cv, sv) in crow.iter_mut().zip(&sums[p * NR..]) {
                            *cv += sv;
                        }
                    }
                }
            }
        }
    });
}

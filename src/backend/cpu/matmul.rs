//! Matmul driver: splits `out[m, n] (+)= x[m, k]·Wᵀ + bias` into blocks of weight rows × tokens run
//! on the thread pool, with a gemv for decode-sized `m` and a cache-blocked GEMM otherwise.
//!
//! Every task writes its own `[tokens, NB]` tile of a scratch buffer (so tasks never share output
//! memory); one final pass adds the bias and writes or accumulates the tiles into `out`.
//!
//! GEMM blocking (per task: `NB` weight rows × `MB` tokens): for each `KC`-wide slice of k, 16-bit
//! weights are widened into a thread-local f32 panel (`NB × KC`, fits L2), then the instruction-set
//! kernel runs `MR×NR` register tiles over it while the `MB × KC` activation block stays in L2.

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::{GemmArgs, Kernels};
use super::weights::{CpuWeight, View};
use crate::backend::{BackendError, MatmulMode, Result};

/// Below this many token rows the weights are streamed once per token (gemv, memory bound).
pub const GEMV_MAX_ROWS: usize = 3;
/// Weight rows per GEMM task (a multiple of 4).
const NB: usize = 64;
/// Tokens per GEMM task (a multiple of every kernel's `MR`: 6, 3, 4).
const MB: usize = 48;
/// Depth of one k-slice of the GEMM.
const KC: usize = 512;

thread_local! {
    /// Per-thread f32 panel that 16-bit weights are widened into.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

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

/// `out[m, w.rows] (+)= x[m, w.cols]·Wᵀ + bias`. Lengths were checked by the caller; `tiles` is
/// scratch that grows to the largest call.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    kern: &Kernels,
    threads: usize,
    w: &CpuWeight,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    mode: MatmulMode,
    tiles: &mut Vec<f32>,
) -> Result<()> {
    let (n, k) = (w.rows, w.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let gemv = m <= GEMV_MAX_ROWS;
    let mb = if gemv { m } else { m.min(MB) };
    let n_tb = m.div_ceil(mb);
    let nb = if gemv { rows_per_task(n, threads * 4, 1, 64) } else { rows_per_task(n, threads, n_tb, NB) };
    let mut blocks = Vec::new();
    for (pi, p) in w.parts.iter().enumerate() {
        for r0 in (0..p.rows).step_by(nb) {
            blocks.push(Block { part: pi, r0, rows: nb.min(p.rows - r0), j0: p.row0 + r0 });
        }
    }
    let tile = mb * nb;
    let need = blocks.len() * n_tb * tile;
    if tiles.len() < need {
        tiles.try_reserve_exact(need - tiles.len()).map_err(|_| BackendError::OutOfMemory {
            backend: "cpu".into(),
            bytes: (need * 4) as u64,
            what: format!("matmul scratch for {}", w.name),
        })?;
        tiles.resize(need, 0.0);
    }
    let x = &x[..m * k];
    tiles[..need].par_chunks_mut(tile).enumerate().for_each(|(idx, t)| {
        let (b, tb) = (blocks[idx / n_tb], idx % n_tb);
        let t0 = tb * mb;
        let tm = mb.min(m - t0);
        let view = w.parts[b.part].view(w.dtype).range(b.r0 * k, b.rows * k);
        if gemv {
            for i in 0..tm {
                let xr = &x[(t0 + i) * k..][..k];
                let o = &mut t[i * nb..][..b.rows];
                match view {
                    View::F32(wr) => (kern.gemv_f32)(xr, wr, o),
                    View::F16(wr) => (kern.gemv_f16)(xr, wr, o),
                    View::BF16(wr) => (kern.gemv_bf16)(xr, wr, o),
                }
            }
        } else {
            gemm_task(kern, view, &x[t0 * k..], tm, b.rows, k, t, nb);
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

/// One GEMM task: `c[tm, rows] = x[tm, k]·wᵀ` with `w` the task's `rows × k` weight rows.
#[allow(clippy::too_many_arguments)]
fn gemm_task(
    kern: &Kernels,
    w: View,
    x: &[f32],
    tm: usize,
    rows: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
) {
    c.fill(0.0);
    PANEL.with_borrow_mut(|panel| {
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let (b, ldb): (&[f32], usize) = match w {
                View::F32(wr) => (&wr[k0..], k),
                View::F16(wr) | View::BF16(wr) => {
                    let cvt = if matches!(w, View::F16(_)) { kern.f16_to_f32 } else { kern.bf16_to_f32 };
                    if panel.len() < rows * kc {
                        panel.resize(rows * kc, 0.0);
                    }
                    for r in 0..rows {
                        cvt(&wr[r * k + k0..][..kc], &mut panel[r * kc..][..kc]);
                    }
                    (&panel[..], kc)
                }
            };
            let g = GemmArgs { a: &x[k0..], lda: k, b, ldb, m: tm, n: rows, kc, ldc };
            (kern.gemm)(&g, c);
        }
    });
}

//! Matrix products on the wgpu backend: the one-token gemv (decode; input row built once per
//! workgroup), gemvs (up to 8 tokens per dispatch, the input op folded in) for batched decode, the cooperative-matrix kernel where the adapter has one, the tiled
//! f32 GEMM beyond.

use super::kernels::{self, GEMM_TILE, GEMV_BATCH_TOKENS, GEMV_MAX_TOKENS, GemvInput, Kernel};
use super::{Input, WgpuBackend, u32_of};
use crate::backend::check::{ActBuffers, distinct, invalid, mul};
use crate::backend::tuning::knob;
use crate::backend::{BufId, DType, MatmulMode, Result, WeightId};

/// Which kernel a matrix product runs as.
enum Path {
    /// Gemvs of up to [`GEMV_MAX_TOKENS`] tokens (the input op may be folded in).
    Gemv,
    /// The cooperative-matrix kernel.
    Coop,
    /// The tiled f32 GEMM.
    Tiled,
}

/// K slices per `gemm_coop` workgroup: whole rows (1) when there are enough workgroups to fill a large
/// GPU, else 2 or 4 slices, which make 2 or 4 times as many workgroups of fewer rows.
fn coop_ksplit(rows: usize, token_tiles: usize) -> u32 {
    static FORCED: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let forced = FORCED.get_or_init(|| knob("PRISM_COOP_KSPLIT", |k| kernels::COOP_KSPLITS.contains(k)));
    if let Some(k) = *forced {
        return k;
    }
    const BUSY: usize = 256;
    [1, 2].into_iter().find(|&k| rows.div_ceil(64 / k as usize) * token_tiles >= BUSY).unwrap_or(4)
}

impl WgpuBackend {
    /// The input-row width of the `gemv_t1` variant for one-token products with `dtype` weights of
    /// `units` units of 32, where it runs: enabled, a format it reads, a row that fits a variant and
    /// the device's workgroup memory.
    fn t1_cap(&self, dtype: DType, units: usize) -> Option<u32> {
        if !kernels::t1_shape().enabled || !kernels::t1_supports(dtype) {
            return None;
        }
        let cap = kernels::T1_CAPS.into_iter().find(|&c| units * 32 <= c as usize)?;
        let bytes = kernels::t1_workgroup_bytes(dtype, cap, self.gpu.subgroups);
        (bytes <= self.gpu.limits.max_compute_workgroup_storage_size as u64).then_some(cap)
    }

    /// `out (+)= input(x) · Wᵀ + bias`: the cooperative-matrix kernel from
    /// [`kernels::coop_min_tokens`] rows where the adapter has it, else gemvs (with the input folded
    /// in) for up to [`GEMV_BATCH_TOKENS`] rows, else the tiled GEMM. Fused input ops come with one
    /// row only (see [`kernels::FUSED_INPUT_MAX_TOKENS`]).
    pub(super) fn matmul_input(
        &mut self,
        w: WeightId,
        x: BufId,
        out: BufId,
        rows: usize,
        mode: MatmulMode,
        input: Input,
    ) -> Result<()> {
        let op = "matmul";
        distinct(op, x, out)?;
        let wt = self.weight(op, w)?;
        let (wrows, cols, units, dtype, bias) = (wt.rows, wt.cols, wt.units, wt.dtype, wt.bias);
        // A SwiGLU input row holds gate | up.
        let x_cols = if matches!(input, Input::SiluMul) { mul(op, cols, 2)? } else { cols };
        let (xl, ol) = (mul(op, rows, x_cols)?, mul(op, rows, wrows)?);
        let xb = self.f32s(op, "x", x, xl)?;
        let ob = self.f32s(op, "out", out, ol)?;
        if rows == 0 || wrows == 0 {
            return Ok(());
        }
        u32_of(op, ol.max(xl))?;
        let x_vec4 = cols.is_multiple_of(4);
        let accumulate = (mode == MatmulMode::Accumulate) as u32;
        let chunks: Vec<(usize, usize, u32, u32)> =
            wt.chunks.iter().map(|c| (c.row0, c.rows, c.q, c.s)).collect();
        let bias_buf = bias.unwrap_or(self.dummy);
        // f32 weights keep f32 arithmetic (the cooperative kernel rounds its operands to f16).
        let path = if self.gpu.coop16 && dtype != DType::F32 && rows >= kernels::coop_min_tokens() {
            Path::Coop
        } else if rows <= GEMV_BATCH_TOKENS {
            Path::Gemv
        } else {
            Path::Tiled
        };
        // Rows per gemv workgroup: GEMV_TEAM_ROWS per team when teams are as small as the device
        // allows (larger teams take several rounds).
        let team = if self.gpu.subgroups { self.gpu.subgroup_min } else { kernels::GEMV_TEAM };
        let (wg, team_rows) = kernels::gemv_shape();
        let rows_per_wg = (wg / team.clamp(4, wg) * team_rows) as usize;
        for (row0, crow, q, s) in chunks {
            let mut bufs = vec![q, s, bias_buf, xb, ob];
            let common = [crow, cols, units, row0, wrows].map(|v| v as u32);
            let p = [&common[..], &[accumulate, bias.is_some() as u32]].concat();
            if matches!(path, Path::Gemv) {
                let (kind, eps) = match input {
                    Input::Plain => (GemvInput::Plain, 0.0f32),
                    Input::Norm(nb, eps) => {
                        bufs.push(nb);
                        (GemvInput::Norm, eps)
                    }
                    Input::SiluMul => (GemvInput::SiluMul, 0.0),
                };
                if let Some(cap) = self.t1_cap(dtype, units).filter(|_| rows == 1) {
                    // About one wave of workgroups, each team taking rows by grid stride.
                    let shape = kernels::t1_shape();
                    let teams = (shape.wg / team.clamp(4, shape.wg)) as usize;
                    let groups = crow.div_ceil(teams).clamp(1, shape.groups as usize) as u32;
                    let k = Kernel::GemvT1 { dtype, x_vec4, input: kind, cap };
                    let p = [&p[..], &[eps.to_bits(), groups]].concat();
                    self.dispatch_grid(k, &bufs, &p, (groups, 1))?;
                    continue;
                }
                // Groups of up to GEMV_MAX_TOKENS tokens, each reading the weights once.
                for t0 in (0..rows).step_by(GEMV_MAX_TOKENS) {
                    let tokens = (rows - t0).min(GEMV_MAX_TOKENS) as u32;
                    let k = Kernel::Gemv { dtype, tokens, x_vec4, input: kind };
                    let p = [&p[..], &[eps.to_bits(), rows_per_wg as u32, t0 as u32]].concat();
                    self.dispatch(k, &bufs, &p, crow.div_ceil(rows_per_wg) as u64, true)?;
                }
                continue;
            }
            if !matches!(input, Input::Plain) {
                return Err(invalid(op, format!("a fused input op over {rows} rows (gemvs only)")));
            }
            let (kernel, grid, p) = match path {
                Path::Coop => {
                    let tiles = rows.div_ceil(kernels::COOP_TOKENS);
                    let ksplit = coop_ksplit(crow, tiles);
                    let grid = (crow.div_ceil(64 / ksplit as usize), tiles);
                    (Kernel::GemmCoop { dtype, x_vec4, ksplit }, grid, [&p[..], &[rows as u32]].concat())
                }
                _ => {
                    let tile = GEMM_TILE as usize;
                    let grid = (crow.div_ceil(tile), rows.div_ceil(tile));
                    (Kernel::Gemm { dtype, x_vec4 }, grid, [&p[..], &[rows as u32]].concat())
                }
            };
            let max = self.gpu.limits.max_compute_workgroups_per_dimension as usize;
            if grid.0 > max || grid.1 > max {
                return Err(invalid(op, format!("{rows} tokens × {crow} rows exceed the device's grid")));
            }
            self.dispatch_grid(kernel, &bufs, &p, (grid.0 as u32, grid.1 as u32))?;
        }
        Ok(())
    }
}

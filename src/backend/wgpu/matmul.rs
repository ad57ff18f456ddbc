//! Matrix products on the wgpu backend: gemvs (up to 8 tokens per dispatch, the input op folded in)
//! for decode and batched decode, the tiled GEMM beyond.

use super::kernels::{self, GEMM_TILE, GEMV_BATCH_TOKENS, GEMV_MAX_TOKENS, GemvInput, Kernel};
use super::{Input, WgpuBackend, u32_of};
use crate::backend::check::{ActBuffers, distinct, invalid, mul};
use crate::backend::{BufId, MatmulMode, Result, WeightId};

impl WgpuBackend {
    /// `out (+)= input(x) · Wᵀ + bias`: gemvs (with the input folded in) for up to
    /// [`GEMV_BATCH_TOKENS`] rows, else the tiled GEMM (plain inputs only: the fused ops run their
    /// input op first for many rows).
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
        // Rows per gemv workgroup: GEMV_TEAM_ROWS per team when teams are as small as the device
        // allows (larger teams take several rounds).
        let team = if self.gpu.subgroups { self.gpu.subgroup_min } else { kernels::GEMV_TEAM };
        let (wg, team_rows) = kernels::gemv_shape();
        let rows_per_wg = (wg / team.clamp(4, wg) * team_rows) as usize;
        for (row0, crow, q, s) in chunks {
            let mut bufs = vec![q, s, bias_buf, xb, ob];
            let common = [crow, cols, units, row0, wrows].map(|v| v as u32);
            let p = [&common[..], &[accumulate, bias.is_some() as u32]].concat();
            if rows <= GEMV_BATCH_TOKENS {
                let (kind, eps) = match input {
                    Input::Plain => (GemvInput::Plain, 0.0f32),
                    Input::Norm(nb, eps) => {
                        bufs.push(nb);
                        (GemvInput::Norm, eps)
                    }
                    Input::SiluMul => (GemvInput::SiluMul, 0.0),
                };
                // Groups of up to GEMV_MAX_TOKENS tokens, each reading the weights once.
                for t0 in (0..rows).step_by(GEMV_MAX_TOKENS) {
                    let tokens = (rows - t0).min(GEMV_MAX_TOKENS) as u32;
                    let k = Kernel::Gemv { dtype, tokens, x_vec4, input: kind };
                    let p = [&p[..], &[eps.to_bits(), rows_per_wg as u32, t0 as u32]].concat();
                    self.dispatch(k, &bufs, &p, crow.div_ceil(rows_per_wg) as u64, true)?;
                }
            } else {
                let grid = (crow.div_ceil(GEMM_TILE as usize), rows.div_ceil(GEMM_TILE as usize));
                let max = self.gpu.limits.max_compute_workgroups_per_dimension as usize;
                if grid.0 > max || grid.1 > max {
                    return Err(invalid(op, format!("{rows} tokens × {crow} rows exceed the device's grid")));
                }
                let p = [&p[..], &[rows as u32]].concat();
                self.dispatch_grid(
                    Kernel::Gemm { dtype, x_vec4 },
                    &bufs,
                    &p,
                    (grid.0 as u32, grid.1 as u32),
                )?;
            }
        }
        Ok(())
    }
}

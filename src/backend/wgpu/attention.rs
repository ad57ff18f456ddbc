//! Decode attention with RoPE and the KV store folded in: one dispatch per layer instead of
//! `rope_store_kv` then `attention` (see `shaders/lib/attn_rope.wgsl`).

use super::kernels::Kernel;
use super::{WgpuBackend, u32_of};
use crate::backend::check::{self, mul};
use crate::backend::tuning::knob;
use crate::backend::{AttnShape, BufId, KvId, Result};

/// The attention kernel for `head_dim`: vec4 loads where it is a multiple of 4; `rope`: the variant
/// that rotates and stores the step's own keys itself.
pub(super) fn attention_kernel(head_dim: usize, rope: bool) -> Kernel {
    match head_dim % 4 {
        0 => Kernel::AttentionV4 { rope },
        _ => Kernel::Attention { rope },
    }
}

/// The attention kernels' parameters: heads, kv heads, head_dim, block size, window (0: none), scale.
pub(super) fn attention_params(op: &'static str, shape: &AttnShape, block_size: usize) -> Result<[u32; 6]> {
    Ok([
        u32_of(op, shape.heads)?,
        u32_of(op, shape.kv_heads)?,
        u32_of(op, shape.head_dim)?,
        u32_of(op, block_size)?,
        shape.window.unwrap_or(0),
        shape.scale.to_bits(),
    ])
}

/// Whether decode steps fold RoPE and the KV store into attention (`PRISM_WGPU_FUSED_ATTN=0` keeps
/// the two dispatches, for A/B runs).
fn fused_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| knob::<u32>("PRISM_WGPU_FUSED_ATTN", |&v| v <= 1) != Some(0))
}

impl WgpuBackend {
    /// [`crate::backend::Backend::fused_rope_attention`]: records the fused kernel for a decode step
    /// and says `true`; `false` (nothing recorded) for other steps or with the knob off.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_rope_attention(
        &mut self,
        qkv: BufId,
        inv_freq: BufId,
        kv: KvId,
        layer: usize,
        out: BufId,
        shape: AttnShape,
        n: usize,
    ) -> Result<bool> {
        if !fused_enabled() || n == 0 || !self.step.one_token_per_seq() {
            return Ok(false);
        }
        let op = "rope_attention";
        let (spec, k, v) = self.kv_for(op, kv, layer, &shape, n)?;
        let [xb, fb, ob] = check::rope_attention_args(self, qkv, inv_freq, out, &shape, n)?;
        let p = attention_params(op, &shape, spec.block_size)?;
        let groups = mul(op, n, shape.heads)? as u64;
        let kernel = attention_kernel(shape.head_dim, true);
        self.dispatch(kernel, &[xb, k, v, self.step_buf, ob, fb], &p, groups, true)?;
        Ok(true)
    }
}

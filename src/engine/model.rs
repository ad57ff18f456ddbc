//! The forward pass of a Llama-family decoder, written once against the [`Backend`] trait.

use thiserror::Error;

use super::config::ModelConfig;
use super::loader::{LoadError, WeightSource};
use crate::backend::{
    AttnShape, Backend, BackendError, BufId, KvId, KvSpec, MatmulMode, StepBatch, WeightId,
};

/// Errors of building or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The weights could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The backend refused an upload or an op.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A step does not fit what the model was sized for.
    #[error("step of {tokens} tokens / {outputs} outputs exceeds the model's {max_tokens} / {max_outputs}")]
    StepTooLarge { tokens: usize, outputs: usize, max_tokens: usize, max_outputs: usize },
}

/// How much room to allocate: the largest step, and the KV-cache pool.
#[derive(Clone, Copy, Debug)]
pub struct ModelSizing {
    /// Most token rows in one forward step (prefill chunk).
    pub max_step_tokens: usize,
    /// Most rows whose logits one step computes (sequences per step).
    pub max_outputs: usize,
    /// KV-cache blocks in the pool.
    pub kv_blocks: usize,
    /// Positions per KV block.
    pub block_size: usize,
}

/// Weights of one transformer block.
struct Layer {
    attn_norm: BufId, // [hidden]
    wqkv: WeightId,   // [(heads + 2·kv_heads)·head_dim, hidden], rows wq|wk|wv
    wo: WeightId,     // [hidden, heads·head_dim]
    ffn_norm: BufId,  // [hidden]
    w13: WeightId,    // [2·ffn, hidden], rows gate|up
    w2: WeightId,     // [hidden, ffn]
}

/// A loaded model: weight handles, the KV cache and the activation buffers, all on one backend.
pub struct Model {
    /// The configuration it was built from.
    pub cfg: ModelConfig,
    /// Sizes it was allocated for.
    pub sizing: ModelSizing,
    attn: AttnShape,
    embed: WeightId,    // [vocab, hidden]
    lm_head: WeightId,  // [vocab, hidden] (the embedding itself when tied)
    final_norm: BufId,  // [hidden]
    inv_freq: BufId,    // [head_dim / 2]
    layers: Vec<Layer>, // [layers]
    kv: KvId,
    // Activations, sized for `max_step_tokens` rows (T) or `max_outputs` rows (O).
    x: BufId,        // [T, hidden] residual stream
    xn: BufId,       // [T, hidden] normed residual
    qkv: BufId,      // [T, (heads + 2·kv_heads)·head_dim]
    q: BufId,        // [T, heads·head_dim] rotated queries
    attn_out: BufId, // [T, heads·head_dim]
    gate_up: BufId,  // [T, 2·ffn]
    ffn_h: BufId,    // [T, ffn]
    out_x: BufId,    // [O, hidden] residual rows that reach the head
    out_xn: BufId,   // [O, hidden]
    logits: BufId,   // [O, vocab]
    top_ids: BufId,  // [O] u32 argmax of the logits
}

impl Model {
    /// Uploads the weights named as in HF Llama checkpoints, fusing `wq|wk|wv` and `gate|up`, and
    /// allocates the KV cache and activations for `sizing`.
    pub fn load(
        backend: &mut dyn Backend,
        cfg: &ModelConfig,
        src: &WeightSource,
        sizing: ModelSizing,
    ) -> Result<Model, ModelError> {
        let c = cfg;
        let (h, hd) = (c.hidden, c.head_dim);
        let (q_rows, kv_rows) = (c.heads * hd, c.kv_heads * hd);
        let norm = |b: &mut dyn Backend, name: &str| -> Result<BufId, ModelError> {
            Ok(b.upload(&src.get_shaped(name, &[h])?.to_f32_vec())?)
        };
        let embed_t = src.get_shaped("model.embed_tokens.weight", &[c.vocab, h])?;
        let embed = backend.upload_weight(std::slice::from_ref(embed_t), None)?;
        let lm_head = if c.tied_embeddings {
            embed
        } else {
            let t = src.get_shaped("lm_head.weight", &[c.vocab, h])?;
            backend.upload_weight(std::slice::from_ref(t), None)?
        };
        let final_norm = norm(backend, "model.norm.weight")?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let p = format!("model.layers.{i}.");
            let t = |n: &str, shape: &[usize]| src.get_shaped(&format!("{p}{n}"), shape).cloned();
            let qkv_parts = [
                t("self_attn.q_proj.weight", &[q_rows, h])?,
                t("self_attn.k_proj.weight", &[kv_rows, h])?,
                t("self_attn.v_proj.weight", &[kv_rows, h])?,
            ];
            let qkv_bias = if c.qkv_bias {
                let mut b = t("self_attn.q_proj.bias", &[q_rows])?.to_f32_vec();
                b.extend(t("self_attn.k_proj.bias", &[kv_rows])?.to_f32_vec());
                b.extend(t("self_attn.v_proj.bias", &[kv_rows])?.to_f32_vec());
                Some(b)
            } else {
                None
            };
            let mlp_parts = [t("mlp.gate_proj.weight", &[c.ffn, h])?, t("mlp.up_proj.weight", &[c.ffn, h])?];
            layers.push(Layer {
                attn_norm: norm(backend, &format!("{p}input_layernorm.weight"))?,
                wqkv: backend.upload_weight(&qkv_parts, qkv_bias.as_deref())?,
                wo: backend.upload_weight(&[t("self_attn.o_proj.weight", &[h, q_rows])?], None)?,
                ffn_norm: norm(backend, &format!("{p}post_attention_layernorm.weight"))?,
                w13: backend.upload_weight(&mlp_parts, None)?,
                w2: backend.upload_weight(&[t("mlp.down_proj.weight", &[h, c.ffn])?], None)?,
            });
        }
        let attn = AttnShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: c.sliding_window,
        };
        let kv = backend.alloc_kv(KvSpec {
            layers: c.layers,
            blocks: sizing.kv_blocks,
            block_size: sizing.block_size,
            kv_heads: c.kv_heads,
            head_dim: hd,
        })?;
        let (t, o) = (sizing.max_step_tokens, sizing.max_outputs);
        Ok(Model {
            attn,
            embed,
            lm_head,
            final_norm,
            inv_freq: backend.upload(&c.rope_inv_freq())?,
            layers,
            kv,
            x: backend.alloc(t * h)?,
            xn: backend.alloc(t * h)?,
            qkv: backend.alloc(t * attn.qkv_width())?,
            q: backend.alloc(t * q_rows)?,
            attn_out: backend.alloc(t * q_rows)?,
            gate_up: backend.alloc(t * 2 * c.ffn)?,
            ffn_h: backend.alloc(t * c.ffn)?,
            out_x: backend.alloc(o * h)?,
            out_xn: backend.alloc(o * h)?,
            logits: backend.alloc(o * c.vocab)?,
            top_ids: backend.alloc_u32(o)?,
            cfg: c.clone(),
            sizing,
        })
    }

    /// Records one forward step: every token of `step` goes through all layers (its keys and values
    /// land in the cache) and the rows in `step.output_rows` get logits. Nothing is read back here.
    pub fn forward(&self, b: &mut dyn Backend, step: &StepBatch) -> Result<(), ModelError> {
        let (n, outputs) = (step.n_tokens(), step.n_outputs());
        if n > self.sizing.max_step_tokens || outputs > self.sizing.max_outputs {
            return Err(ModelError::StepTooLarge {
                tokens: n,
                outputs,
                max_tokens: self.sizing.max_step_tokens,
                max_outputs: self.sizing.max_outputs,
            });
        }
        let (c, a) = (&self.cfg, self.attn);
        use MatmulMode::{Accumulate, Overwrite};
        b.set_step(step)?;

        // ---- embedding ---------------------------------------------------------------------------
        b.embed(self.embed, self.x, n)?;

        for (i, l) in self.layers.iter().enumerate() {
            // ---- attention: x += Wo · attn(rope(Wqkv · norm(x))) ---------------------------------
            let eps = c.norm_eps;
            b.norm_matmul(self.x, l.attn_norm, eps, self.xn, l.wqkv, self.qkv, n, c.hidden, Overwrite)?;
            b.rope_attention(self.qkv, self.inv_freq, self.q, self.kv, i, self.attn_out, a, n)?;
            b.matmul(l.wo, self.attn_out, self.x, n, Accumulate)?;

            // ---- MLP: x += W2 · (silu(W1 · norm(x)) ⊙ W3 · norm(x)) ------------------------------
            b.norm_matmul(self.x, l.ffn_norm, eps, self.xn, l.w13, self.gate_up, n, c.hidden, Overwrite)?;
            b.silu_mul_matmul(self.gate_up, self.ffn_h, l.w2, self.x, n, c.ffn, Accumulate)?;
        }

        // ---- head: only the output rows ------------------------------------------------------------
        if outputs > 0 {
            b.gather_rows(self.x, self.out_x, c.hidden)?;
            let (x, xn) = (self.out_x, self.out_xn);
            b.norm_matmul(
                x,
                self.final_norm,
                c.norm_eps,
                xn,
                self.lm_head,
                self.logits,
                outputs,
                c.hidden,
                Overwrite,
            )?;
        }
        b.submit()?;
        Ok(())
    }

    /// Reads back the logits of the last step's output rows into `out[outputs · vocab]`.
    pub fn read_logits(&self, b: &mut dyn Backend, out: &mut [f32]) -> Result<(), ModelError> {
        Ok(b.download(self.logits, out)?)
    }

    /// Computes the argmax of each output row on the device and reads back only those ids.
    pub fn read_argmax(&self, b: &mut dyn Backend, out: &mut [u32]) -> Result<(), ModelError> {
        b.argmax(self.logits, self.top_ids, out.len(), self.cfg.vocab)?;
        Ok(b.download_u32(self.top_ids, out)?)
    }
}

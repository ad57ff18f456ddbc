//! A GGUF file as a model: metadata → [`ModelConfig`], tensors → HF-named [`WeightSource`] entries
//! (with llama.cpp's Q/K row permutation undone), tokenizer from the metadata.

use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use super::config::{Arch, ModelConfig};
use super::gguf::{Gguf, TensorInfo, ggml_type_name};
use super::loader::{LoadError, WeightSource};
use crate::backend::{DType, HostBytes, HostTensor};

/// A mapped, parsed GGUF file.
pub struct GgufModel {
    /// The parsed header.
    pub gguf: Gguf,
    map: Arc<Mmap>,
}

fn corrupt(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt { path: path.display().to_string(), detail: detail.into() }
}

impl GgufModel {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<GgufModel, LoadError> {
        let io = |e| LoadError::Io { path: path.display().to_string(), source: e };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only map; like every mmap loader we rely on the file not changing under us.
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
        let gguf = Gguf::parse(&map).map_err(|e| corrupt(path, e.to_string()))?;
        Ok(GgufModel { gguf, map })
    }

    /// The model configuration from the metadata (`<arch>.*` keys) and the tensor table.
    pub fn config(&self, path: &Path) -> Result<ModelConfig, LoadError> {
        let g = &self.gguf;
        let bad = |d: String| LoadError::BadConfig { path: path.display().to_string(), detail: d };
        let arch_name =
            g.get_str("general.architecture").ok_or_else(|| bad("no general.architecture".into()))?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(LoadError::UnknownArchitecture {
                    name: other.to_string(),
                    supported: "GGUF llama, mistral, qwen2",
                });
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let req = |k: &str| -> Result<usize, LoadError> {
            let v = g
                .get_u64(&key(k))
                .ok_or_else(|| bad(format!("`{}` is missing or not an integer", key(k))))?;
            usize::try_from(v).map_err(|_| bad(format!("`{}` = {v} is too large", key(k))))
        };
        let hidden = req("embedding_length")?;
        let heads = req("attention.head_count")?;
        let kv_heads = if g.get(&key("attention.head_count_kv")).is_some() {
            req("attention.head_count_kv")?
        } else {
            heads
        };
        let head_dim = if g.get(&key("attention.key_length")).is_some() {
            req("attention.key_length")?
        } else {
            hidden.checked_div(heads).unwrap_or(0)
        };
        let embd = self.info("token_embd.weight");
        let vocab = match (g.get_u64(&key("vocab_size")), embd) {
            (Some(v), _) => v as usize,
            (None, Some(t)) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => g.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map_or(0, |a| a.len()),
        };
        let rope_scaling = match g.get_str(&key("rope.scaling.type")) {
            None | Some("none") => None,
            Some("linear") => Some(super::config::RopeScaling::Linear {
                factor: g.get_f64(&key("rope.scaling.factor")).unwrap_or(1.0) as f32,
            }),
            Some(other) => return Err(bad(format!("rope scaling `{other}` is not supported"))),
        };
        let eos = g.get_u64("tokenizer.ggml.eos_token_id").and_then(|v| u32::try_from(v).ok());
        let cfg = ModelConfig {
            arch,
            hidden,
            layers: req("block_count")?,
            heads,
            kv_heads,
            head_dim,
            ffn: req("feed_forward_length")?,
            vocab,
            max_context: req("context_length")?,
            rope_theta: g.get_f64(&key("rope.freq_base")).unwrap_or(10000.0) as f32,
            rope_scaling,
            norm_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32,
            tied_embeddings: self.info("output.weight").is_none(),
            qkv_bias: arch == Arch::Qwen2,
            sliding_window: None,
            bos_token_id: g.get_u64("tokenizer.ggml.bos_token_id").and_then(|v| u32::try_from(v).ok()),
            eos_token_ids: eos.into_iter().collect(),
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.gguf.tensors.iter().find(|t| t.name == name)
    }

    /// The tensors under their Hugging Face names. For the Llama architecture, `attn_q`/`attn_k` rows
    /// are permuted back from llama.cpp's adjacent-pair RoPE layout to HF's rotate-half layout.
    pub fn weights(&self, cfg: &ModelConfig, path: &Path) -> Result<WeightSource, LoadError> {
        let mut src = WeightSource::new();
        for t in &self.gguf.tensors {
            let Some(hf_name) = hf_name(&t.name) else {
                tracing::debug!(tensor = t.name, "tensor not used by prism");
                continue;
            };
            let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
            let Some(dtype) = DType::from_ggml(t.ggml_type) else {
                src.insert_unsupported(&hf_name, &ggml_type_name(t.ggml_type));
                continue;
            };
            let bytes = HostBytes::mapped(self.map.clone(), t.range.clone())
                .ok_or_else(|| corrupt(path, format!("tensor `{}` lies outside the file", t.name)))?;
            // llama.cpp's converter permutes Llama and Mistral, not Qwen2.
            let permuted = matches!(cfg.arch, Arch::Llama | Arch::Mistral);
            let heads = if permuted && t.name.ends_with("attn_q.weight") {
                Some(cfg.heads)
            } else if permuted && t.name.ends_with("attn_k.weight") {
                Some(cfg.kv_heads)
            } else {
                None
            };
            let bytes = match heads {
                Some(h) => {
                    unpermute_rows(&bytes, h, shape.first().copied().unwrap_or(0)).ok_or_else(|| {
                        corrupt(path, format!("tensor `{}`: rows not divisible into {h} heads", t.name))
                    })?
                }
                None => bytes,
            };
            let tensor = HostTensor::new(&hf_name, dtype, shape, bytes)
                .ok_or_else(|| corrupt(path, format!("tensor `{}`: size does not match shape", t.name)))?;
            src.insert(tensor);
        }
        Ok(src)
    }
}

/// HF name of a llama.cpp tensor name, or `None` for tensors prism does not use.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undoes llama.cpp's `permute` of Q/K rows. Within each head of `head_rows` rows, GGUF row `2i + j`
/// holds HF row `j·head_rows/2 + i` (j ∈ {0, 1}). Rows are whole (quantized rows stay intact).
fn unpermute_rows(bytes: &[u8], heads: usize, rows: usize) -> Option<HostBytes> {
    if heads == 0
        || rows == 0
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
        || !bytes.len().is_multiple_of(rows)
    {
        return None;
    }
    let row_bytes = bytes.len() / rows;
    let head_rows = rows / heads;
    let half = head_rows / 2;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_rows + 2 * i + j;
                let dst = h * head_rows + j * half + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Some(HostBytes::Owned(out.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, hd) = (2, 4);
        let hf_rows: Vec<u8> = (0..(heads * hd) as u8).collect();
        let mut gguf = vec![0u8; hf_rows.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    gguf[h * hd + 2 * i + j] = hf_rows[h * hd + j * (hd / 2) + i];
                }
            }
        }
        let back = unpermute_rows(&gguf, heads, heads * hd).unwrap();
        assert_eq!(&back[..], &hf_rows[..]);
    }

    #[test]
    fn names_map_to_hf() {
        assert_eq!(hf_name("blk.12.ffn_down.weight").unwrap(), "model.layers.12.mlp.down_proj.weight");
        assert_eq!(hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }
}

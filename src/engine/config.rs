//! Model configuration: HF `config.json` / `generation_config.json` → one checked [`ModelConfig`].

use std::path::Path;

use serde_json::Value;

use super::loader::LoadError;

/// Supported decoder architectures (all share the Llama block; they differ in biases and windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM2, TinyLlama, ...
    Llama,
    /// Mistral (optional sliding-window attention).
    Mistral,
    /// Qwen2 (biases on q, k and v).
    Qwen2,
}

impl Arch {
    /// Maps an HF `architectures` entry or `model_type` to an architecture.
    pub fn from_hf_name(name: &str) -> Option<Arch> {
        match name {
            "LlamaForCausalLM" | "llama" => Some(Arch::Llama),
            "MistralForCausalLM" | "mistral" => Some(Arch::Mistral),
            "Qwen2ForCausalLM" | "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }
}

/// RoPE frequency scaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (`rope_type: linear`).
    Linear { factor: f32 },
    /// Llama 3.1's wavelength-dependent scaling (`rope_type: llama3`).
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_max_position: f32 },
}

/// Everything the forward pass needs to know about a model, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Residual width.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP inner width.
    pub ffn: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab: usize,
    /// Longest context the model was trained for.
    pub max_context: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// LM head shares the embedding matrix.
    pub tied_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Sliding attention window (Mistral v0.1), if any.
    pub sliding_window: Option<u32>,
    /// BOS token id from the config, if any.
    pub bos_token_id: Option<u32>,
    /// EOS token ids from `config.json` and `generation_config.json`.
    pub eos_token_ids: Vec<u32>,
}

/// Sampling defaults a model ships in `generation_config.json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationDefaults {
    /// `do_sample: false` means greedy.
    pub do_sample: Option<bool>,
    /// Default temperature.
    pub temperature: Option<f32>,
    /// Default top-p.
    pub top_p: Option<f32>,
    /// Default top-k.
    pub top_k: Option<usize>,
    /// Default min-p.
    pub min_p: Option<f32>,
    /// Default repetition penalty.
    pub repetition_penalty: Option<f32>,
}

/// Upper bounds that keep a hostile config from sizing absurd allocations.
const MAX_DIM: usize = 1 << 17;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;

fn bad(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::BadConfig { path: path.display().to_string(), detail: detail.into() }
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::Io { path: path.display().to_string(), source: e })?;
    serde_json::from_str(&text).map_err(|e| bad(path, format!("not valid JSON: {e}")))
}

/// Token ids given as one integer or a list of integers.
fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).into_iter().collect(),
        Some(Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect()
        }
        _ => vec![],
    }
}

impl ModelConfig {
    /// Reads `config.json` (and `generation_config.json` if present) of an HF model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<(ModelConfig, GenerationDefaults), LoadError> {
        let path = dir.join("config.json");
        let mut cfg = Self::from_hf_json(&read_json(&path)?, &path)?;
        let gen_path = dir.join("generation_config.json");
        let mut defaults = GenerationDefaults::default();
        if gen_path.is_file() {
            let g = read_json(&gen_path)?;
            for id in id_list(g.get("eos_token_id")) {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
            let f = |k: &str| g.get(k).and_then(Value::as_f64).map(|v| v as f32);
            defaults = GenerationDefaults {
                do_sample: g.get("do_sample").and_then(Value::as_bool),
                temperature: f("temperature"),
                top_p: f("top_p"),
                top_k: g.get("top_k").and_then(Value::as_u64).map(|v| v as usize),
                min_p: f("min_p"),
                repetition_penalty: f("repetition_penalty"),
            };
        }
        Ok((cfg, defaults))
    }

    /// Parses and validates an HF `config.json` value; `path` names the file in errors.
    pub fn from_hf_json(v: &Value, path: &Path) -> Result<ModelConfig, LoadError> {
        let arch_name = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .or_else(|| v.get("model_type").and_then(Value::as_str))
            .ok_or_else(|| bad(path, "neither `architectures` nor `model_type` is given"))?;
        let arch = Arch::from_hf_name(arch_name).ok_or_else(|| LoadError::UnknownArchitecture {
            name: arch_name.to_string(),
            supported: "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM",
        })?;
        let req = |k: &str| -> Result<usize, LoadError> {
            let n = v
                .get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(path, format!("`{k}` is missing or not a positive integer")))?;
            usize::try_from(n).map_err(|_| bad(path, format!("`{k}` = {n} is too large")))
        };
        let opt_f32 = |k: &str| v.get(k).and_then(Value::as_f64).map(|x| x as f32);
        let hidden = req("hidden_size")?;
        let heads = req("num_attention_heads")?;
        let kv_heads = match v.get("num_key_value_heads") {
            Some(Value::Null) | None => heads,
            Some(_) => req("num_key_value_heads")?,
        };
        let head_dim = match v.get("head_dim") {
            Some(Value::Null) | None => hidden.checked_div(heads).unwrap_or(0),
            Some(_) => req("head_dim")?,
        };
        // transformers 5 moves the RoPE settings into `rope_parameters`.
        let rope = v.get("rope_parameters").filter(|r| r.is_object());
        let rope_scaling_v = v.get("rope_scaling").filter(|r| r.is_object()).or(rope);
        let rope_theta = rope
            .and_then(|r| r.get("rope_theta"))
            .and_then(Value::as_f64)
            .map(|x| x as f32)
            .or_else(|| opt_f32("rope_theta"))
            .unwrap_or(10000.0);
        let rope_scaling = match rope_scaling_v {
            None => None,
            Some(r) => parse_rope_scaling(r).map_err(|d| bad(path, d))?,
        };
        let qkv_bias = match arch {
            Arch::Qwen2 => true,
            _ => v.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
        };
        let sliding_window = match arch {
            Arch::Mistral => v.get("sliding_window").and_then(Value::as_u64).map(|w| w as u32),
            Arch::Qwen2 if v.get("use_sliding_window").and_then(Value::as_bool) == Some(true) => {
                return Err(bad(path, "Qwen2 with use_sliding_window is not supported"));
            }
            _ => None,
        };
        let cfg = ModelConfig {
            arch,
            hidden,
            layers: req("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            ffn: req("intermediate_size")?,
            vocab: req("vocab_size")?,
            max_context: req("max_position_embeddings")?,
            rope_theta,
            rope_scaling,
            norm_eps: opt_f32("rms_norm_eps").unwrap_or(1e-6),
            tied_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            qkv_bias,
            sliding_window,
            bos_token_id: id_list(v.get("bos_token_id")).first().copied(),
            eos_token_ids: id_list(v.get("eos_token_id")),
        };
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(bad(path, format!("hidden_act `{act}` is not supported (only silu)")));
        }
        cfg.validate().map_err(|d| bad(path, d))?;
        Ok(cfg)
    }

    /// Checks sizes are non-zero, consistent and within sane bounds.
    pub fn validate(&self) -> Result<(), String> {
        let dims = [
            ("hidden_size", self.hidden, MAX_DIM),
            ("num_hidden_layers", self.layers, MAX_LAYERS),
            ("num_attention_heads", self.heads, 4096),
            ("num_key_value_heads", self.kv_heads, 4096),
            ("head_dim", self.head_dim, 4096),
            ("intermediate_size", self.ffn, MAX_DIM * 4),
            ("vocab_size", self.vocab, MAX_VOCAB),
            ("max_position_embeddings", self.max_context, 1 << 24),
        ];
        for (name, value, max) in dims {
            if value == 0 || value > max {
                return Err(format!("`{name}` = {value} is out of range 1..={max}"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd; RoPE needs pairs", self.head_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta {} is not a positive number", self.rope_theta));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(format!("rms_norm_eps {} is not a non-negative number", self.norm_eps));
        }
        Ok(())
    }

    /// RoPE inverse frequencies `[head_dim/2]`, with the configured scaling applied, computed as
    /// transformers does (in f32 from an f32 exponent).
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / self.head_dim as f32;
                let inv = 1.0 / self.rope_theta.powf(exponent);
                match self.rope_scaling {
                    None => inv,
                    Some(RopeScaling::Linear { factor }) => inv / factor,
                    Some(RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position,
                    }) => {
                        let low_freq_wavelen = original_max_position / low_freq_factor;
                        let high_freq_wavelen = original_max_position / high_freq_factor;
                        let wavelen = 2.0 * std::f32::consts::PI / inv;
                        if wavelen < high_freq_wavelen {
                            inv
                        } else if wavelen > low_freq_wavelen {
                            inv / factor
                        } else {
                            let smooth = (original_max_position / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * inv / factor + smooth * inv
                        }
                    }
                }
            })
            .collect()
    }
}

fn parse_rope_scaling(r: &Value) -> Result<Option<RopeScaling>, String> {
    let kind = r.get("rope_type").or_else(|| r.get("type")).and_then(Value::as_str).unwrap_or("default");
    let f = |k: &str| r.get(k).and_then(Value::as_f64).map(|x| x as f32);
    let need = |k: &str| f(k).ok_or_else(|| format!("rope_scaling `{kind}` lacks `{k}`"));
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: need("factor")? })),
        "llama3" => {
            let s = RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position: need("original_max_position_embeddings")?,
            };
            if let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, .. } = s
                && (factor <= 0.0 || high_freq_factor <= low_freq_factor)
            {
                return Err("rope_scaling llama3 has inconsistent factors".into());
            }
            Ok(Some(s))
        }
        other => Err(format!("rope_scaling type `{other}` is not supported (default, linear, llama3)")),
    }
}

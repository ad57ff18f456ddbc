//! Single-sequence generation: chunked prefill, decode loop, sampling, streaming text, stop conditions.

use std::path::Path;
use std::time::Instant;

use thiserror::Error;

use super::config::{GenerationDefaults, ModelConfig};
use super::gguf_model::GgufModel;
use super::kv_cache::{BlockPool, CacheFull};
use super::loader::{LoadError, WeightSource};
use super::model::{Model, ModelError, ModelSizing};
use super::sampling::{Sampler, SamplingError, SamplingParams, TokenCounts};
use super::sequence::TextOutput;
use super::tokenizer::{Tokenizer, TokenizerError};
use super::tokenizer_gguf::tokenizer_from_gguf;
use crate::backend::{Backend, DType, HostBytes, HostTensor, StepBatch, quant};

/// Errors of the engine layer.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Model files could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Tokenization or template rendering failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// `--quantize` failed.
    #[error("cannot quantize {tensor}: {detail}")]
    Quantize { tensor: String, detail: String },
    /// Sampling parameters are invalid.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// The prompt plus the tokens to generate do not fit the context.
    #[error("prompt of {prompt} tokens + max_tokens {max_tokens} exceeds the context of {context} tokens")]
    ContextOverflow { prompt: usize, max_tokens: usize, context: usize },
    /// Nothing to run the model on.
    #[error("the prompt is empty and the model has no BOS token to start from")]
    EmptyPrompt,
    /// No room in the KV cache.
    #[error(transparent)]
    CacheFull(#[from] CacheFull),
}

/// A model directory opened on the host: config, weights (mapped), tokenizer.
pub struct ModelFiles {
    /// The model's configuration.
    pub config: ModelConfig,
    /// Sampling defaults from `generation_config.json`.
    pub defaults: GenerationDefaults,
    /// The weights, by HF name.
    pub weights: WeightSource,
    /// The tokenizer with its chat template.
    pub tokenizer: Tokenizer,
}

impl ModelFiles {
    /// Opens a model: a GGUF file, or an HF directory (`config.json`, safetensors, `tokenizer.json`).
    pub fn open(path: &Path) -> Result<ModelFiles, EngineError> {
        if path.is_file() {
            let gguf = GgufModel::open(path)?;
            let config = gguf.config(path)?;
            let weights = gguf.weights(&config, path)?;
            let tokenizer = tokenizer_from_gguf(&gguf.gguf)?;
            return Ok(ModelFiles { config, defaults: GenerationDefaults::default(), weights, tokenizer });
        }
        let (config, defaults) = ModelConfig::from_hf_dir(path)?;
        let weights = WeightSource::open_hf_dir(path)?;
        let tokenizer = Tokenizer::from_dir(path)?;
        Ok(ModelFiles { config, defaults, weights, tokenizer })
    }
}

impl ModelFiles {
    /// Quantizes every f32/f16/bf16 weight matrix (projections, embedding, LM head) to `dtype`
    /// (`q8_0`, `q4_0`, `q4_1`) in llama.cpp's block layout; norms and biases stay as they are, and so
    /// does any matrix whose rows are not a whole number of blocks. Returns how many were quantized.
    pub fn quantize(&mut self, dtype: DType) -> Result<usize, EngineError> {
        use rayon::prelude::*;
        let names: Vec<String> = self
            .weights
            .names()
            .into_iter()
            .filter(|n| {
                n.ends_with("_proj.weight") || n.ends_with("embed_tokens.weight") || n == "lm_head.weight"
            })
            .collect();
        let quantized: Vec<Option<HostTensor>> = names
            .par_iter()
            .map(|name| {
                let t = self.weights.get(name)?;
                let cols = t.shape.last().copied().unwrap_or(0);
                if t.dtype.is_quantized() || t.shape.len() != 2 || !cols.is_multiple_of(dtype.block_elems()) {
                    return Ok(None);
                }
                let err = |detail: String| EngineError::Quantize { tensor: name.clone(), detail };
                let bytes = quant::quantize(dtype, &t.to_f32_vec()).map_err(|e| err(e.to_string()))?;
                let q = HostTensor::new(name, dtype, t.shape.clone(), HostBytes::Owned(bytes.into()))
                    .ok_or_else(|| err("quantized size does not match the shape".into()))?;
                Ok(Some(q))
            })
            .collect::<Result<_, EngineError>>()?;
        let count = quantized.iter().flatten().count();
        for t in quantized.into_iter().flatten() {
            self.weights.insert(t);
        }
        Ok(count)
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick each token.
    pub sampling: SamplingParams,
    /// Strings that end generation (not included in the text).
    pub stop: Vec<String>,
    /// Keep going past EOS (benchmarks).
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The request's deadline passed (server).
    Timeout,
}

impl FinishReason {
    /// The OpenAI name (`stop`, `length`; a timeout reads `length`, as the output was cut short).
    pub fn openai_name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::Timeout => "length",
        }
    }
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Prompt tokens.
    pub prompt_ids: Vec<u32>,
    /// Generated tokens (EOS included when reached).
    pub ids: Vec<u32>,
    /// Generated text (up to a stop string).
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Seconds from start to the first generated token (prefill).
    pub prefill_secs: f64,
    /// Seconds for the remaining tokens (decode).
    pub decode_secs: f64,
}

impl Generation {
    /// Prefill speed in prompt tokens per second.
    pub fn prefill_tps(&self) -> f64 {
        self.prompt_ids.len() as f64 / self.prefill_secs.max(1e-9)
    }
    /// Decode speed in tokens per second (tokens after the first).
    pub fn decode_tps(&self) -> f64 {
        self.ids.len().saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// Sizing of an engine for single-sequence use.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Context to reserve in the KV cache (clamped to the model's maximum).
    pub context: usize,
    /// Largest prefill chunk.
    pub max_step_tokens: usize,
    /// Positions per KV block.
    pub block_size: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { context: 4096, max_step_tokens: 512, block_size: 16 }
    }
}

/// A model on a backend with its tokenizer, ready to generate.
pub struct Engine {
    /// The backend the model runs on.
    pub backend: Box<dyn Backend>,
    /// The model.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Sampling defaults of the model.
    pub defaults: GenerationDefaults,
    pub(crate) pool: BlockPool,
    context: usize,
    logits: Vec<f32>, // [vocab]
}

impl Engine {
    /// Loads `files` onto `backend` with room for `opts.context` positions.
    pub fn new(
        mut backend: Box<dyn Backend>,
        files: ModelFiles,
        opts: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let context = opts.context.clamp(1, files.config.max_context);
        let sizing = ModelSizing {
            max_step_tokens: opts.max_step_tokens.clamp(1, context),
            max_outputs: 1,
            kv_blocks: context.div_ceil(opts.block_size),
            block_size: opts.block_size,
        };
        let model = Model::load(backend.as_mut(), &files.config, &files.weights, sizing)?;
        Ok(Engine {
            backend,
            logits: vec![0.0; files.config.vocab],
            pool: BlockPool::new(sizing.kv_blocks, sizing.block_size),
            context,
            model,
            tokenizer: files.tokenizer,
            defaults: files.defaults,
        })
    }

    /// Positions the KV cache holds for one sequence.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Generates from `prompt_ids`, calling `on_text` with each piece of text as soon as it is
    /// complete UTF-8 and cannot be part of a stop string.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation, EngineError> {
        params.sampling.validate()?;
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let context = self.context();
        if prompt_ids.len() + params.max_tokens > context {
            return Err(EngineError::ContextOverflow {
                prompt: prompt_ids.len(),
                max_tokens: params.max_tokens,
                context,
            });
        }
        let mut blocks = Vec::new();
        self.pool.ensure(&mut blocks, prompt_ids.len() + params.max_tokens)?;
        let result = self.run_sequence(prompt_ids, params, &blocks, &mut on_text);
        self.pool.release(&mut blocks);
        result
    }

    fn run_sequence(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerateParams,
        blocks: &[u32],
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let start = Instant::now();
        let mut sampler = Sampler::new(params.sampling.clone());
        let mut counts = TokenCounts::from_prompt(prompt_ids);
        let mut text_out = TextOutput::new(&self.tokenizer, params.stop.clone(), params.ignore_eos);
        let mut out = Generation {
            prompt_ids: prompt_ids.to_vec(),
            ids: Vec::with_capacity(params.max_tokens),
            text: String::new(),
            finish: FinishReason::Length,
            prefill_secs: 0.0,
            decode_secs: 0.0,
        };
        let mut emit = |piece: &str, out: &mut Generation| {
            if !piece.is_empty() {
                out.text.push_str(piece);
                on_text(piece);
            }
        };

        // ---- prefill in chunks ---------------------------------------------------------------------
        self.prefill(prompt_ids, blocks)?;
        let mut pos = prompt_ids.len();

        // ---- decode --------------------------------------------------------------------------------
        let mut decode_start = None;
        while out.ids.len() < params.max_tokens {
            let next = self.pick(&mut sampler, &counts)?;
            if decode_start.is_none() {
                out.prefill_secs = start.elapsed().as_secs_f64();
                decode_start = Some(Instant::now());
            }
            out.ids.push(next);
            counts.add_generated(next);
            let (piece, finish) = text_out.push(&self.tokenizer, next)?;
            emit(&piece, &mut out);
            if let Some(f) = finish {
                out.finish = f;
                break;
            }
            if out.ids.len() == params.max_tokens {
                break;
            }
            let step = StepBatch::single(&[next], pos, blocks);
            pos += 1;
            self.model.forward(self.backend.as_mut(), &step)?;
        }
        let rest = text_out.flush(&self.tokenizer)?;
        emit(&rest, &mut out);
        out.decode_secs = decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Records the forward pass of `prompt_ids` from position 0 in chunks of the largest step; only the
    /// last chunk computes logits (of its last token).
    pub(crate) fn prefill(&mut self, prompt_ids: &[u32], blocks: &[u32]) -> Result<(), EngineError> {
        let mut pos = 0;
        for part in prompt_ids.chunks(self.model.sizing.max_step_tokens) {
            let mut step = StepBatch::single(part, pos, blocks);
            pos += part.len();
            if pos < prompt_ids.len() {
                step.output_rows.clear();
            }
            self.model.forward(self.backend.as_mut(), &step)?;
        }
        Ok(())
    }

    /// Runs `prompt_ids` from position 0 and returns the logits `[vocab]` of the last position
    /// (tests against reference logits; prompt log-probabilities later).
    pub fn prefill_logits(&mut self, prompt_ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let context = self.context();
        if prompt_ids.len() > context {
            return Err(EngineError::ContextOverflow { prompt: prompt_ids.len(), max_tokens: 0, context });
        }
        let mut blocks = Vec::new();
        self.pool.ensure(&mut blocks, prompt_ids.len())?;
        let result = self
            .prefill(prompt_ids, &blocks)
            .and_then(|_| Ok(self.model.read_logits(self.backend.as_mut(), &mut self.logits)?));
        self.pool.release(&mut blocks);
        result?;
        Ok(self.logits.clone())
    }

    /// The next token: argmax on the device when greedy, else sampled from downloaded logits.
    fn pick(&mut self, sampler: &mut Sampler, counts: &TokenCounts) -> Result<u32, EngineError> {
        if sampler.is_greedy_without_penalties() {
            let mut id = [0u32];
            self.model.read_argmax(self.backend.as_mut(), &mut id)?;
            return Ok(id[0]);
        }
        self.model.read_logits(self.backend.as_mut(), &mut self.logits)?;
        Ok(sampler.try_sample(&mut self.logits, counts)?)
    }
}

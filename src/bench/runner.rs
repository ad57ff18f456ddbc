//! prism's side of a benchmark: one model on one backend, and timed prefill (pp) and batched decode (tg)
//! repetitions of it, plus how many weight bytes and flops each repetition costs.

use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::BenchError;
use crate::backend::{Backend, StepBatch};
use crate::engine::generate::ModelFiles;
use crate::engine::kv_cache::BlockPool;
use crate::engine::model::{Model, ModelSizing};

/// Largest prefill chunk, as the engine's default.
const MAX_STEP_TOKENS: usize = 512;
/// Positions per KV-cache block.
const BLOCK_SIZE: usize = 16;

/// The largest test a runner must fit.
#[derive(Clone, Copy, Debug)]
pub struct RunnerSizes {
    /// Longest prompt of a pp test.
    pub max_prompt: usize,
    /// Longest generation of a tg test.
    pub max_gen: usize,
    /// Most sequences decoding together.
    pub max_batch: usize,
}

/// Weight traffic and arithmetic of one forward step, from the tensors' stored sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WeightCost {
    /// Bytes of the transformer blocks' weights (read once per forward step).
    pub body_bytes: u64,
    /// Parameters of the blocks' matrices (each costs 2 flops per token).
    pub body_params: u64,
    /// Bytes of the LM head (read once per step that computes logits).
    pub head_bytes: u64,
    /// Parameters of the LM head (2 flops per output row).
    pub head_params: u64,
}

impl WeightCost {
    /// Splits the model's tensors into the blocks and the LM head. The token embedding is only gathered
    /// (a few rows per step) and counts as nothing unless it doubles as the head (tied embeddings).
    pub fn of(files: &ModelFiles) -> WeightCost {
        let mut cost = WeightCost::default();
        let head_name =
            if files.config.tied_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
        for name in files.weights.names() {
            let Ok(t) = files.weights.get(&name) else { continue };
            let (bytes, params) = (t.bytes.len() as u64, t.numel() as u64);
            if name == head_name {
                cost.head_bytes += bytes;
                cost.head_params += params;
            } else if name.starts_with("model.layers.") || name == "model.norm.weight" {
                cost.body_bytes += bytes;
                cost.body_params += params;
            }
        }
        cost
    }

    /// Weight bytes and flops of one pp repetition of `n_prompt` tokens, prefilled in chunks of
    /// `max_step` (only the last chunk reaches the head, for one row).
    pub fn prefill(&self, n_prompt: usize, max_step: usize) -> (f64, f64) {
        let steps = n_prompt.div_ceil(max_step.max(1)) as f64;
        let bytes = steps * self.body_bytes as f64 + self.head_bytes as f64;
        let flops = 2.0 * (n_prompt as f64 * self.body_params as f64 + self.head_params as f64);
        (bytes, flops)
    }

    /// Weight bytes and flops of one tg repetition: `n_gen` steps of `batch` sequences.
    pub fn decode(&self, n_gen: usize, batch: usize) -> (f64, f64) {
        let bytes = n_gen as f64 * (self.body_bytes + self.head_bytes) as f64;
        let flops = 2.0 * (n_gen * batch) as f64 * (self.body_params + self.head_params) as f64;
        (bytes, flops)
    }
}

/// A model loaded on a backend with a KV pool for the largest test.
pub struct PrismRunner {
    backend: Box<dyn Backend>,
    model: Model,
    pool: BlockPool,
    /// Random prompt tokens (seeded), `[max_prompt]`.
    prompt: Vec<u32>,
    max_step: usize,
}

impl PrismRunner {
    /// Loads `files` onto `backend`, sized for `sizes` (clamped to at least one token and sequence).
    pub fn new(
        mut backend: Box<dyn Backend>,
        files: &ModelFiles,
        sizes: RunnerSizes,
    ) -> Result<PrismRunner, BenchError> {
        let batch = sizes.max_batch.max(1);
        let blocks = |positions: usize| positions.max(1).div_ceil(BLOCK_SIZE);
        let max_step = sizes.max_prompt.clamp(1, MAX_STEP_TOKENS).max(batch);
        let sizing = ModelSizing {
            max_step_tokens: max_step,
            max_outputs: batch,
            kv_blocks: blocks(sizes.max_prompt).max(batch * blocks(sizes.max_gen)),
            block_size: BLOCK_SIZE,
        };
        let model = Model::load(backend.as_mut(), &files.config, &files.weights, sizing)?;
        let vocab = files.config.vocab.max(1) as u32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let prompt = (0..sizes.max_prompt.max(1)).map(|_| rng.random_range(0..vocab)).collect();
        Ok(PrismRunner {
            backend,
            model,
            pool: BlockPool::new(sizing.kv_blocks, BLOCK_SIZE),
            prompt,
            max_step,
        })
    }

    /// Largest prefill chunk (for the weight-traffic count).
    pub fn max_step(&self) -> usize {
        self.max_step
    }

    /// The backend (ceilings, profile reports).
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// One pp repetition: prefill `n_prompt` random tokens from position 0 and read back the first
    /// generated token. Returns the seconds it took (= time to first token).
    pub fn prefill_once(&mut self, n_prompt: usize) -> Result<f64, BenchError> {
        let mut table = Vec::new();
        self.pool.ensure(&mut table, n_prompt)?;
        let prompt = self.prompt[..n_prompt.min(self.prompt.len())].to_vec();
        let result = self.timed_prefill(&prompt, &table);
        self.pool.release(&mut table);
        result
    }

    fn timed_prefill(&mut self, prompt: &[u32], table: &[u32]) -> Result<f64, BenchError> {
        let t0 = Instant::now();
        let mut pos = 0;
        for part in prompt.chunks(self.max_step) {
            let mut step = StepBatch::single(part, pos, table);
            pos += part.len();
            if pos < prompt.len() {
                step.output_rows.clear();
            }
            self.model.forward(self.backend.as_mut(), &step)?;
        }
        let mut id = [0u32];
        self.model.read_argmax(self.backend.as_mut(), &mut id)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// One tg repetition: `batch` sequences decode `n_gen` steps together from position 0 (one forward
    /// step of `batch` rows per token, greedy), each step's tokens read back before the next. Returns
    /// the seconds it took.
    pub fn decode_once(&mut self, n_gen: usize, batch: usize) -> Result<f64, BenchError> {
        let batch = batch.max(1);
        let mut tables: Vec<Vec<u32>> = vec![Vec::new(); batch];
        let mut result = Ok(());
        for t in &mut tables {
            if let Err(e) = self.pool.ensure(t, n_gen) {
                result = Err(BenchError::from(e));
                break;
            }
        }
        let result = result.and_then(|_| self.timed_decode(n_gen, &tables));
        for t in &mut tables {
            self.pool.release(t);
        }
        result
    }

    fn timed_decode(&mut self, n_gen: usize, tables: &[Vec<u32>]) -> Result<f64, BenchError> {
        let batch = tables.len();
        let mut step = StepBatch {
            token_seq: (0..batch as u32).collect(),
            block_table_start: tables
                .iter()
                .scan(0u32, |at, t| Some(std::mem::replace(at, *at + t.len() as u32)))
                .collect(),
            block_table_len: tables.iter().map(|t| t.len() as u32).collect(),
            block_tables: tables.concat(),
            output_rows: (0..batch as u32).collect(),
            ..StepBatch::default()
        };
        // Each sequence starts from a different prompt token so the rows differ.
        let mut tokens: Vec<u32> = (0..batch).map(|s| self.prompt[s % self.prompt.len()]).collect();
        let t0 = Instant::now();
        for pos in 0..n_gen {
            step.tokens.clone_from(&tokens);
            step.positions = vec![pos as u32; batch];
            self.model.forward(self.backend.as_mut(), &step)?;
            self.model.read_argmax(self.backend.as_mut(), &mut tokens)?;
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}

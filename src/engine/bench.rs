//! `prism bench`: prefill (pp) and decode (tg) throughput, llama-bench style, median and spread.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::generate::{Engine, EngineError};
use crate::backend::StepBatch;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Prompt tokens of the pp test (0 = skip).
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0 = skip).
    pub n_gen: usize,
    /// Timed repetitions (after one warm-up).
    pub reps: usize,
}

/// One test's result, in llama-bench's JSON field names where they exist.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// `pp512`, `tg128`, ...
    pub test: String,
    /// Prompt tokens (pp) or 0.
    pub n_prompt: usize,
    /// Generated tokens (tg) or 0.
    pub n_gen: usize,
    /// Tokens per second of each repetition.
    pub samples_ts: Vec<f64>,
    /// Mean tokens per second.
    pub avg_ts: f64,
    /// Standard deviation of tokens per second.
    pub stddev_ts: f64,
    /// Median tokens per second.
    pub median_ts: f64,
    /// Slowest repetition.
    pub min_ts: f64,
    /// Fastest repetition.
    pub max_ts: f64,
}

impl BenchResult {
    fn from_samples(test: String, n_prompt: usize, n_gen: usize, samples: Vec<f64>) -> Self {
        let n = samples.len().max(1) as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => 0.0,
            l if l % 2 == 1 => sorted[l / 2],
            l => 0.5 * (sorted[l / 2 - 1] + sorted[l / 2]),
        };
        BenchResult {
            test,
            n_prompt,
            n_gen,
            avg_ts: mean,
            stddev_ts: var.sqrt(),
            median_ts: median,
            min_ts: sorted.first().copied().unwrap_or(0.0),
            max_ts: sorted.last().copied().unwrap_or(0.0),
            samples_ts: samples,
        }
    }
}

/// Runs the pp and tg tests on `engine`; `progress` is told after each repetition.
pub fn run(
    engine: &mut Engine,
    cfg: BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<Vec<BenchResult>, EngineError> {
    let context = engine.context();
    let need = cfg.n_prompt.max(cfg.n_gen);
    if need > context {
        return Err(EngineError::ContextOverflow { prompt: cfg.n_prompt, max_tokens: cfg.n_gen, context });
    }
    let mut blocks = Vec::new();
    engine.pool.ensure(&mut blocks, need)?;
    let result = run_tests(engine, cfg, &blocks, &mut progress);
    engine.pool.release(&mut blocks);
    result
}

fn run_tests(
    engine: &mut Engine,
    cfg: BenchConfig,
    blocks: &[u32],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>, EngineError> {
    let vocab = engine.model.cfg.vocab as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let prompt: Vec<u32> = (0..cfg.n_prompt).map(|_| rng.random_range(0..vocab)).collect();
    let mut out = Vec::new();
    if cfg.n_prompt > 0 {
        let test = format!("pp{}", cfg.n_prompt);
        let mut samples = Vec::new();
        for rep in 0..=cfg.reps {
            let t0 = Instant::now();
            engine.prefill(&prompt, blocks)?;
            let mut id = [0u32];
            engine.model.read_argmax(engine.backend.as_mut(), &mut id)?;
            let secs = t0.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(cfg.n_prompt as f64 / secs);
            }
            progress(&format!("{test} rep {rep}/{}", cfg.reps));
        }
        if let Some(r) = engine.backend.profile_report() {
            eprintln!("profile of {test} (all repetitions):\n{r}");
        }
        out.push(BenchResult::from_samples(test, cfg.n_prompt, 0, samples));
    }
    if cfg.n_gen > 0 {
        let test = format!("tg{}", cfg.n_gen);
        let mut samples = Vec::new();
        for rep in 0..=cfg.reps {
            let mut token = prompt.first().copied().unwrap_or(1 % vocab);
            let t0 = Instant::now();
            for pos in 0..cfg.n_gen {
                let step = StepBatch::single(&[token], pos, blocks);
                engine.model.forward(engine.backend.as_mut(), &step)?;
                let mut id = [0u32];
                engine.model.read_argmax(engine.backend.as_mut(), &mut id)?;
                token = id[0];
            }
            let secs = t0.elapsed().as_secs_f64();
            if rep > 0 {
                samples.push(cfg.n_gen as f64 / secs);
            }
            progress(&format!("{test} rep {rep}/{}", cfg.reps));
        }
        if let Some(r) = engine.backend.profile_report() {
            eprintln!("profile of {test} (all repetitions):\n{r}");
        }
        out.push(BenchResult::from_samples(test, 0, cfg.n_gen, samples));
    }
    Ok(out)
}

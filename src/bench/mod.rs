//! `prism bench`: models × backends × prompt, generation and batch sizes, timed with warm-up and
//! repetitions, beside a peer (llama.cpp's `llama-bench`) measured in the same run, against ceilings.
//!
//! Submodules: [`runner`] times prism, [`peer`] runs llama-bench, [`ceilings`] measures the device,
//! [`stats`] summarizes samples, [`output`] writes the table, JSON and CSV, [`plot`] the SVG chart.

pub mod ceilings;
pub mod output;
pub mod peer;
pub mod plot;
pub mod runner;
pub mod stats;

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::backend::{self, BackendError, BackendKind, BackendOptions, DType};
use crate::engine::generate::{EngineError, ModelFiles};
use crate::engine::kv_cache::CacheFull;
use crate::engine::model::ModelError;
use ceilings::{CeilingSizes, Ceilings};
use peer::{PeerSample, PeerSpec, PeerTest};
use runner::{PrismRunner, RunnerSizes, WeightCost};
use stats::Stats;

/// Errors of the bench tool.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The model could not be opened or quantized.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The backend could not start or failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The KV pool cannot hold the test.
    #[error(transparent)]
    Cache(#[from] CacheFull),
    /// A `--peer` spec is wrong.
    #[error("--peer {spec}: {detail}")]
    Peer { spec: String, detail: String },
    /// The plan asks for something impossible.
    #[error("{0}")]
    Plan(String),
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The chart could not be drawn.
    #[error("cannot draw the plot {path}: {detail}")]
    Plot { path: PathBuf, detail: String },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    /// Model paths (GGUF files or HF directories).
    pub models: Vec<PathBuf>,
    /// Concrete backends (or `Auto`).
    pub backends: Vec<BackendKind>,
    /// Device index within each backend.
    pub device: usize,
    /// CPU threads (0 = all cores).
    pub threads: usize,
    /// Quantize weights at load (`--quantize`).
    pub quantize: Option<DType>,
    /// Prompt lengths of the pp tests (0 entries are skipped).
    pub n_prompt: Vec<usize>,
    /// Generation lengths of the tg tests (0 entries are skipped).
    pub n_gen: Vec<usize>,
    /// Sequences decoding together in the tg tests.
    pub batches: Vec<usize>,
    /// Timed repetitions after one warm-up.
    pub reps: usize,
    /// Peers measured beside prism.
    pub peers: Vec<PeerSpec>,
    /// Measure each backend's ceilings first.
    pub ceilings: bool,
}

/// One test of a plan: `pp{n_prompt}` (one sequence) or `tg{n_gen}` with `batch` sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestSpec {
    /// Prompt tokens (pp), else 0.
    pub n_prompt: usize,
    /// Generated tokens per sequence (tg), else 0.
    pub n_gen: usize,
    /// Sequences decoding together (1 for pp).
    pub batch: usize,
}

impl TestSpec {
    /// llama-bench's test name: `pp512`, `tg128`.
    pub fn name(&self) -> String {
        if self.n_prompt > 0 { format!("pp{}", self.n_prompt) } else { format!("tg{}", self.n_gen) }
    }
}

impl BenchPlan {
    /// Every test in order: the pp tests, then each tg length at each batch size.
    pub fn tests(&self) -> Vec<TestSpec> {
        let pp =
            self.n_prompt.iter().filter(|&&p| p > 0).map(|&p| TestSpec { n_prompt: p, n_gen: 0, batch: 1 });
        let tg =
            self.n_gen.iter().filter(|&&n| n > 0).flat_map(|&n| {
                self.batches.iter().map(move |&b| TestSpec { n_prompt: 0, n_gen: n, batch: b })
            });
        pp.chain(tg).collect()
    }

    /// Rejects plans that cannot run: no test, zero repetitions or batch size.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.reps == 0 {
            return Err(BenchError::Plan("-r must be at least 1".into()));
        }
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(BenchError::Plan("-b sizes must be at least 1".into()));
        }
        if !self.models.is_empty() && self.tests().is_empty() {
            return Err(BenchError::Plan("nothing to run: every -p and -n is 0".into()));
        }
        if self.backends.is_empty() {
            return Err(BenchError::Plan("no backend to run on".into()));
        }
        Ok(())
    }

    /// Progress units: one per prism repetition (warm-up included) and per peer call, and one per
    /// ceiling measurement.
    pub fn total_steps(&self) -> u64 {
        let per_backend = (self.tests().len() * (self.reps + 1) * self.models.len()) as u64;
        let peer = (self.tests().len() * self.reps * self.models.len()) as u64;
        let peers = self.backends.iter().filter(|&&k| self.peers.iter().any(|p| p.applies_to(k))).count();
        per_backend * self.backends.len() as u64
            + peer * peers as u64
            + u64::from(self.ceilings) * self.backends.len() as u64
    }

    /// CPU threads the CPU backend and the peer use (0 = all cores).
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// What the runner tells its caller while it works.
pub enum Event<'a> {
    /// One unit of [`BenchPlan::total_steps`] is done.
    Step(&'a str),
    /// Something worth printing (a skipped backend, a profile report, a peer failure).
    Note(&'a str),
}

/// One result row: a model × backend × test, with its peer. Field names follow llama-bench's JSON
/// where they exist (`model_filename`, `backends`, `n_prompt`, `samples_ts`, `avg_ts`, ...).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchRow {
    /// Model file or directory name.
    pub model: String,
    /// Model path as given.
    pub model_filename: String,
    /// Bytes of the weights as stored.
    pub model_size: u64,
    /// Parameters.
    pub model_n_params: u64,
    /// prism backend (`cpu`, `wgpu`, `hip`, `cuda`).
    pub backend: String,
    /// Same as `backend` (llama-bench's field name).
    pub backends: String,
    /// Device description.
    pub device: String,
    /// CPU threads.
    pub n_threads: usize,
    /// `pp512`, `tg128`.
    pub test: String,
    /// Prompt tokens (pp) or 0.
    pub n_prompt: usize,
    /// Generated tokens per sequence (tg) or 0.
    pub n_gen: usize,
    /// Sequences decoding together (tokens/s are their aggregate).
    pub n_batch: usize,
    /// Timed repetitions.
    pub reps: usize,
    /// Tokens per second of each repetition.
    pub samples_ts: Vec<f64>,
    /// Median tokens/s.
    pub median_ts: Option<f64>,
    /// Mean tokens/s.
    pub avg_ts: Option<f64>,
    /// Slowest repetition.
    pub min_ts: Option<f64>,
    /// Fastest repetition.
    pub max_ts: Option<f64>,
    /// Sample standard deviation of tokens/s.
    pub stddev_ts: Option<f64>,
    /// pp: median milliseconds from the start of prefill to the first token read back.
    pub ttft_ms: Option<f64>,
    /// Weight bytes read per second at the median rate (GB/s).
    pub gbps: Option<f64>,
    /// Matmul arithmetic at the median rate (GFLOP/s, 2 per weight per token).
    pub gflops: Option<f64>,
    /// The backend's copy ceiling measured in this run (GB/s, read + write).
    pub ceiling_gbps: Option<f64>,
    /// The backend's GEMM ceiling measured in this run (GFLOP/s).
    pub ceiling_gflops: Option<f64>,
    /// `gbps` as a percentage of `ceiling_gbps`.
    pub pct_ceiling_gbps: Option<f64>,
    /// `gflops` as a percentage of `ceiling_gflops`.
    pub pct_ceiling_gflops: Option<f64>,
    /// Peer name (`llama.cpp`) when one was asked for.
    pub peer: Option<String>,
    /// Peer tokens/s of each repetition (interleaved with prism's).
    pub peer_samples_ts: Vec<f64>,
    /// Peer median tokens/s.
    pub peer_median_ts: Option<f64>,
    /// Peer mean tokens/s.
    pub peer_avg_ts: Option<f64>,
    /// Peer sample standard deviation.
    pub peer_stddev_ts: Option<f64>,
    /// Peer's own backend list (`CPU`, `CUDA`, `Vulkan`).
    pub peer_backends: Option<String>,
    /// Peer build (llama.cpp commit).
    pub peer_build: Option<String>,
    /// prism median / peer median.
    pub ratio: Option<f64>,
    /// Why the peer has no numbers (skipped or failed).
    pub peer_error: Option<String>,
    /// Why prism has no numbers.
    pub error: Option<String>,
    /// prism's version.
    pub prism_version: String,
    /// When the row was finished (seconds since 1970, UTC).
    pub unix_time: u64,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct BenchReport {
    /// One row per model × backend × test.
    pub rows: Vec<BenchRow>,
    /// Ceilings per backend, when asked for.
    pub ceilings: Vec<Ceilings>,
}

/// Runs `plan`: per backend its ceilings (if asked), then every model's tests. Failures of a model,
/// backend or peer become error fields of their rows; nothing here panics on them.
pub fn run(plan: &BenchPlan, on: &mut dyn FnMut(Event)) -> BenchReport {
    let mut report = BenchReport::default();
    for &kind in &plan.backends {
        let opts = BackendOptions { device: plan.device, threads: plan.threads };
        let ceiling = if plan.ceilings {
            let measured = backend::create(kind, opts).map_err(BenchError::from).and_then(|mut b| {
                let sizes = CeilingSizes::for_backend(&b.info().backend);
                Ok(ceilings::measure(b.as_mut(), plan.reps, sizes)?)
            });
            on(Event::Step(&format!("{} ceilings", kind.name())));
            match measured {
                Ok(c) => Some(c),
                Err(e) => {
                    on(Event::Note(&format!("{}: ceilings not measured: {e}", kind.name())));
                    None
                }
            }
        } else {
            None
        };
        for model in &plan.models {
            report.rows.extend(run_model(plan, kind, model, ceiling.as_ref(), on));
        }
        report.ceilings.extend(ceiling);
    }
    report
}

/// Everything about one model on one backend that every row shares.
struct Setup {
    runner: PrismRunner,
    files_cost: WeightCost,
    template: BenchRow,
}

fn setup(plan: &BenchPlan, kind: BackendKind, model: &Path) -> Result<Setup, BenchError> {
    let mut files = ModelFiles::open(model)?;
    if let Some(dtype) = plan.quantize {
        files.quantize(dtype)?;
    }
    let (n_params, size) = files.weights.totals();
    let tests = plan.tests();
    let sizes = RunnerSizes {
        max_prompt: tests.iter().map(|t| t.n_prompt).max().unwrap_or(0),
        max_gen: tests.iter().map(|t| t.n_gen).max().unwrap_or(0),
        max_batch: tests.iter().map(|t| t.batch).max().unwrap_or(1),
    };
    let context = files.config.max_context;
    if sizes.max_prompt.max(sizes.max_gen) > context {
        return Err(BenchError::Plan(format!(
            "tests of {} tokens exceed the model's context of {context}",
            sizes.max_prompt.max(sizes.max_gen)
        )));
    }
    let backend = backend::create(kind, BackendOptions { device: plan.device, threads: plan.threads })?;
    let info = backend.info();
    let files_cost = WeightCost::of(&files);
    let runner = PrismRunner::new(backend, &files, sizes)?;
    let mut template = row_template(plan, kind, model);
    // `auto` rows name the backend it chose.
    template.backend.clone_from(&info.backend);
    template.backends = info.backend;
    template.device = info.device;
    template.model_size = size as u64;
    template.model_n_params = n_params as u64;
    Ok(Setup { runner, files_cost, template })
}

fn row_template(plan: &BenchPlan, kind: BackendKind, model: &Path) -> BenchRow {
    BenchRow {
        model: model.file_name().map_or_else(|| model.display().to_string(), |n| n.to_string_lossy().into()),
        model_filename: model.display().to_string(),
        backend: kind.name().into(),
        backends: kind.name().into(),
        n_threads: plan.effective_threads(),
        reps: plan.reps,
        prism_version: env!("CARGO_PKG_VERSION").into(),
        ..BenchRow::default()
    }
}

fn run_model(
    plan: &BenchPlan,
    kind: BackendKind,
    model: &Path,
    ceiling: Option<&Ceilings>,
    on: &mut dyn FnMut(Event),
) -> Vec<BenchRow> {
    let tests = plan.tests();
    let mut s = match setup(plan, kind, model) {
        Ok(s) => s,
        Err(e) => {
            let error = format!("{e}");
            on(Event::Note(&format!("{} on {}: {error}", model.display(), kind.name())));
            let steps = tests.len() * (plan.reps + 1) + peer_calls(plan, kind, &tests);
            (0..steps).for_each(|_| on(Event::Step("skipped")));
            let template = row_template(plan, kind, model);
            let failed = BenchRow { unix_time: unix_now(), ..template };
            return tests.iter().map(|t| with_test(&failed, t, Some(error.clone()))).collect();
        }
    };
    tests.iter().map(|t| run_test(plan, kind, model, &mut s, ceiling, t, on)).collect()
}

fn peer_calls(plan: &BenchPlan, kind: BackendKind, tests: &[TestSpec]) -> usize {
    if plan.peers.iter().any(|p| p.applies_to(kind)) { tests.len() * plan.reps } else { 0 }
}

fn with_test(template: &BenchRow, t: &TestSpec, error: Option<String>) -> BenchRow {
    BenchRow {
        test: t.name(),
        n_prompt: t.n_prompt,
        n_gen: t.n_gen,
        n_batch: t.batch,
        error,
        ..template.clone()
    }
}

/// The peer to run beside `t`, `Ok(None)` when none was asked for, or why it is skipped.
fn peer_for<'p>(
    plan: &'p BenchPlan,
    kind: BackendKind,
    model: &Path,
    t: &TestSpec,
) -> Result<Option<&'p PeerSpec>, String> {
    let Some(peer) = plan.peers.iter().find(|p| p.applies_to(kind)) else { return Ok(None) };
    if !model.is_file() {
        return Err(format!(
            "skipped: llama-bench needs a GGUF file and {} is a Hugging Face directory",
            model.display()
        ));
    }
    if plan.quantize.is_some() {
        return Err(
            "skipped: --quantize changes prism's weights, llama-bench would run the file as is".into()
        );
    }
    if t.batch > 1 {
        return Err("skipped: llama-bench times one sequence (compare the n_batch 1 rows)".into());
    }
    Ok(Some(peer))
}

#[allow(clippy::too_many_arguments)]
fn run_test(
    plan: &BenchPlan,
    kind: BackendKind,
    model: &Path,
    s: &mut Setup,
    ceiling: Option<&Ceilings>,
    t: &TestSpec,
    on: &mut dyn FnMut(Event),
) -> BenchRow {
    let mut row = with_test(&s.template, t, None);
    let label = format!("{} {} {} b{}", row.model, row.backend, row.test, t.batch);
    let peer = peer_for(plan, kind, model, t);
    let has_peer = plan.peers.iter().any(|p| p.applies_to(kind));
    row.peer = has_peer.then(|| "llama.cpp".to_string());
    let peer_test = PeerTest {
        n_prompt: t.n_prompt,
        n_gen: t.n_gen,
        threads: plan.effective_threads(),
        gpu_layers: if row.backend == BackendKind::Cpu.name() { 0 } else { 99 },
    };
    let mut secs = Vec::with_capacity(plan.reps);
    let mut peer_runs: Vec<PeerSample> = Vec::new();
    let mut peer_error = peer.as_ref().err().cloned();
    for rep in 0..=plan.reps {
        let timed = if t.n_prompt > 0 {
            s.runner.prefill_once(t.n_prompt)
        } else {
            s.runner.decode_once(t.n_gen, t.batch)
        };
        on(Event::Step(&format!("{label} rep {rep}/{}", plan.reps)));
        match timed {
            Ok(dt) if rep > 0 => secs.push(dt),
            Ok(_) => {}
            Err(e) => {
                row.error = Some(e.to_string());
                break;
            }
        }
        if rep == 0 || !has_peer {
            continue;
        }
        // Interleaved: one llama-bench repetition after each timed prism repetition.
        if let (Ok(Some(p)), None) = (&peer, &peer_error) {
            match p.run_once(model, peer_test) {
                Ok(sample) => peer_runs.push(sample),
                Err(e) => peer_error = Some(e),
            }
        }
        on(Event::Step(&format!("{label} llama.cpp rep {rep}/{}", plan.reps)));
    }
    if let Some(r) = s.runner.backend().profile_report() {
        on(Event::Note(&format!("profile of {label} (all repetitions):\n{r}")));
    }
    let tokens = (t.n_prompt + t.n_gen * t.batch) as f64;
    row.samples_ts = secs.iter().map(|dt| tokens / dt).collect();
    if let (None, Some(st)) = (&row.error, Stats::of(&row.samples_ts)) {
        fill_prism(&mut row, st, &s.files_cost, s.runner.max_step(), t, ceiling);
        if t.n_prompt > 0 {
            row.ttft_ms = Stats::of(&secs).map(|d| d.median * 1e3);
        }
    }
    // Skips are listed once under the table; failures are worth saying now.
    if let Some(e) = peer_error.as_ref().filter(|e| !e.starts_with("skipped")) {
        on(Event::Note(&format!("{label}: llama.cpp failed: {e}")));
    }
    fill_peer(&mut row, &peer_runs, peer_error);
    row.unix_time = unix_now();
    row
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fill_prism(
    row: &mut BenchRow,
    st: Stats,
    cost: &WeightCost,
    max_step: usize,
    t: &TestSpec,
    c: Option<&Ceilings>,
) {
    row.median_ts = Some(st.median);
    row.avg_ts = Some(st.mean);
    row.min_ts = Some(st.min);
    row.max_ts = Some(st.max);
    row.stddev_ts = Some(st.stddev);
    let (bytes, flops) =
        if t.n_prompt > 0 { cost.prefill(t.n_prompt, max_step) } else { cost.decode(t.n_gen, t.batch) };
    let rep_secs = (t.n_prompt + t.n_gen * t.batch) as f64 / st.median;
    let (gbps, gflops) = (bytes / rep_secs / 1e9, flops / rep_secs / 1e9);
    row.gbps = Some(gbps);
    row.gflops = Some(gflops);
    if let Some(c) = c {
        row.ceiling_gbps = Some(c.copy_gbps.median);
        row.ceiling_gflops = Some(c.gemm_gflops.median);
        row.pct_ceiling_gbps = Some(100.0 * gbps / c.copy_gbps.median);
        row.pct_ceiling_gflops = Some(100.0 * gflops / c.gemm_gflops.median);
    }
}

fn fill_peer(row: &mut BenchRow, runs: &[PeerSample], error: Option<String>) {
    row.peer_samples_ts = runs.iter().flat_map(|r| r.samples_ts.iter().copied()).collect();
    if let Some(first) = runs.first() {
        row.peer_backends = Some(first.backends.clone());
        row.peer_build = Some(first.build_commit.clone());
    }
    if let Some(st) = Stats::of(&row.peer_samples_ts) {
        row.peer_median_ts = Some(st.median);
        row.peer_avg_ts = Some(st.mean);
        row.peer_stddev_ts = Some(st.stddev);
        row.ratio = row.median_ts.map(|m| m / st.median);
    }
    row.peer_error = error;
}

/// The backends `--backend all` means: the CPU and every GPU backend that probes OK here, with a note
/// for each one left out.
pub fn available_backends(threads: usize, mut note: impl FnMut(String)) -> Vec<BackendKind> {
    let mut kinds = Vec::new();
    for report in backend::probe_all(threads) {
        match report.devices {
            Ok(devs) if !devs.is_empty() => kinds.push(report.kind),
            Ok(_) => note(format!("{}: no device, skipped", report.kind.name())),
            Err(why) => note(format!("{}: not available, skipped: {why}", report.kind.name())),
        }
    }
    // CPU first, then the GPUs in `prism devices` order reversed (wgpu, hip, cuda).
    kinds.reverse();
    kinds
}

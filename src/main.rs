//! The `prism` command line: `serve`, `run`, `devices`, `bench`, `pull`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use prism::backend::{self, BackendKind, BackendOptions, DType};
use prism::bench::{self, BenchPlan, Event, peer::PeerSpec};
use prism::engine::config::GenerationDefaults;
use prism::engine::generate::{Engine, EngineOptions, GenerateParams, ModelFiles};
use prism::engine::pull;
use prism::engine::sampling::SamplingParams;
use prism::engine::scheduler::SchedulerConfig;
use prism::engine::tokenizer::ChatMessage;
use prism::server::{self, ModelSpec, ServeOptions};

#[derive(Parser)]
#[command(name = "prism", version, about = "LLM inference on every GPU vendor, and the CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve models over an OpenAI-compatible HTTP API with continuous batching.
    Serve(ServeArgs),
    /// Generate a completion and stream it to stdout (statistics go to stderr).
    Run(RunArgs),
    /// List every backend, its devices, and why an unavailable one cannot run.
    Devices {
        /// CPU threads to report (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Measure prefill (pp) and decode (tg) tokens/s, like llama-bench.
    Bench(BenchArgs),
    /// Compile the HIP/CUDA kernels ahead of time.
    Kernels {
        #[command(subcommand)]
        command: KernelsCommand,
    },
    /// Fetch a known model (default: smollm2) into the user cache, verify it, print its path.
    Pull {
        /// Model name.
        #[arg(default_value = "smollm2")]
        name: String,
    },
}

#[derive(Subcommand)]
enum KernelsCommand {
    /// Compile every kernel for each architecture into the kernel cache (no GPU needed): gfx… through
    /// hiprtc, sm_… through NVRTC. Fails with the compiler's log when a kernel does not compile.
    Build {
        /// Comma-separated architectures, e.g. gfx90a,gfx1030,sm_80,sm_90.
        #[arg(long, value_delimiter = ',', required = true)]
        arch: Vec<String>,
    },
}

/// Where and how a model runs.
#[derive(Args)]
struct DeviceArgs {
    /// Model: a GGUF file, a Hugging Face directory (config.json, *.safetensors, tokenizer.json), or
    /// the name of a known model (`smollm2`). Default: SmolLM2-135M-Instruct, pulled if absent.
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    #[command(flatten)]
    load: LoadArgs,
}

/// How a model is loaded onto its backend (`run` and `bench`).
#[derive(Args)]
struct LoadArgs {
    /// Device index within the backend.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// CPU threads of the CPU backend (and of llama-bench in `bench`) (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
    /// Quantize f32/f16/bf16 weight matrices at load time (llama.cpp block layout; `bench` then skips
    /// its peer).
    #[arg(long, value_parser = ["q8_0", "q4_0", "q4_1"])]
    quantize: Option<String>,
}

impl LoadArgs {
    fn quantize_dtype(&self) -> Option<DType> {
        self.quantize.as_deref().map(|q| match q {
            "q8_0" => DType::Q8_0,
            "q4_0" => DType::Q4_0,
            _ => DType::Q4_1,
        })
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    dev: DeviceArgs,
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy. Default: the model's generation_config, else 0.8.
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling: keep the most probable tokens up to this total probability.
    #[arg(long)]
    top_p: Option<f32>,
    /// Keep only the K most probable tokens (0 = off).
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep tokens at least this fraction as probable as the best one.
    #[arg(long)]
    min_p: Option<f32>,
    /// Repetition penalty (1 = off).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Presence penalty (OpenAI semantics).
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Frequency penalty (OpenAI semantics).
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Random seed: the same seed gives the same output on the same backend.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string is generated (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Do not stop at EOS.
    #[arg(long)]
    ignore_eos: bool,
    /// Send PROMPT as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Print the prompt and generated token ids as JSON on stderr.
    #[arg(long)]
    show_ids: bool,
    /// The prompt ("-" reads standard input).
    prompt: String,
}

#[derive(Args)]
struct ServeArgs {
    /// A model to serve, as PATH[@backend:device] (e.g. `model.gguf@cpu:0`, `dir@cuda:0`); repeatable.
    /// PATH may also be a known model name. Default: SmolLM2-135M-Instruct on `auto`, pulled if absent.
    #[arg(long, short = 'm')]
    model: Vec<String>,
    /// Backend of models given without `@backend` (and of the default model).
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port (0 picks a free one; the address is printed on stderr).
    #[arg(long, short = 'p', default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on the API routes.
    #[arg(long, env = "PRISM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// CPU threads of CPU backends (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
    /// Most sequences decoding together per model.
    #[arg(long, default_value_t = 64)]
    max_seqs: usize,
    /// Most token rows in one forward step (prefill chunk size).
    #[arg(long, default_value_t = 512)]
    max_step_tokens: usize,
    /// KV-cache positions per model, shared by all sequences (at least one context is allocated).
    #[arg(long, default_value_t = 16384)]
    kv_tokens: usize,
    /// Positions per KV-cache block.
    #[arg(long, default_value_t = 16)]
    block_size: usize,
    /// Requests that may wait per model before answering 429.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Seconds a request may take before it is cut off (504, or an error event in a stream).
    #[arg(long, default_value_t = 600.0)]
    request_timeout: f64,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
}

/// `prism bench`: llama-bench-style tests over several models and backends.
#[derive(Args)]
struct BenchArgs {
    /// Model (GGUF file, HF directory or known name); repeatable. Default: SmolLM2-135M-Instruct.
    #[arg(long, short = 'm')]
    model: Vec<PathBuf>,
    /// Backends, comma-separated (cpu, wgpu, hip, cuda, auto), or `all`: the CPU and every GPU backend
    /// that starts here.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    backend: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
    /// Prompt lengths of the prefill tests, comma-separated (0 = none).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    n_prompt: Vec<usize>,
    /// Generation lengths of the decode tests, comma-separated (0 = none).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Sequences decoding together in the decode tests, comma-separated (aggregate tokens/s).
    #[arg(short = 'b', long = "batch", value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Timed repetitions (after one warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Print the rows as a JSON array instead of the table.
    #[arg(long)]
    json: bool,
    /// Write the rows as CSV to FILE (`-` or no value: to stdout instead of the table).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    csv: Option<PathBuf>,
    /// Draw a bar chart of tokens/s per model, test and backend (peers beside) into FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// A peer measured in the same run, interleaved repetition by repetition: `llama.cpp=PATH`
    /// (PATH: llama-bench or a directory holding it), or `BACKEND:llama.cpp=PATH` for one backend's
    /// rows only; repeatable.
    #[arg(long)]
    peer: Vec<String>,
    /// Measure each backend's ceilings first (a large copy, a large GEMM); rows then show % of them.
    /// Without --model, only the ceilings are measured.
    #[arg(long)]
    ceilings: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Run(a) => run(a),
        Command::Devices { threads } => devices(threads),
        Command::Bench(a) => bench_cmd(a),
        Command::Kernels { command: KernelsCommand::Build { arch } } => kernels_build(&arch),
        Command::Pull { name } => pull_cmd(&name).map(|path| println!("{}", path.display())),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Fetches (or verifies the cached copy of) a known model, with a progress bar on stderr.
fn pull_cmd(name: &str) -> Result<PathBuf> {
    let model = pull::find(name)?;
    let bar = ProgressBar::new_spinner();
    let path = pull::pull(model, |event| match event {
        pull::PullEvent::Phase(phase, total) => {
            match total {
                Some(n) => {
                    bar.set_length(n);
                    bar.set_style(
                        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                            .expect("static template"),
                    );
                }
                None => bar.enable_steady_tick(std::time::Duration::from_millis(120)),
            }
            bar.set_position(0);
            bar.set_message(format!("{phase} {}", model.description));
        }
        pull::PullEvent::Progress(n) => bar.set_position(n),
    });
    bar.finish_and_clear();
    let path = path?;
    eprintln!("{}: {}", model.name, path.display());
    Ok(path)
}

/// The model path `--model` means: a path as given, a known model's name, or the default model —
/// pulling a known model into the cache first when it is not there.
fn resolve_model(arg: Option<&Path>) -> Result<PathBuf> {
    match arg {
        Some(p) if p.exists() => Ok(p.to_path_buf()),
        Some(p) => match p.to_str().map(pull::find) {
            Some(Ok(known)) => pull_cmd(known.name),
            _ => bail!("model {} does not exist (nor is it a known model name)", p.display()),
        },
        None => pull_cmd(pull::default_model().name),
    }
}

fn open_model(dev: &DeviceArgs) -> Result<(PathBuf, ModelFiles)> {
    let path = resolve_model(dev.model.as_deref())?;
    let mut files = ModelFiles::open(&path).with_context(|| format!("loading model {}", path.display()))?;
    if let Some(dtype) = dev.load.quantize_dtype() {
        let t0 = std::time::Instant::now();
        let n = files.quantize(dtype)?;
        eprintln!("quantized {n} weight matrices to {dtype} in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok((path, files))
}

fn start_engine(dev: &DeviceArgs, files: ModelFiles, context: usize) -> Result<Engine> {
    let opts = BackendOptions { device: dev.load.device, threads: dev.load.threads };
    let backend = backend::create(dev.backend, opts)?;
    let info = backend.info();
    tracing::info!(backend = info.backend, device = info.device, "backend ready");
    let engine_opts = EngineOptions { context, ..EngineOptions::default() };
    Ok(Engine::new(backend, files, engine_opts)?)
}

/// CLI flags first, then the model's generation_config, then llama.cpp's defaults.
fn sampling_params(a: &RunArgs, d: &GenerationDefaults) -> SamplingParams {
    let greedy_default = d.do_sample == Some(false);
    let temperature = a.temperature.or(if greedy_default { Some(0.0) } else { d.temperature }).unwrap_or(0.8);
    SamplingParams {
        temperature,
        top_k: a.top_k.or(d.top_k).unwrap_or(40),
        top_p: a.top_p.or(d.top_p).unwrap_or(0.95),
        min_p: a.min_p.or(d.min_p).unwrap_or(0.05),
        repetition_penalty: a.repeat_penalty.or(d.repetition_penalty).unwrap_or(1.0),
        presence_penalty: a.presence_penalty,
        frequency_penalty: a.frequency_penalty,
        seed: a.seed,
    }
}

fn run(a: RunArgs) -> Result<()> {
    let (_, files) = open_model(&a.dev)?;
    let prompt = if a.prompt == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the prompt from stdin")?
    } else {
        a.prompt.clone()
    };
    let tok = &files.tokenizer;
    let prompt_ids = if a.chat {
        let mut messages = Vec::new();
        if let Some(system) = &a.system {
            messages.push(ChatMessage { role: "system".into(), content: system.clone() });
        }
        messages.push(ChatMessage { role: "user".into(), content: prompt });
        let rendered = tok.apply_chat_template(&messages, true)?;
        tok.encode(&rendered, false)?
    } else {
        tok.encode(&prompt, true)?
    };
    let max_context = files.config.max_context;
    if prompt_ids.len() + a.max_tokens > max_context {
        bail!(
            "prompt of {} tokens + --max-tokens {} exceeds the model's context of {max_context}",
            prompt_ids.len(),
            a.max_tokens
        );
    }
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: sampling_params(&a, &files.defaults),
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
    };
    let mut engine = start_engine(&a.dev, files, prompt_ids.len() + a.max_tokens)?;
    let mut stdout = std::io::stdout().lock();
    let out = engine.generate(&prompt_ids, &params, |piece| {
        // A closed pipe (e.g. `| head`) is not an error worth crashing over.
        let _ = stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush());
    })?;
    if stdout.is_terminal() && !out.text.ends_with('\n') {
        let _ = writeln!(stdout);
    }
    drop(stdout);
    if a.show_ids {
        let ids = serde_json::json!({ "input_ids": out.prompt_ids, "generated_ids": out.ids });
        eprintln!("ids: {ids}");
    }
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | finish: {:?} | {}",
        out.prompt_ids.len(),
        out.prefill_tps(),
        out.ids.len(),
        out.decode_tps(),
        out.finish,
        engine.backend.info().device,
    );
    Ok(())
}

fn serve(a: ServeArgs) -> Result<()> {
    let mut models = Vec::new();
    for m in &a.model {
        let mut spec = ModelSpec::parse(m).map_err(anyhow::Error::msg)?;
        spec.path = resolve_model(Some(&spec.path))?;
        if spec.backend == BackendKind::Auto {
            spec.backend = a.backend;
        }
        models.push(spec);
    }
    if models.is_empty() {
        let path = resolve_model(None)?;
        models.push(ModelSpec { path, backend: a.backend, device: 0 });
    }
    let opts = ServeOptions {
        models,
        addr: std::net::SocketAddr::new(a.host, a.port),
        api_key: a.api_key,
        threads: a.threads,
        sizes: SchedulerConfig {
            max_seqs: a.max_seqs,
            max_step_tokens: a.max_step_tokens,
            block_size: a.block_size,
            kv_tokens: a.kv_tokens,
        },
        max_queue: a.max_queue,
        request_timeout: std::time::Duration::try_from_secs_f64(a.request_timeout)
            .context("--request-timeout must be a number of seconds >= 0")?,
        max_body_bytes: a.max_body_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::serve(opts))?;
    Ok(())
}

fn devices(threads: usize) -> Result<()> {
    for report in backend::probe_all(threads) {
        match report.devices {
            Ok(devs) => {
                println!("{}: available", report.kind.name());
                for (i, d) in devs.iter().enumerate() {
                    println!("  [{i}] {d}");
                }
            }
            Err(why) => println!("{}: not available: {why}", report.kind.name()),
        }
    }
    Ok(())
}

fn kernels_build(archs: &[String]) -> Result<()> {
    let t0 = std::time::Instant::now();
    let built = backend::hip::kernels::build_all(archs, |b| {
        eprintln!("compiled {} for {} ({} bytes)", b.name, b.arch, b.bytes);
    })
    .map_err(|log| anyhow::anyhow!("kernel build failed: {log}"))?;
    println!(
        "{} kernel files for {} in {:.1} s, cached in {}",
        built.len(),
        archs.join(","),
        t0.elapsed().as_secs_f64(),
        backend::hip::kernels::cache_dir().display()
    );
    Ok(())
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    let backends = bench_backends(&a.backend, a.load.threads)?;
    let mut models = Vec::new();
    for m in &a.model {
        models.push(resolve_model(Some(m))?);
    }
    if models.is_empty() && !a.ceilings {
        models.push(resolve_model(None)?);
    }
    let peers = a.peer.iter().map(|p| PeerSpec::parse(p)).collect::<Result<Vec<_>, _>>()?;
    let plan = BenchPlan {
        models,
        backends,
        device: a.load.device,
        threads: a.load.threads,
        quantize: a.load.quantize_dtype(),
        n_prompt: a.n_prompt.clone(),
        n_gen: a.n_gen.clone(),
        batches: a.batch.clone(),
        reps: a.reps,
        peers,
        ceilings: a.ceilings,
    };
    plan.validate()?;
    let bar = ProgressBar::new(plan.total_steps()).with_style(
        ProgressStyle::with_template("{spinner} bench [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("static template"),
    );
    let load_before = load_average();
    let report = bench::run(&plan, &mut |event| match event {
        Event::Step(msg) => {
            bar.set_message(msg.to_string());
            bar.inc(1);
        }
        Event::Note(msg) => bar.suspend(|| eprintln!("{msg}")),
    });
    bar.finish_and_clear();
    let rows = &report.rows;
    let csv_to_stdout = a.csv.as_deref() == Some(Path::new("-"));
    if a.json {
        let out = if plan.models.is_empty() {
            serde_json::to_string_pretty(&report.ceilings)?
        } else {
            serde_json::to_string_pretty(rows)?
        };
        println!("{out}");
    } else if csv_to_stdout {
        print!("{}", bench::output::csv(rows));
    } else {
        if !report.ceilings.is_empty() {
            println!("{}", bench::output::ceilings_table(&report.ceilings));
        }
        if !rows.is_empty() {
            print!("{}", bench::output::table(rows));
        }
        if let (Some(before), Some(after)) = (load_before, load_average()) {
            println!("load average (1, 5, 15 min): {before} before, {after} after");
        }
    }
    if let Some(path) = a.csv.as_deref().filter(|_| !csv_to_stdout) {
        std::fs::write(path, bench::output::csv(rows))
            .with_context(|| format!("writing the CSV to {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.plot {
        let mut devices: Vec<String> = rows
            .iter()
            .filter(|r| !r.device.is_empty())
            .map(|r| format!("{}: {}", r.backend, r.device.chars().take(40).collect::<String>()))
            .collect();
        devices.dedup();
        let title = format!("prism bench, median of {} repetitions; {}", plan.reps, devices.join("; "));
        bench::plot::write_svg(rows, &title, path)?;
        eprintln!("wrote {}", path.display());
    }
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} bench rows failed (see their error)", rows.len());
    }
    if plan.ceilings && report.ceilings.len() < plan.backends.len() {
        bail!("ceilings could not be measured on every backend (see above)");
    }
    Ok(())
}

/// The system's load average (Linux), to judge how quiet the machine was while timing.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// `--backend` values: `all` (every available backend), or names.
fn bench_backends(names: &[String], threads: usize) -> Result<Vec<BackendKind>> {
    let mut kinds = Vec::new();
    for name in names {
        if name == "all" {
            kinds.extend(bench::available_backends(threads, |note| eprintln!("{note}")));
            continue;
        }
        let kind = <BackendKind as clap::ValueEnum>::from_str(name, true).map_err(|_| {
            anyhow::anyhow!("unknown backend `{name}`: expected all, auto, cpu, wgpu, hip or cuda")
        })?;
        kinds.push(kind);
    }
    kinds.dedup();
    Ok(kinds)
}

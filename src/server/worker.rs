//! One served model: its engine thread (which owns the backend and runs the scheduler), its load state,
//! and the channel requests go through; plus the per-request event stream that feeds the metrics.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::metrics::ModelMetrics;
use super::openai::ApiError;
use crate::backend::{self, BackendKind, BackendOptions};
use crate::engine::config::GenerationDefaults;
use crate::engine::generate::ModelFiles;
use crate::engine::scheduler::{EventSink, Gauges, Scheduler, SchedulerConfig, SeqEvent, SeqRequest};
use crate::engine::tokenizer::Tokenizer;

/// `--model PATH[@backend:device]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Model file or directory.
    pub path: PathBuf,
    /// Backend.
    pub backend: BackendKind,
    /// Device index.
    pub device: usize,
}

impl ModelSpec {
    /// Parses `PATH`, `PATH@backend` or `PATH@backend:N` (backend: auto, cpu, wgpu, hip, cuda).
    pub fn parse(s: &str) -> Result<ModelSpec, String> {
        if let Some((path, target)) = s.rsplit_once('@') {
            let (name, dev) = target.split_once(':').unwrap_or((target, "0"));
            let backend = <BackendKind as clap::ValueEnum>::from_str(name, true);
            if let Ok(backend) = backend {
                let device = dev.parse().map_err(|_| format!("bad device index `{dev}` in `{s}`"))?;
                return Ok(ModelSpec { path: path.into(), backend, device });
            }
        }
        Ok(ModelSpec { path: s.into(), backend: BackendKind::Auto, device: 0 })
    }

    /// `backend:device`.
    pub fn target(&self) -> String {
        format!("{}:{}", self.backend.name(), self.device)
    }
}

/// What the HTTP side needs of a loaded model.
pub struct Loaded {
    /// Shared with the engine thread.
    pub tokenizer: Arc<Tokenizer>,
    /// Positions per sequence.
    pub context: usize,
    /// Sampling defaults.
    pub defaults: GenerationDefaults,
    /// Backend device description.
    pub device: String,
    gauges: Arc<Gauges>,
}

/// One model served by the process.
pub struct ModelHandle {
    /// The name requests use in `model`.
    pub name: String,
    /// Where it runs.
    pub spec: ModelSpec,
    /// Load outcome: unset while loading.
    pub state: OnceLock<Result<Loaded, String>>,
    /// HTTP-side metrics.
    pub metrics: ModelMetrics,
    max_queue: usize,
    requests: Mutex<Option<std::sync::mpsc::Sender<SeqRequest>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ModelHandle {
    /// Starts the model's engine thread, which creates the backend (this waits for that, so an
    /// unavailable backend is reported at start-up) and then loads the model; the handle is `Loading`
    /// until that finishes.
    pub fn start(
        name: String,
        spec: ModelSpec,
        threads: usize,
        sizes: SchedulerConfig,
        max_queue: usize,
    ) -> Result<Arc<ModelHandle>, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = Arc::new(ModelHandle {
            name,
            spec,
            state: OnceLock::new(),
            metrics: ModelMetrics::default(),
            max_queue,
            requests: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
        });
        let h = handle.clone();
        let (created_tx, created_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("engine-{}", handle.name))
            .spawn(move || {
                // The backend is made on this thread: the CPU backend enrolls its creator in its pool.
                let opts = BackendOptions { device: h.spec.device, threads };
                let backend = match backend::create(h.spec.backend, opts) {
                    Ok(b) => {
                        let _ = created_tx.send(Ok(()));
                        b
                    }
                    Err(e) => {
                        let _ = created_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let t0 = Instant::now();
                let loaded = ModelFiles::open(&h.spec.path)
                    .map_err(|e| e.to_string())
                    .and_then(|files| Scheduler::new(backend, files, sizes).map_err(|e| e.to_string()));
                match loaded {
                    Ok(sched) => {
                        let device = sched.backend_info().device;
                        tracing::info!(
                            model = h.name,
                            device,
                            secs = t0.elapsed().as_secs_f64(),
                            "model loaded"
                        );
                        let _ = h.state.set(Ok(Loaded {
                            tokenizer: sched.tokenizer(),
                            context: sched.context(),
                            defaults: sched.defaults().clone(),
                            device,
                            gauges: sched.gauges(),
                        }));
                        sched.serve(rx);
                    }
                    Err(e) => {
                        tracing::error!(model = h.name, error = e, "model failed to load");
                        eprintln!("error: model {} ({}) failed to load: {e}", h.name, h.spec.path.display());
                        let _ = h.state.set(Err(e));
                    }
                }
            })
            .map_err(|e| format!("cannot start the engine thread: {e}"))?;
        let created = created_rx.recv().unwrap_or_else(|_| Err("the engine thread died".into()));
        if let Err(e) = created {
            let _ = thread.join();
            return Err(e);
        }
        *handle.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(handle)
    }

    /// The loaded model, or 503 while loading / after a failed load.
    pub fn loaded(&self) -> Result<&Loaded, ApiError> {
        match self.state.get() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("model {} failed to load: {e}", self.name),
            )
            .kind("server_error")),
            None => {
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("model {} is loading", self.name))
                    .kind("server_error")
                    .retry_after(5))
            }
        }
    }

    /// Live gauges, once loaded.
    pub fn gauges(&self) -> Option<&Gauges> {
        self.state.get().and_then(|s| s.as_ref().ok()).map(|l| &*l.gauges)
    }

    /// Hands a request to the engine: 429 when the queue is full, 503 when shutting down.
    pub fn submit(self: &Arc<Self>, mut req: SeqRequest, arrived: Instant) -> Result<Stream, ApiError> {
        let loaded = self.loaded()?;
        let queued = &loaded.gauges.queued;
        if queued.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the queue of model {} is full ({} requests waiting); retry later",
                    self.name, self.max_queue
                ),
            )
            .kind("rate_limit_error")
            .retry_after(1));
        }
        let (tx, rx) = unbounded_channel();
        req.sink = Box::new(ChannelSink(tx));
        let prompt_tokens = req.prompt_ids.len();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|s| s.send(req).is_ok());
        if !sent {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")
                .kind("server_error"));
        }
        self.metrics.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        Ok(Stream { rx, model: self.clone(), arrived, last: None })
    }

    /// Closes the request channel and waits for the engine thread to finish what it runs.
    pub fn shutdown(&self) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// A sink that feeds a tokio channel; closed when the request's receiver is dropped (client gone).
struct ChannelSink(UnboundedSender<SeqEvent>);

impl EventSink for ChannelSink {
    fn send(&self, event: SeqEvent) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The events of one request, timing tokens into the model's histograms as they arrive. Dropping it
/// cancels the sequence.
pub struct Stream {
    rx: UnboundedReceiver<SeqEvent>,
    model: Arc<ModelHandle>,
    arrived: Instant,
    last: Option<Instant>,
}

impl Stream {
    /// The model the request runs on.
    pub fn model(&self) -> &Arc<ModelHandle> {
        &self.model
    }

    /// The next event; `None` if the engine dropped the request without a word (it does not).
    pub async fn next(&mut self) -> Option<SeqEvent> {
        let ev = self.rx.recv().await?;
        if let SeqEvent::Token { .. } = ev {
            let now = Instant::now();
            let metrics = &self.model.metrics;
            match self.last {
                None => metrics.ttft.observe((now - self.arrived).as_secs_f64()),
                Some(prev) => metrics.itl.observe((now - prev).as_secs_f64()),
            }
            self.last = Some(now);
            metrics.generation_tokens.fetch_add(1, Ordering::Relaxed);
        }
        Some(ev)
    }
}

/// A sink placeholder for requests built before [`ModelHandle::submit`] attaches the real one.
pub struct NoSink;

impl EventSink for NoSink {
    fn send(&self, _: SeqEvent) -> bool {
        false
    }
    fn is_closed(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse_backend_and_device() {
        let p = |s: &str| ModelSpec::parse(s).unwrap();
        assert_eq!(p("m.gguf"), ModelSpec { path: "m.gguf".into(), backend: BackendKind::Auto, device: 0 });
        assert_eq!(
            p("m.gguf@cuda:1"),
            ModelSpec { path: "m.gguf".into(), backend: BackendKind::Cuda, device: 1 }
        );
        assert_eq!(p("dir@wgpu"), ModelSpec { path: "dir".into(), backend: BackendKind::Wgpu, device: 0 });
        assert_eq!(p("a@b/m"), ModelSpec { path: "a@b/m".into(), backend: BackendKind::Auto, device: 0 });
        assert!(ModelSpec::parse("m@cpu:x").is_err());
        assert_eq!(p("m@cpu:0").target(), "cpu:0");
    }
}

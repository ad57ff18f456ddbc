//! The OpenAI-compatible HTTP server (`prism serve`): one engine thread per served model, an axum router,
//! API-key and body-size protection, and graceful shutdown that lets in-flight streams finish.

mod handlers;
mod metrics;
pub mod openai;
mod sse;
pub mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use thiserror::Error;

use crate::engine::scheduler::SchedulerConfig;
use metrics::RequestCounts;
pub use worker::{ModelHandle, ModelSpec};

/// Errors of starting the server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// No model could be started.
    #[error("no model could be started: {0}")]
    NoModel(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Models and where each runs.
    pub models: Vec<ModelSpec>,
    /// Address to bind (127.0.0.1 by default).
    pub addr: SocketAddr,
    /// Required `Authorization: Bearer` key, if any.
    pub api_key: Option<String>,
    /// CPU threads for CPU backends (0 = all cores).
    pub threads: usize,
    /// Batch and KV-cache sizes of each engine.
    pub sizes: SchedulerConfig,
    /// Requests that may wait per model before 429.
    pub max_queue: usize,
    /// Requests give up after this long (504, or an error event in a stream).
    pub request_timeout: Duration,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
}

/// Shared by every handler.
pub struct AppState {
    models: Vec<Arc<ModelHandle>>,
    api_key: Option<String>,
    requests: RequestCounts,
    request_timeout: Duration,
    next_id: AtomicU64,
    started: u64,
}

/// The name a model is served under: its directory or file stem.
fn served_name(path: &Path) -> String {
    let name = if path.is_file() { path.file_stem() } else { path.file_name() };
    name.map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Starts an engine per model (reporting at once those whose backend cannot start), binds, serves
/// until SIGINT/SIGTERM, lets in-flight requests finish, then stops the engines.
pub async fn serve(opts: ServeOptions) -> Result<(), ServerError> {
    let mut handles: Vec<Arc<ModelHandle>> = Vec::new();
    let mut failures = Vec::new();
    for spec in &opts.models {
        // A name two models would share is replaced by `PATH@backend:device` for each.
        let mut name = served_name(&spec.path);
        if opts.models.iter().filter(|s| served_name(&s.path) == name).count() > 1 {
            name = format!("{}@{}", spec.path.display(), spec.target());
        }
        match ModelHandle::start(name.clone(), spec.clone(), opts.threads, opts.sizes, opts.max_queue) {
            Ok(h) => {
                eprintln!("model {name}: loading {} on {}", spec.path.display(), spec.target());
                handles.push(h);
            }
            Err(e) => {
                eprintln!("error: model {name} on {}: {e}", spec.target());
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    if handles.is_empty() {
        return Err(ServerError::NoModel(failures.join("; ")));
    }
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let state = Arc::new(AppState {
        models: handles.clone(),
        api_key: opts.api_key.clone().filter(|k| !k.is_empty()),
        requests: RequestCounts::default(),
        request_timeout: opts.request_timeout,
        next_id: AtomicU64::new(0),
        started,
    });
    let app = router(state.clone(), opts.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ServerError::Bind { addr: opts.addr, source })?;
    let addr = listener.local_addr()?;
    eprintln!("listening on http://{addr}");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    eprintln!("shutting down: in-flight requests finished; stopping engines");
    drop(state);
    for h in &handles {
        h.shutdown();
    }
    Ok(())
}

/// The routes, with the API-key check and response counting on every route and the body-size limit.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/v1/inference", post(handlers::inference))
        .route("/v1/models", get(handlers::models))
        .route("/tokenize", post(handlers::tokenize))
        .route("/detokenize", post(handlers::detokenize))
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), handlers::guard))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("signal received: no new connections; finishing in-flight requests");
}

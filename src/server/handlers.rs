//! HTTP endpoints: completions, chat, inference, models, tokenize/detokenize, health, metrics; plus the
//! middleware that checks the API key and counts responses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::metrics::{self, ModelSample};
use super::openai::{
    ApiError, ChatRequest, CommonParams, CompletionRequest, Content, Message, Prompt, parse_body,
};
use super::sse::{Api, Meta, stream_response, whole_response};
use super::worker::{ModelHandle, NoSink};
use crate::engine::scheduler::SeqRequest;
use crate::engine::tokenizer::{ChatMessage, Tokenizer};

type App = State<Arc<AppState>>;

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError::new(r.status(), r.body_text()))
}

/// The parsed body and its size in bytes.
fn read_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<(T, usize), ApiError> {
    let bytes = body_bytes(body)?;
    Ok((parse_body(&bytes)?, bytes.len()))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs a handler body and turns its error into an OpenAI-shaped response.
fn answer(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

impl AppState {
    /// The model a request names (the first served model when it names none); 404 for unknown names.
    pub fn model(&self, name: Option<&str>) -> Result<&Arc<ModelHandle>, ApiError> {
        match name {
            None => {
                self.models.first().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no model is served"))
            }
            Some(n) => self.models.iter().find(|m| m.name == n).ok_or_else(|| {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("The model `{n}` does not exist (served: {names:?})"),
                )
                .code("model_not_found")
            }),
        }
    }
}

fn encode(tok: &Tokenizer, text: &str, special: bool) -> Result<Vec<u32>, ApiError> {
    tok.encode(text, special).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn ids_in_vocab(tok: &Tokenizer, ids: &[i64], param: &str) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|&i| {
            u32::try_from(i).ok().filter(|&i| (i as usize) < tok.vocab_size()).ok_or_else(|| {
                ApiError::bad_param(
                    param,
                    format!("token id {i} is outside the vocabulary of {}", tok.vocab_size()),
                )
            })
        })
        .collect()
}

/// The prompt ids of a completion request.
fn completion_prompt(tok: &Tokenizer, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
    let one =
        || ApiError::bad_param("prompt", "batched prompts are not supported: send one prompt per request");
    match prompt {
        Prompt::Text(t) => encode(tok, t, true),
        Prompt::Ids(ids) => ids_in_vocab(tok, ids, "prompt"),
        Prompt::Texts(v) if v.len() == 1 => encode(tok, &v[0], true),
        Prompt::IdLists(v) if v.len() == 1 => ids_in_vocab(tok, &v[0], "prompt"),
        _ => Err(one()),
    }
}

/// The prompt ids of a chat request: the model's chat template with the generation prompt; a model
/// without a template (base models such as stories260K) gets the messages' texts joined by newlines.
fn chat_prompt(tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_param("messages", "`messages` must hold at least one message"));
    }
    let mut msgs = Vec::with_capacity(messages.len());
    for m in messages {
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => s.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad_param(
                                "messages",
                                format!("content part `{kind}` is not supported (only `text`)"),
                            ));
                        }
                    }
                }
                s
            }
        };
        msgs.push(ChatMessage::new(m.role.clone(), content));
    }
    if tok.has_chat_template() {
        let rendered = tok
            .apply_chat_template(&msgs, true)
            .map_err(|e| ApiError::bad_param("messages", format!("chat template: {e}")))?;
        encode(tok, &rendered, false)
    } else {
        let joined: Vec<&str> = msgs.iter().map(|m| m.content.as_str()).collect();
        encode(tok, &joined.join("\n"), true)
    }
}

/// Bodies above this are tokenized as blocking work (other requests move to another runtime worker);
/// smaller ones are quicker to tokenize than to hand off (and handing off spawns threads).
const HEAVY_BODY_BYTES: usize = 64 << 10;

/// Runs `f` on this runtime worker, or as blocking work when `body_len` makes it slow.
fn maybe_blocking<T>(body_len: usize, f: impl FnOnce() -> T) -> T {
    if body_len > HEAVY_BODY_BYTES { tokio::task::block_in_place(f) } else { f() }
}

/// Validates and submits one generation request.
fn generate(
    app: &AppState,
    api: Api,
    common: &CommonParams,
    prompt: impl FnOnce(&Tokenizer) -> Result<Vec<u32>, ApiError>,
    top_logprobs: Option<usize>,
    arrived: Instant,
    body_len: usize,
) -> Result<(Meta, super::worker::Stream), ApiError> {
    maybe_blocking(body_len, || prepare(app, api, common, prompt, top_logprobs, arrived))
}

fn prepare(
    app: &AppState,
    api: Api,
    common: &CommonParams,
    prompt: impl FnOnce(&Tokenizer) -> Result<Vec<u32>, ApiError>,
    top_logprobs: Option<usize>,
    arrived: Instant,
) -> Result<(Meta, super::worker::Stream), ApiError> {
    let handle = app.model(common.model.as_deref())?;
    let loaded = handle.loaded()?;
    let prompt_ids = prompt(&loaded.tokenizer)?;
    if prompt_ids.is_empty() {
        return Err(ApiError::bad_param("prompt", "the prompt is empty"));
    }
    let params = common.to_generate(&loaded.defaults, prompt_ids.len(), loaded.context)?;
    let n = app.next_id.fetch_add(1, Ordering::Relaxed);
    let prefix = if api == Api::Chat { "chatcmpl" } else { "cmpl" };
    let meta = Meta {
        id: format!("{prefix}-{n}"),
        created: now_secs(),
        model: handle.name.clone(),
        logprobs: top_logprobs.is_some(),
        include_usage: common.include_usage(),
    };
    tracing::debug!(id = meta.id, model = meta.model, prompt = prompt_ids.len(), "request");
    let req = SeqRequest {
        prompt_ids,
        params,
        top_logprobs,
        deadline: Some(arrived + app.request_timeout),
        sink: Box::new(NoSink),
    };
    Ok((meta, handle.submit(req, arrived)?))
}

async fn respond(
    api: Api,
    stream: bool,
    started: Result<(Meta, super::worker::Stream), ApiError>,
) -> Response {
    match started {
        Err(e) => e.into_response(),
        Ok((meta, events)) if stream => stream_response(api, meta, events),
        Ok((meta, events)) => answer(whole_response(api, meta, events).await),
    }
}

/// `POST /v1/completions`.
pub async fn completions(State(app): App, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    let (req, len) = match read_body::<CompletionRequest>(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let started = (|| {
        if req.echo {
            return Err(ApiError::bad_param("echo", "`echo` is not supported"));
        }
        let k = super::openai::top_logprobs("logprobs", req.logprobs)?;
        generate(&app, Api::Completion, &req.common, |t| completion_prompt(t, &req.prompt), k, arrived, len)
    })();
    respond(Api::Completion, req.common.stream, started).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(app): App, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    let (req, len) = match read_body::<ChatRequest>(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let started = (|| {
        let k = super::openai::top_logprobs("top_logprobs", req.top_logprobs)?;
        if k.is_some() && !req.logprobs {
            return Err(ApiError::bad_param("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
        }
        let k = if req.logprobs { Some(k.unwrap_or(0)) } else { None };
        generate(&app, Api::Chat, &req.common, |t| chat_prompt(t, &req.messages), k, arrived, len)
    })();
    respond(Api::Chat, req.common.stream, started).await
}

/// `POST /v1/inference`: `{"prompt", "max_tokens", ...}` answered as an SSE stream of
/// `{"token", "token_id"}` events, then `{"finish_reason", "usage"}` and `[DONE]`.
pub async fn inference(State(app): App, body: Result<Bytes, BytesRejection>) -> Response {
    let arrived = Instant::now();
    let (req, len) = match read_body::<CompletionRequest>(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let started = generate(
        &app,
        Api::Inference,
        &req.common,
        |t| completion_prompt(t, &req.prompt),
        None,
        arrived,
        len,
    );
    respond(Api::Inference, true, started).await
}

/// `GET /v1/models`.
pub async fn models(State(app): App) -> Response {
    let data: Vec<Value> = app
        .models
        .iter()
        .map(|m| {
            let loaded = m.loaded().ok();
            json!({"id": m.name, "object": "model", "created": app.started, "owned_by": "prism",
                   "max_model_len": loaded.map(|l| l.context), "backend": m.spec.target(),
                   "device": loaded.map(|l| l.device.clone()), "ready": loaded.is_some()})
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

#[derive(Deserialize)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    add_special_tokens: Option<bool>,
}

/// `POST /tokenize`: `{"prompt"}` or `{"messages"}` → `{"tokens", "count", "max_model_len"}`.
pub async fn tokenize(State(app): App, body: Result<Bytes, BytesRejection>) -> Response {
    let (req, len): (TokenizeRequest, usize) = match read_body(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    answer(maybe_blocking(len, || {
        let handle = app.model(req.model.as_deref())?;
        let loaded = handle.loaded()?;
        let tok = &loaded.tokenizer;
        let tokens = match (&req.prompt, &req.messages) {
            (Some(p), None) => encode(tok, p, req.add_special_tokens.unwrap_or(true))?,
            (None, Some(m)) => chat_prompt(tok, m)?,
            _ => return Err(ApiError::bad_param("prompt", "give exactly one of `prompt` or `messages`")),
        };
        let body = json!({"tokens": tokens, "count": tokens.len(), "max_model_len": loaded.context});
        Ok(axum::Json(body).into_response())
    }))
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<i64>,
}

/// `POST /detokenize`: `{"tokens"}` → `{"prompt"}`.
pub async fn detokenize(State(app): App, body: Result<Bytes, BytesRejection>) -> Response {
    answer((|| {
        let req: DetokenizeRequest = parse_body(&body_bytes(body)?)?;
        let loaded = app.model(req.model.as_deref())?.loaded()?;
        let ids = ids_in_vocab(&loaded.tokenizer, &req.tokens, "tokens")?;
        let text = loaded
            .tokenizer
            .decode(&ids, false)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(axum::Json(json!({ "prompt": text })).into_response())
    })())
}

/// `GET /health`: 200 when every model is loaded; 503 while one loads or when one failed.
pub async fn health(State(app): App) -> Response {
    let mut ok = true;
    let models: serde_json::Map<String, Value> = app
        .models
        .iter()
        .map(|m| {
            let s = match m.state.get() {
                None => "loading".to_string(),
                Some(Ok(_)) => "ready".to_string(),
                Some(Err(e)) => format!("failed: {e}"),
            };
            ok &= s == "ready";
            (m.name.clone(), Value::String(s))
        })
        .collect();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({"status": if ok { "ok" } else { "unavailable" }, "models": models});
    (status, axum::Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): App) -> Response {
    let samples: Vec<ModelSample> = app
        .models
        .iter()
        .map(|m| {
            let g = m.gauges();
            let load = |f: fn(&crate::engine::scheduler::Gauges) -> usize| g.map_or(0, f);
            ModelSample {
                labels: format!("model=\"{}\",device=\"{}\"", metrics::escape(&m.name), m.spec.target()),
                metrics: &m.metrics,
                ready: g.is_some(),
                queued: load(|g| g.queued.load(Ordering::Relaxed)),
                running: load(|g| g.running.load(Ordering::Relaxed)),
                kv_blocks: (
                    load(|g| g.kv_used_blocks.load(Ordering::Relaxed)),
                    load(|g| g.kv_total_blocks.load(Ordering::Relaxed)),
                ),
                preemptions: g.map_or(0, |g| g.preemptions.load(Ordering::Relaxed)),
                cancelled: g.map_or(0, |g| g.cancelled.load(Ordering::Relaxed)),
                cached_tokens: g.map_or(0, |g| g.cached_tokens.load(Ordering::Relaxed)),
            }
        })
        .collect();
    let text = metrics::render(&app.requests, &samples);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Unknown paths.
pub async fn not_found(req: Request) -> Response {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {} {}", req.method(), req.uri().path()))
        .into_response()
}

/// Checks `Authorization: Bearer KEY` (when a key is set; `/health` and `/metrics` stay open) and counts
/// every response by endpoint and status.
pub async fn guard(State(app): App, req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map_or("other", |p| p.as_str()).to_string();
    let open = matches!(endpoint.as_str(), "/health" | "/metrics");
    let authorized = match &app.api_key {
        Some(key) if !open => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k.trim() == key),
        _ => true,
    };
    let resp = if authorized {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "Incorrect or missing API key (Authorization: Bearer KEY)")
            .code("invalid_api_key")
            .into_response()
    };
    app.requests.record(&endpoint, resp.status().as_u16());
    resp
}

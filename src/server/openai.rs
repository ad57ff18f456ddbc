//! OpenAI wire types: request bodies, their validation into engine parameters, response and error JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::config::GenerationDefaults;
use crate::engine::generate::GenerateParams;
use crate::engine::sampling::SamplingParams;
use crate::engine::sequence::TokenLogprobs;
use crate::engine::tokenizer::Tokenizer;

/// An error answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}` with a status.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI `type` (`invalid_request_error`, ...).
    pub kind: &'static str,
    /// The offending parameter, if one.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status and message, type `invalid_request_error`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }
    /// 400 about one parameter.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        ApiError { param: Some(param.into()), ..Self::new(StatusCode::BAD_REQUEST, message) }
    }
    /// With a `code`.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    /// With a `type`.
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }
    /// With a `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Parameters shared by `/v1/completions`, `/v1/chat/completions` and `/v1/inference`.
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    /// Which served model.
    pub model: Option<String>,
    /// Most tokens to generate (default: the rest of the context).
    pub max_tokens: Option<i64>,
    /// Chat's newer name for `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// 0 = greedy; OpenAI allows [0, 2].
    pub temperature: Option<f32>,
    /// Nucleus threshold in (0, 1].
    pub top_p: Option<f32>,
    /// Keep the k best (extension, as vLLM); 0 or -1 = off.
    pub top_k: Option<i64>,
    /// min-p (extension).
    pub min_p: Option<f32>,
    /// HF repetition penalty (extension).
    pub repetition_penalty: Option<f32>,
    /// OpenAI presence penalty in [-2, 2].
    pub presence_penalty: Option<f32>,
    /// OpenAI frequency penalty in [-2, 2].
    pub frequency_penalty: Option<f32>,
    /// Seed of the sampler.
    pub seed: Option<u64>,
    /// Stop strings (at most 4 in OpenAI; more are accepted).
    pub stop: Option<Stop>,
    /// SSE streaming.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Completions per prompt: only 1 is served.
    pub n: Option<i64>,
    /// Keep going past EOS (extension, as vLLM; benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// `prompt` of `/v1/completions`: text, token ids, or a batch of one of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Ids(Vec<i64>),
    /// A list of texts (one is served).
    Texts(Vec<String>),
    /// A list of token-id lists (one is served).
    IdLists(Vec<Vec<i64>>),
}

/// `POST /v1/completions` (and `/v1/inference`).
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Completions API: number of alternatives with log-probabilities (0..=20).
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the output (not supported beyond `false`).
    #[serde(default)]
    pub echo: bool,
    /// Shared parameters.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// Message content: text, or a list of parts of which the `text` ones are used.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// What it says.
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Return log-probabilities of the chosen tokens.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per position (0..=20), needs `logprobs`.
    pub top_logprobs: Option<i64>,
    /// Shared parameters.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// Parses a JSON body into `T`, answering 400 with serde's message when it does not fit.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "invalid JSON body" } else { "invalid request" };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}"))
    })
}

fn in_range(name: &str, v: Option<f32>, lo: f32, hi: f32, lo_open: bool) -> Result<(), ApiError> {
    match v {
        Some(x) if !x.is_finite() || x > hi || x < lo || (lo_open && x == lo) => {
            let open = if lo_open { "(" } else { "[" };
            Err(ApiError::bad_param(name, format!("`{name}` = {x} must be in {open}{lo}, {hi}]")))
        }
        _ => Ok(()),
    }
}

impl CommonParams {
    /// Checks ranges and turns the request into engine parameters for a prompt of `prompt_len` tokens
    /// on a model with `context` positions. Unset sampling fields take the model's
    /// `generation_config.json`, then OpenAI's defaults (temperature 1, top_p 1).
    pub fn to_generate(
        &self,
        defaults: &GenerationDefaults,
        prompt_len: usize,
        context: usize,
    ) -> Result<GenerateParams, ApiError> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::bad_param("n", format!("`n` = {n}: only n = 1 is supported")));
        }
        in_range("temperature", self.temperature, 0.0, 2.0, false)?;
        in_range("top_p", self.top_p, 0.0, 1.0, true)?;
        in_range("min_p", self.min_p, 0.0, 1.0, false)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0, false)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, false)?;
        in_range("repetition_penalty", self.repetition_penalty, 0.0, f32::MAX, true)?;
        let top_k = match self.top_k {
            None | Some(-1) => None,
            Some(k) if k >= 0 => Some(k as usize),
            Some(k) => return Err(ApiError::bad_param("top_k", format!("`top_k` = {k} must be >= -1"))),
        };
        let (name, max) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, m) => ("max_tokens", m),
        };
        let room = context.saturating_sub(prompt_len);
        let max_tokens = match max {
            Some(m) if m < 1 => {
                return Err(ApiError::bad_param(name, format!("`{name}` = {m} must be >= 1")));
            }
            Some(m) => m as usize,
            None => room,
        };
        if prompt_len + max_tokens > context || max_tokens == 0 {
            let msg = format!(
                "This model's maximum context length is {context} tokens. However, you requested \
                 {} tokens ({prompt_len} in the messages, {max_tokens} in the completion). Please reduce \
                 the length of the messages or completion.",
                prompt_len + max_tokens.max(1)
            );
            return Err(ApiError::bad_param(name, msg).code("context_length_exceeded"));
        }
        let greedy_default = defaults.do_sample == Some(false);
        let sampling = SamplingParams {
            temperature: self
                .temperature
                .or(if greedy_default { Some(0.0) } else { defaults.temperature })
                .unwrap_or(1.0),
            top_k: top_k.or(defaults.top_k).unwrap_or(0),
            top_p: self.top_p.or(defaults.top_p).unwrap_or(1.0),
            min_p: self.min_p.or(defaults.min_p).unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.or(defaults.repetition_penalty).unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed,
        };
        sampling.validate().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        Ok(GenerateParams { max_tokens, sampling, stop, ignore_eos: self.ignore_eos })
    }

    /// Whether the stream ends with a `usage` chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

/// Checks a requested number of log-probability alternatives (OpenAI allows 0..=20).
pub fn top_logprobs(name: &str, k: Option<i64>) -> Result<Option<usize>, ApiError> {
    match k {
        None => Ok(None),
        Some(k) if (0..=20).contains(&k) => Ok(Some(k as usize)),
        Some(k) => Err(ApiError::bad_param(name, format!("`{name}` = {k} must be in [0, 20]"))),
    }
}

/// `usage` object; `cached` prompt tokens came from the prefix cache.
pub fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

/// Chat `logprobs.content` entries for some tokens.
pub fn chat_logprobs(tok: &Tokenizer, lps: &[TokenLogprobs]) -> Value {
    let entry = |id: u32, lp: f32| {
        let t = token_text(tok, id);
        json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
    };
    let content: Vec<Value> = lps
        .iter()
        .map(|l| {
            let mut e = entry(l.chosen.0, l.chosen.1);
            e["top_logprobs"] = l.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// Completions `logprobs` object (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) for some
/// tokens whose text starts at `offset` in the completion.
pub fn completion_logprobs(tok: &Tokenizer, lps: &[TokenLogprobs], mut offset: usize) -> Value {
    let (mut tokens, mut token_lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for l in lps {
        let t = token_text(tok, l.chosen.0);
        offsets.push(offset);
        offset += t.len();
        tokens.push(t);
        token_lps.push(l.chosen.1);
        let top: serde_json::Map<String, Value> =
            l.top.iter().map(|&(id, lp)| (token_text(tok, id), json!(lp))).collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets})
}

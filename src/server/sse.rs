//! Turning a request's engine events into answers: SSE chunk streams (completions, chat, inference) that
//! end with `data: [DONE]`, and whole JSON responses for non-streaming requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{Value, json};

use super::openai::{ApiError, chat_logprobs, completion_logprobs, usage};
use super::worker::Stream;
use crate::engine::generate::FinishReason;
use crate::engine::scheduler::SeqEvent;
use crate::engine::sequence::TokenLogprobs;
use crate::engine::tokenizer::Tokenizer;

/// Which API shapes the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`.
    Completion,
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/inference`: bare token events.
    Inference,
}

/// Identity of one response: `id`, `created`, `model`.
#[derive(Clone, Debug)]
pub struct Meta {
    /// `cmpl-N` / `chatcmpl-N`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// Whether log-probabilities were asked for.
    pub logprobs: bool,
    /// Whether a streamed answer ends with a usage chunk.
    pub include_usage: bool,
}

fn timeout_error() -> ApiError {
    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the request timed out before generation finished")
        .kind("timeout_error")
}

fn engine_error(msg: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg).kind("server_error")
}

struct SseState {
    api: Api,
    meta: Meta,
    tokenizer: Arc<Tokenizer>,
    events: Stream,
    out: VecDeque<Event>,
    done: bool,
    text_offset: usize,
}

impl SseState {
    fn chunk(&self, choice: Value) -> Value {
        let object = if self.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" };
        json!({"id": self.meta.id, "object": object, "created": self.meta.created, "model": self.meta.model,
               "choices": [choice]})
    }

    fn push(&mut self, v: Value) {
        self.out.push_back(Event::default().data(v.to_string()));
    }

    fn text(&mut self, id: Option<u32>, text: String, lp: Option<TokenLogprobs>) {
        if text.is_empty() && lp.is_none() {
            return;
        }
        let tok = &self.tokenizer;
        let v = match self.api {
            Api::Inference => json!({"token": text, "token_id": id}),
            Api::Completion => {
                let lps = lp.map(|l| completion_logprobs(tok, &[l], self.text_offset));
                self.chunk(json!({"index": 0, "text": text, "logprobs": lps, "finish_reason": null}))
            }
            Api::Chat => {
                let lps = lp.map(|l| chat_logprobs(tok, &[l]));
                self.chunk(
                    json!({"index": 0, "delta": {"content": text}, "logprobs": lps, "finish_reason": null}),
                )
            }
        };
        self.text_offset += text.len();
        self.push(v);
    }

    fn on_event(&mut self, ev: Option<SeqEvent>) {
        match ev {
            Some(SeqEvent::Token { id, text, logprobs }) => self.text(Some(id), text, logprobs),
            Some(SeqEvent::Done { finish: FinishReason::Timeout, .. }) => self.fail(timeout_error()),
            Some(SeqEvent::Done { finish, text, prompt_tokens, completion_tokens, cached_tokens }) => {
                self.text(None, text, None);
                let reason = finish.openai_name();
                let u = usage(prompt_tokens, completion_tokens, cached_tokens);
                match self.api {
                    Api::Inference => self.push(json!({"finish_reason": reason, "usage": u})),
                    Api::Completion => {
                        let c = self.chunk(
                            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason}),
                        );
                        self.push(c)
                    }
                    Api::Chat => {
                        let c = self.chunk(
                            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}),
                        );
                        self.push(c)
                    }
                }
                if self.meta.include_usage && self.api != Api::Inference {
                    let mut c = self.chunk(Value::Null);
                    c["choices"] = json!([]);
                    c["usage"] = u;
                    self.push(c);
                }
                self.finish();
            }
            Some(SeqEvent::Error(msg)) => self.fail(engine_error(msg)),
            None => self.fail(engine_error("the engine stopped".into())),
        }
    }

    fn fail(&mut self, e: ApiError) {
        self.push(e.body());
        self.finish();
    }

    fn finish(&mut self) {
        self.out.push_back(Event::default().data("[DONE]"));
        self.done = true;
    }
}

/// An SSE response that streams the request's tokens. Dropping it (client gone) cancels the sequence.
pub fn stream_response(api: Api, meta: Meta, events: Stream) -> Response {
    let tokenizer = events.model().loaded().map(|l| l.tokenizer.clone());
    let Ok(tokenizer) = tokenizer else { return engine_error("model unloaded".into()).into_response() };
    let mut state =
        SseState { api, meta, tokenizer, events, out: VecDeque::new(), done: false, text_offset: 0 };
    if api == Api::Chat {
        let first = state
            .chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                                        "finish_reason": null}));
        state.push(first);
    }
    let s = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(e), st));
            }
            if st.done {
                return None;
            }
            let ev = st.events.next().await;
            st.on_event(ev);
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// Waits for the whole generation and answers it as one JSON object.
pub async fn whole_response(api: Api, meta: Meta, mut events: Stream) -> Result<Response, ApiError> {
    let tokenizer = events.model().loaded()?.tokenizer.clone();
    let (mut text, mut lps) = (String::new(), Vec::new());
    let (finish, prompt_tokens, completion_tokens, cached_tokens) = loop {
        match events.next().await {
            Some(SeqEvent::Token { text: t, logprobs, .. }) => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            Some(SeqEvent::Done { finish: FinishReason::Timeout, .. }) => return Err(timeout_error()),
            Some(SeqEvent::Done { finish, text: t, prompt_tokens, completion_tokens, cached_tokens }) => {
                text.push_str(&t);
                break (finish, prompt_tokens, completion_tokens, cached_tokens);
            }
            Some(SeqEvent::Error(msg)) => return Err(engine_error(msg)),
            None => return Err(engine_error("the engine stopped".into())),
        }
    };
    let u = usage(prompt_tokens, completion_tokens, cached_tokens);
    let reason = finish.openai_name();
    let (object, choice) = match api {
        Api::Chat => {
            let lp = meta.logprobs.then(|| chat_logprobs(&tokenizer, &lps));
            (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                                        "logprobs": lp, "finish_reason": reason}),
            )
        }
        _ => {
            let lp = meta.logprobs.then(|| completion_logprobs(&tokenizer, &lps, 0));
            ("text_completion", json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": reason}))
        }
    };
    let body = json!({"id": meta.id, "object": object, "created": meta.created, "model": meta.model,
                      "choices": [choice], "usage": u});
    Ok(axum::Json(body).into_response())
}

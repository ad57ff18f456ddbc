//! Text ↔ token ids: a Hugging Face `tokenizers` pipeline with the model's BOS/EOS policy, chat templates
//! rendered by minijinja the way transformers' `apply_chat_template` renders them, and incremental
//! (streaming) detokenization that reproduces a full `decode` exactly.
//!
//! Sources, for a Hugging Face directory ([`Tokenizer::from_dir`]):
//!
//! | file                     | what is read                                                          |
//! |--------------------------|-----------------------------------------------------------------------|
//! | `tokenizer.json`         | the pipeline (required)                                               |
//! | `tokenizer_config.json`  | `bos_token`, `eos_token`, `add_bos_token`, `add_eos_token`, `chat_template` |
//! | `chat_template.jinja`    | the chat template (takes precedence over `tokenizer_config.json`)     |
//! | `generation_config.json`, `config.json` | `eos_token_id` (an int or a list), added to the EOS set |
//!
//! [`crate::engine::tokenizer_gguf::tokenizer_from_gguf`] builds the same [`Tokenizer`] from GGUF metadata
//! with [`Tokenizer::from_parts`].

use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Result type of this module.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Name under which the chat template is stored in its minijinja environment.
const TEMPLATE_NAME: &str = "chat_template";

/// Everything that can go wrong while loading a tokenizer, tokenizing or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required file does not exist.
    #[error("{}: file not found", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The unreadable file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid JSON, or a field has the wrong type or value.
    #[error("{origin}: {msg}")]
    Invalid {
        /// The file (or other source, e.g. "GGUF metadata") at fault.
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// The chat template does not compile.
    #[error("chat template from {origin} does not compile: {msg}")]
    TemplateSyntax {
        /// Where the template came from.
        origin: String,
        /// The compiler's message, with the line.
        msg: String,
    },
    /// Rendering the chat template failed (including `raise_exception(msg)` calls in the template).
    #[error("chat template from {origin}: render error: {msg}")]
    TemplateRender {
        /// Where the template came from.
        origin: String,
        /// The renderer's message; for `raise_exception`, the template's own message.
        msg: String,
    },
    /// [`Tokenizer::apply_chat_template`] was called but the model has no chat template.
    #[error(
        "this model has no chat template (none in tokenizer_config.json, chat_template.jinja or the GGUF metadata)"
    )]
    NoChatTemplate,
    /// GGUF tokenizer metadata is missing, has the wrong type, or holds an unusable value
    /// (see [`crate::engine::tokenizer_gguf::tokenizer_from_gguf`]).
    #[error("GGUF metadata `{key}`: {msg}")]
    GgufMetadata {
        /// The metadata key at fault (e.g. `tokenizer.ggml.tokens`).
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// The `tokenizers` pipeline failed to encode.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// The `tokenizers` pipeline failed to decode.
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// The model-level facts a `tokenizer.json` does not carry, gathered from config files or GGUF metadata.
#[derive(Clone, Debug, Default)]
pub struct TokenizerSpec {
    /// BOS token text (e.g. `<s>`), resolved to an id through the vocabulary; also `bos_token` in templates.
    pub bos_token: Option<String>,
    /// EOS token text (e.g. `</s>`); its id is the first of [`Tokenizer::eos_ids`]; `eos_token` in templates.
    pub eos_token: Option<String>,
    /// Further ids that end generation (`eos_token_id` of `generation_config.json`, GGUF `eot`/`eom` ids).
    pub extra_eos_ids: Vec<u32>,
    /// Prepend BOS when encoding with special tokens, unless the post-processor already adds it.
    pub add_bos: bool,
    /// Append EOS when encoding with special tokens, unless the post-processor already adds it.
    pub add_eos: bool,
    /// Jinja chat template source.
    pub chat_template: Option<String>,
    /// Where the chat template came from, for error messages, when not from `origin`.
    pub chat_template_origin: Option<String>,
    /// Where these facts came from (a file path or "GGUF metadata"), used in error messages.
    pub origin: String,
}

/// One chat message, as the OpenAI API and chat templates see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template and where it came from.
struct ChatTemplate {
    env: Environment<'static>,
    origin: String,
}

/// A tokenizer: the `tokenizers` pipeline plus BOS/EOS policy, special-token facts and the chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    bos_id: Option<u32>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    /// BOS must be prepended by us (the config asks for it and the post-processor does not add it).
    prepend_bos: bool,
    /// EOS must be appended by us (likewise).
    append_eos: bool,
    special: HashSet<u32>,
    /// Per id: the token is a `<0xNN>` byte token *and* the decoder groups such tokens (ByteFallback).
    byte_token: Vec<bool>,
    vocab_size: usize,
    template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &(&self.bos_token, self.bos_id))
            .field("eos", &(&self.eos_token, &self.eos_ids))
            .field("prepend_bos", &self.prepend_bos)
            .field("append_eos", &self.append_eos)
            .field("chat_template", &self.template.as_ref().map(|t| &t.origin))
            .finish_non_exhaustive()
    }
}

// ----------------------------------------------------------------------------------------------------
// Loading
// ----------------------------------------------------------------------------------------------------

/// Reads a file to a string; `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TokenizerError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// An [`TokenizerError::Invalid`] naming `path`.
fn bad(path: &Path, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid { origin: path.display().to_string(), msg: msg.into() }
}

/// Reads and parses an optional JSON object file.
fn read_json_object(path: &Path) -> Result<Option<serde_json::Map<String, Json>>> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    match serde_json::from_str::<Json>(&text) {
        Ok(Json::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(bad(path, "invalid JSON: expected an object at the top level")),
        Err(e) => Err(bad(path, format!("invalid JSON: {e}"))),
    }
}

/// A special token field: a string, an `{"content": ...}` object (AddedToken), or null/absent.
fn token_field(map: &serde_json::Map<String, Json>, key: &str, path: &Path) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(o)) if o.get("content").is_some_and(Json::is_string) => {
            Ok(o.get("content").and_then(Json::as_str).map(str::to_string))
        }
        Some(other) => {
            Err(bad(path, format!("`{key}`: expected a string or {{\"content\": ...}}, found {other}")))
        }
    }
}

/// A boolean field; null/absent is `false`.
fn bool_field(map: &serde_json::Map<String, Json>, key: &str, path: &Path) -> Result<bool> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(path, format!("`{key}`: expected a boolean, found {other}"))),
    }
}

/// `chat_template` of `tokenizer_config.json`: a string, or a list of `{name, template}` (the "default" one).
fn template_field(map: &serde_json::Map<String, Json>, path: &Path) -> Result<Option<String>> {
    match map.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            for item in list {
                match (item.get("name").and_then(Json::as_str), item.get("template").and_then(Json::as_str)) {
                    (Some("default"), Some(t)) => return Ok(Some(t.to_string())),
                    (Some(_), Some(_)) => {}
                    _ => return Err(bad(path, "`chat_template`: list entries must be {name, template}")),
                }
            }
            tracing::warn!(file = %path.display(), "chat_template list has no \"default\" entry; ignored");
            Ok(None)
        }
        Some(_) => Err(bad(path, "`chat_template`: expected a string or a list of {name, template}")),
    }
}

/// `eos_token_id` of a config file: an integer or a list of integers.
fn eos_id_field(map: &serde_json::Map<String, Json>, path: &Path) -> Result<Vec<u32>> {
    let as_id = |v: &Json| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let err = || bad(path, "`eos_token_id`: expected a token id or a list of token ids");
    match map.get("eos_token_id") {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(list)) => list.iter().map(|v| as_id(v).ok_or_else(err)).collect(),
        Some(v) => Ok(vec![as_id(v).ok_or_else(err)?]),
    }
}

impl Tokenizer {
    /// Loads a tokenizer from a Hugging Face model directory (see the module docs for the files read).
    /// Only `tokenizer.json` is required.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let tok_path = dir.join("tokenizer.json");
        let Some(tok_json) = read_optional(&tok_path)? else {
            return Err(TokenizerError::Missing { path: tok_path });
        };
        let inner = guarded(|| tokenizers::Tokenizer::from_bytes(tok_json.as_bytes()))
            .map_err(|msg| bad(&tok_path, format!("not a valid tokenizer: {msg}")))?;

        let cfg_path = dir.join("tokenizer_config.json");
        let mut spec = TokenizerSpec { origin: cfg_path.display().to_string(), ..TokenizerSpec::default() };
        if let Some(cfg) = read_json_object(&cfg_path)? {
            spec.bos_token = token_field(&cfg, "bos_token", &cfg_path)?;
            spec.eos_token = token_field(&cfg, "eos_token", &cfg_path)?;
            spec.add_bos = bool_field(&cfg, "add_bos_token", &cfg_path)?;
            spec.add_eos = bool_field(&cfg, "add_eos_token", &cfg_path)?;
            spec.chat_template = template_field(&cfg, &cfg_path)?;
        }
        let jinja_path = dir.join("chat_template.jinja");
        if let Some(t) = read_optional(&jinja_path)? {
            spec.chat_template = Some(t);
            spec.chat_template_origin = Some(jinja_path.display().to_string());
        }
        for name in ["generation_config.json", "config.json"] {
            let path = dir.join(name);
            if let Some(cfg) = read_json_object(&path)? {
                spec.extra_eos_ids.extend(eos_id_field(&cfg, &path)?);
            }
        }
        Self::from_parts(inner, spec)
    }

    /// Builds a tokenizer from a `tokenizers` pipeline and the model-level facts in `spec`.
    /// Compiles the chat template now, so syntax errors surface here.
    pub fn from_parts(inner: tokenizers::Tokenizer, spec: TokenizerSpec) -> Result<Tokenizer> {
        let invalid = |msg: String| TokenizerError::Invalid { origin: spec.origin.clone(), msg };
        let bos_id = spec.bos_token.as_deref().and_then(|t| inner.token_to_id(t));
        if spec.add_bos && bos_id.is_none() {
            return Err(invalid(format!(
                "add_bos_token is set but the BOS token {:?} is not in the vocabulary",
                spec.bos_token.as_deref().unwrap_or("(none)")
            )));
        }
        let eos_token_id = spec.eos_token.as_deref().and_then(|t| inner.token_to_id(t));
        if spec.add_eos && eos_token_id.is_none() {
            return Err(invalid(format!(
                "add_eos_token is set but the EOS token {:?} is not in the vocabulary",
                spec.eos_token.as_deref().unwrap_or("(none)")
            )));
        }
        if let (Some(t), None) = (&spec.eos_token, eos_token_id) {
            tracing::warn!(origin = %spec.origin, token = %t, "EOS token is not in the vocabulary; ignored");
        }
        let mut eos_ids: Vec<u32> = Vec::new();
        for id in eos_token_id.into_iter().chain(spec.extra_eos_ids.iter().copied()) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }

        // What does the post-processor add on its own? Probe with the empty string.
        let probe = |special| {
            guarded(|| inner.encode("", special))
                .map(|e| e.get_ids().to_vec())
                .map_err(|m| invalid(format!("probing the post-processor: {m}")))
        };
        let (plain, with_special) = (probe(false)?, probe(true)?);
        let added = with_special.len() > plain.len();
        let post_adds_bos = added && bos_id.is_some() && with_special.first().copied() == bos_id;
        let post_adds_eos = added && eos_token_id.is_some() && with_special.last().copied() == eos_token_id;

        let vocab = inner.get_vocab(true);
        let vocab_size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        let special: HashSet<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        let groups_bytes = inner
            .get_decoder()
            .and_then(|d| serde_json::to_string(d).ok())
            .is_some_and(|s| s.contains("\"ByteFallback\""));
        let mut byte_token = vec![false; vocab_size];
        if groups_bytes {
            for (text, &id) in &vocab {
                let is_byte = text.len() == 6
                    && text.starts_with("<0x")
                    && text.ends_with('>')
                    && text.get(3..5).is_some_and(|h| u8::from_str_radix(h, 16).is_ok());
                if is_byte && !special.contains(&id) {
                    byte_token[id as usize] = true;
                }
            }
        }

        let template = match spec.chat_template {
            Some(source) => {
                Some(ChatTemplate::compile(source, spec.chat_template_origin.unwrap_or(spec.origin))?)
            }
            None => None,
        };
        Ok(Tokenizer {
            inner,
            bos_token: spec.bos_token,
            bos_id,
            eos_token: spec.eos_token,
            eos_ids,
            prepend_bos: spec.add_bos && !post_adds_bos,
            append_eos: spec.add_eos && !post_adds_eos,
            special,
            byte_token,
            vocab_size,
            template,
        })
    }

    // ------------------------------------------------------------------------------------------------
    // Encoding and decoding
    // ------------------------------------------------------------------------------------------------

    /// Tokenizes `text` exactly as Hugging Face's `tokenizer(text, add_special_tokens=...)` does.
    /// Special tokens written in the text (e.g. `<|im_start|>`) become their ids. With
    /// `add_special_tokens`, the post-processor's tokens are added, and BOS/EOS are added when the
    /// config asks for them and the post-processor did not (never twice).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = guarded(|| self.inner.encode(text, add_special_tokens)).map_err(TokenizerError::Encode)?;
        let ids = enc.get_ids();
        if !add_special_tokens {
            return Ok(ids.to_vec());
        }
        let mut out = Vec::with_capacity(ids.len() + 2);
        if let (true, Some(bos)) = (self.prepend_bos, self.bos_id) {
            out.push(bos);
        }
        out.extend_from_slice(ids);
        if let (true, Some(&eos)) = (self.append_eos, self.eos_ids.first()) {
            out.push(eos);
        }
        Ok(out)
    }

    /// Turns ids back into text. With `skip_special_tokens`, special tokens (BOS, EOS, `<|im_end|>`,
    /// ...) are left out. Ids outside the vocabulary are ignored (as the `tokenizers` crate does).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        guarded(|| self.inner.decode(ids, skip_special_tokens)).map_err(TokenizerError::Decode)
    }

    /// The BOS id, when the model has a BOS token in its vocabulary.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The BOS token text, when configured.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS token text, when configured.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Every id that ends generation: the EOS token's first, then the config files' `eos_token_id`s.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// Largest token id + 1, added tokens included (the model's embedding may be larger).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The token string of `id` (e.g. `▁Once`, `<0x0A>`, `<|im_start|>`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether `id` is a special added token (left out by `decode(.., skip_special_tokens = true)`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The underlying `tokenizers` pipeline.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Whether `id` survives `decode(.., skip_special_tokens = skip)` (known and not skipped).
    fn is_decoded(&self, id: u32, skip: bool) -> bool {
        (id as usize) < self.vocab_size
            && !(skip && self.is_special(id))
            && self.inner.id_to_token(id).is_some()
    }

    // ------------------------------------------------------------------------------------------------
    // Chat template
    // ------------------------------------------------------------------------------------------------

    /// Renders `messages` through the model's chat template with the context transformers gives:
    /// `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`, `strftime_now`.
    /// Tokenize the result with `encode(text, false)`: the template already holds the special tokens.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.template.as_ref().ok_or(TokenizerError::NoChatTemplate)?;
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from_serialize(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        if let Some(t) = &self.bos_token {
            ctx.insert("bos_token", Value::from(t.as_str()));
        }
        if let Some(t) = &self.eos_token {
            ctx.insert("eos_token", Value::from(t.as_str()));
        }
        template.render(Value::from_serialize(&ctx))
    }
}

/// Runs a `tokenizers` call, turning both its errors and any panic inside it into a message.
pub(crate) fn guarded<T, E: std::fmt::Display>(
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the tokenizers pipeline panicked".into()),
    }
}

/// A minijinja error with its chain of causes, on one line.
fn describe(err: &minijinja::Error) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

impl ChatTemplate {
    /// Builds an environment configured like transformers' (`trim_blocks`, `lstrip_blocks`, loop
    /// controls, Python string/dict methods, `raise_exception`, `strftime_now`, Python-style `tojson`)
    /// and compiles `source` into it.
    fn compile(source: String, origin: String) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            strftime(&fmt, now.map(|d| d.as_secs() as i64).unwrap_or(0))
        });
        env.add_filter("tojson", py_tojson);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| TokenizerError::TemplateSyntax { origin: origin.clone(), msg: describe(&e) })?;
        Ok(ChatTemplate { env, origin })
    }

    fn render(&self, ctx: Value) -> Result<String> {
        let fail = |e: minijinja::Error| TokenizerError::TemplateRender {
            origin: self.origin.clone(),
            msg: describe(&e),
        };
        self.env.get_template(TEMPLATE_NAME).map_err(fail)?.render(ctx).map_err(fail)
    }
}

/// `tojson` as transformers defines it: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` — `", "`/`": "` separators, no HTML escaping.
fn py_tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        Some(v) if v.as_str().is_some() => Some(v.as_str().unwrap_or_default().to_string()),
        Some(v) if !v.is_none() => Some(" ".repeat(usize::try_from(v)?)),
        _ => None,
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")?.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "separators must be a pair"));
        }
        None => ((if indent.is_some() { "," } else { ", " }).to_string(), ": ".to_string()),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = JsonStyle { indent, item_sep, key_sep, sort_keys, ascii };
    let mut out = String::new();
    style.write(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Python `json.dumps` formatting options.
struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ascii: bool,
}

impl JsonStyle {
    /// A JSON string literal: serde_json escapes exactly what Python does (`"`, `\\`, controls).
    fn string(&self, s: &str) -> String {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        if !self.ascii {
            return quoted;
        }
        let mut out = String::with_capacity(quoted.len());
        for c in quoted.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                c.encode_utf16(&mut [0u16; 2]).iter().for_each(|u| out.push_str(&format!("\\u{u:04x}")));
            }
        }
        out
    }

    /// A scalar as Python writes it (anything that is not a list or a dict becomes a string).
    fn scalar(&self, v: &Value) -> Result<String, minijinja::Error> {
        Ok(match v.kind() {
            ValueKind::Undefined | ValueKind::None => "null".into(),
            ValueKind::Bool => (if v.is_true() { "true" } else { "false" }).into(),
            ValueKind::Number if v.is_integer() => v.to_string(),
            ValueKind::Number => match f64::try_from(v.clone())? {
                f if f.is_nan() => "NaN".into(),
                f if f.is_infinite() => (if f > 0.0 { "Infinity" } else { "-Infinity" }).into(),
                f if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
                f => format!("{f}"),
            },
            ValueKind::String => self.string(v.as_str().unwrap_or_default()),
            _ => self.string(&v.to_string()),
        })
    }

    fn write(&self, v: &Value, level: usize, out: &mut String) -> Result<(), minijinja::Error> {
        let (open, close, is_map) = match v.kind() {
            ValueKind::Map => ('{', '}', true),
            ValueKind::Seq | ValueKind::Iterable => ('[', ']', false),
            _ => {
                out.push_str(&self.scalar(v)?);
                return Ok(());
            }
        };
        let mut items: Vec<Value> = v.try_iter()?.collect();
        if is_map && self.sort_keys {
            items.sort();
        }
        out.push(open);
        let newline = |level: usize, out: &mut String| {
            if let Some(ind) = &self.indent {
                out.push('\n');
                (0..level).for_each(|_| out.push_str(ind));
            }
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(level + 1, out);
            if is_map {
                out.push_str(&self.string(&item.as_str().map_or_else(|| item.to_string(), str::to_string)));
                out.push_str(&self.key_sep);
                self.write(&v.get_item(item)?, level + 1, out)?;
            } else {
                self.write(item, level + 1, out)?;
            }
        }
        if !items.is_empty() {
            newline(level, out);
        }
        out.push(close);
        Ok(())
    }
}

/// Formats a UTC time (seconds since the Unix epoch) like C/Python `strftime`. Supports `%Y %y %m %d %e
/// %H %I %M %S %p %j %a %A %b %h %B %F %T %D %R %w %u %Z %z %%`, and the `-` flag (no padding, e.g.
/// `%-d`). Unknown directives are copied as written. (Python's `strftime_now` uses local time; a
/// server has no better notion of the user's time zone than UTC.)
pub fn strftime(fmt: &str, unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    const MONTHS: &str =
        "January February March April May June July August September October November December";
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let day = doy_mar - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day + i64::from(leap && month > 2);
    let wday = (days + 4).rem_euclid(7) as usize;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS.split(' ').nth((month - 1) as usize).unwrap_or_default();

    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let num = |n: i64, width: usize| if unpadded { n.to_string() } else { format!("{n:0width$}") };
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let piece = match d {
            'Y' => year.to_string(),
            'y' => num(year.rem_euclid(100), 2),
            'm' => num(month, 2),
            'd' => num(day, 2),
            'e' => {
                if unpadded {
                    day.to_string()
                } else {
                    format!("{day:2}")
                }
            }
            'H' => num(hour, 2),
            'I' => num(hour12, 2),
            'M' => num(minute, 2),
            'S' => num(second, 2),
            'p' => (if hour < 12 { "AM" } else { "PM" }).to_string(),
            'j' => num(yday, 3),
            'a' => DAYS[wday][..3].to_string(),
            'A' => DAYS[wday].to_string(),
            'b' | 'h' => month_name.get(..3).unwrap_or_default().to_string(),
            'B' => month_name.to_string(),
            'F' => format!("{year}-{month:02}-{day:02}"),
            'T' => format!("{hour:02}:{minute:02}:{second:02}"),
            'R' => format!("{hour:02}:{minute:02}"),
            'D' => format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            'w' => wday.to_string(),
            'u' => (if wday == 0 { 7 } else { wday }).to_string(),
            'Z' => "UTC".to_string(),
            'z' => "+0000".to_string(),
            '%' => "%".to_string(),
            other => format!("%{}{other}", if unpadded { "-" } else { "" }),
        };
        out.push_str(&piece);
    }
    out
}

// ----------------------------------------------------------------------------------------------------
// Incremental detokenization
// ----------------------------------------------------------------------------------------------------

/// Turns a stream of generated ids into text chunks whose concatenation equals
/// `decode(all_ids, skip_special_tokens)` exactly.
///
/// Technique (prefix/read offsets): keep the ids since the last emission's window start; decode the
/// window before and after the new id and emit the difference. Decoding a window (not a lone token)
/// keeps context-dependent text right: SentencePiece `▁` → space with the decoder's leading `Strip`,
/// byte-level BPE, byte-fallback sequences. Text is held back while
/// - it ends in U+FFFD (an incomplete UTF-8 sequence that later tokens may complete), or
/// - the last decoded token is a `<0xNN>` byte token of a ByteFallback decoder: that decoder turns a
///   whole run of byte tokens into U+FFFDs if any of it is invalid, so a later byte could still change
///   text already decoded (e.g. `<0x0A>` then a lone `<0x80>` decodes as two U+FFFD). This delays such
///   tokens (newlines in Llama 2, the bytes of emoji and CJK) by one token.
///
/// [`StreamDecoder::finish`] flushes whatever is held back.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    /// A decoder for one sequence that leaves special tokens out (like `decode(.., true)`).
    pub fn new() -> Self {
        Self::with_skip_special_tokens(true)
    }

    /// A decoder for one sequence; `skip_special_tokens` as in [`Tokenizer::decode`].
    pub fn with_skip_special_tokens(skip_special_tokens: bool) -> Self {
        StreamDecoder { ids: Vec::new(), prefix_offset: 0, read_offset: 0, skip_special_tokens }
    }

    /// Adds one generated id; returns the text it completes, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let skip = self.skip_special_tokens;
        let last_decoded = self.ids[self.read_offset..].iter().rev().find(|&&i| tok.is_decoded(i, skip));
        match last_decoded {
            None => return Ok(None), // nothing visible since the last emission
            Some(&i) if tok.byte_token.get(i as usize).copied().unwrap_or(false) => return Ok(None),
            Some(_) => {}
        }
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
        let full = tok.decode(&self.ids[self.prefix_offset..], skip)?;
        if full.len() <= prefix.len() || full.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let new = difference(&prefix, &full);
        // Slide the window: it now starts at the tokens that produced this emission.
        let start = self.read_offset;
        self.ids.drain(..start);
        self.prefix_offset = 0;
        self.read_offset = self.ids.len();
        Ok(Some(new))
    }

    /// Flushes text held back (an unfinished character or byte run at the end of generation) and
    /// resets the decoder for reuse.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<Option<String>> {
        let skip = self.skip_special_tokens;
        let result = if self.read_offset < self.ids.len() {
            let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset], skip)?;
            let full = tok.decode(&self.ids[self.prefix_offset..], skip)?;
            Some(difference(&prefix, &full)).filter(|s| !s.is_empty())
        } else {
            None
        };
        self.ids.clear();
        self.prefix_offset = 0;
        self.read_offset = 0;
        Ok(result)
    }
}

/// `full` minus its prefix `prefix`. Decoders used by real models never rewrite the window's earlier
/// text; should one do so, the text after the longest common prefix is returned.
fn difference(prefix: &str, full: &str) -> String {
    if let Some(rest) = full.strip_prefix(prefix) {
        return rest.to_string();
    }
    let common = prefix
        .char_indices()
        .zip(full.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(prefix.len().min(full.len()));
    full.get(common..).unwrap_or_default().to_string()
}

//! A [`Tokenizer`] built from the tokenizer llama.cpp stores in GGUF metadata (`tokenizer.ggml.*`), made to
//! give the ids llama.cpp gives.
//!
//! - `tokenizer.ggml.model = "llama"` (SentencePiece BPE): normalizer `Prepend("▁")` (when
//!   `add_space_prefix`, the default) then `Replace(" ", "▁")`; a BPE model with byte fallback whose merges
//!   are derived from the vocabulary and `tokenizer.ggml.scores`; decoder `Replace("▁", " ")`,
//!   `ByteFallback`, `Fuse` and `Strip` of the prefix space.
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE): pre-tokenizer `Split` by each regex llama.cpp uses
//!   for `tokenizer.ggml.pre` in turn, then `ByteLevel` without its own regex; a BPE model with
//!   `tokenizer.ggml.merges`; decoder `ByteLevel`.
//!
//! In both, control (and unknown) tokens become special added tokens and user-defined tokens plain added
//! tokens, so `<|im_start|>` and the like are recognised in text; BOS/EOS come from a `TemplateProcessing`
//! post-processor when `add_bos_token`/`add_eos_token` ask for them.
//!
//! How llama.cpp's SentencePiece tokenizer maps onto `tokenizers`' BPE: llama.cpp repeatedly merges the
//! adjacent pair whose concatenation is the vocabulary token with the highest score (leftmost first on
//! ties), then writes the characters no token covers as `<0xNN>` byte tokens. That is BPE with one merge
//! per (left, right) split of every token, ranked by the token's score. `tokenizers` ranks merges strictly,
//! so equal scores are ordered longer token first, then longer left part: for runs of one character
//! (`▁▁`, `▁▁▁`, ... share one score in Llama 2) that grows the leftmost symbol first, as llama.cpp does.
//!
//! Not reproduced: SentencePiece's `remove_extra_whitespaces` (llama.cpp does not apply it for `llama`
//! vocabularies either; a Hugging Face `tokenizer.json` converted from a model that sets it collapses
//! spaces where this tokenizer, like llama.cpp, keeps them), and llama.cpp's `parse_special = false` mode
//! (here, as in Hugging Face, special tokens written in the text are always recognised). For "smollm",
//! llama.cpp (like SmolLM2's own `tokenizer.json`) isolates every numeral before GPT-2's regex; a
//! `tokenizer.json` converted back from the GGUF by transformers drops that step, and differs where a
//! non-ASCII numeral follows a space.

use std::collections::HashSet;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::gguf::{Gguf, Value};
use super::tokenizer::{Result, Tokenizer, TokenizerError, TokenizerSpec, guarded};

/// Where the facts come from, in error messages and the [`TokenizerSpec`].
const ORIGIN: &str = "GGUF metadata";

/// The SentencePiece space marker (U+2581).
const SPACE: &str = "\u{2581}";

/// `tokenizer.ggml.token_type` values (llama.cpp's `LLAMA_TOKEN_TYPE_*`).
mod token_type {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 3;
    pub const USER_DEFINED: u8 = 4;
    pub const BYTE: u8 = 6;
}

/// A token id meaning "no such token" (llama.cpp writes `LLAMA_TOKEN_NULL` as `u32` −1).
const NO_TOKEN: u64 = 0xFFFF_FFFF;

/// Tokens llama.cpp treats as end of generation by their text (and forces to control type).
const EOG_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

// ----------------------------------------------------------------------------------------------------
// Pre-tokenizer regexes (as llama.cpp's `llm_tokenizer_bpe` applies them, one after the other; the
// pieces each regex does not match are kept as pieces too)
// ----------------------------------------------------------------------------------------------------

/// GPT-2's regex.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's regex, with the case-insensitive contractions spelled out as llama.cpp does.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's regex: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Every digit on its own (StarCoder, SmolLM).
const DIGIT: &str = r"\p{N}";

/// What a `tokenizer.ggml.pre` name selects.
struct PreTokenizerKind {
    regexes: &'static [&'static str],
    /// A pre-token that is itself in the vocabulary is taken whole, without merges.
    ignore_merges: bool,
    /// Default of `add_bos_token`.
    add_bos: bool,
}

/// llama.cpp's "default" pre-tokenizer, also used when `tokenizer.ggml.pre` is absent.
fn default_pre_tokenizer() -> PreTokenizerKind {
    let regexes = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
    PreTokenizerKind { regexes, ignore_merges: false, add_bos: false }
}

/// The pre-tokenizer llama.cpp uses for `name` (`None`: not supported here).
fn pre_tokenizer_kind(name: &str) -> Option<PreTokenizerKind> {
    let plain = |regexes| PreTokenizerKind { regexes, ignore_merges: false, add_bos: false };
    Some(match name {
        "default" => default_pre_tokenizer(),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            PreTokenizerKind { regexes: &[LLAMA3], ignore_merges: true, add_bos: true }
        }
        "dbrx" | "smaug-bpe" => plain(&[LLAMA3]),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "mpt" | "olmo" | "jais" | "trillion" | "exaone4" | "granite-docling" => plain(&[GPT2]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(&[DIGIT, GPT2])
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "megrez" | "hunyuan" => plain(&[QWEN2]),
        "falcon" => plain(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"]),
        _ => return None,
    })
}

/// The `tokenizer.ggml.pre` names [`tokenizer_from_gguf`] accepts, for error messages.
pub const SUPPORTED_PRE_TOKENIZERS: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "mpt",
    "olmo",
    "jais",
    "trillion",
    "exaone4",
    "granite-docling",
    "starcoder",
    "refact",
    "command-r",
    "smollm",
    "codeshell",
    "exaone",
    "minerva-7b",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "stablelm2",
    "megrez",
    "hunyuan",
    "falcon",
];

// ----------------------------------------------------------------------------------------------------
// Reading the metadata
// ----------------------------------------------------------------------------------------------------

/// A [`TokenizerError::GgufMetadata`] naming `key`.
fn bad(key: &str, msg: impl Into<String>) -> TokenizerError {
    TokenizerError::GgufMetadata { key: key.to_string(), msg: msg.into() }
}

/// A value for a message: its type and a bounded preview.
fn show(v: &Value) -> String {
    let kind = match v {
        Value::U64(_) | Value::I64(_) => "integer",
        Value::F64(_) => "float",
        Value::Bool(_) => "bool",
        Value::Str(_) => "string",
        Value::Array(_) => "array",
    };
    let mut text = v.to_string();
    if text.chars().count() > 48 {
        text = text.chars().take(45).collect::<String>() + "...";
    }
    format!("{kind} {text}")
}

fn opt_str<'a>(g: &'a Gguf, key: &str) -> Result<Option<&'a str>> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(v) => Err(bad(key, format!("expected a string, found {}", show(v)))),
    }
}

fn opt_bool(g: &Gguf, key: &str) -> Result<Option<bool>> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(key, format!("expected a bool, found {}", show(v)))),
    }
}

fn opt_array<'a>(g: &'a Gguf, key: &str) -> Result<Option<&'a [Value]>> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(bad(key, format!("expected an array, found {}", show(v)))),
    }
}

/// A special token id: `Ok(None)` when the key is absent, `Ok(Some(None))` when it says "none"
/// (0xFFFFFFFF or −1), an error when it is not an id of the vocabulary.
fn opt_token_id(g: &Gguf, key: &str, n_tokens: usize) -> Result<Option<Option<u32>>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let id = match *v {
        Value::U64(id) => id,
        Value::I64(-1) => return Ok(Some(None)),
        Value::I64(id) if id >= 0 => id as u64,
        _ => return Err(bad(key, format!("expected a token id, found {}", show(v)))),
    };
    if id == NO_TOKEN || id == u64::MAX {
        return Ok(Some(None));
    }
    if id >= n_tokens as u64 {
        return Err(bad(key, format!("token id {id} is out of range: the vocabulary has {n_tokens} tokens")));
    }
    Ok(Some(Some(id as u32)))
}

/// The vocabulary: token texts, types and scores, indexed by id, and the ids by text (the map the BPE
/// model takes).
struct GgufVocab {
    tokens: Vec<String>,
    types: Vec<u8>,
    scores: Vec<f32>,
    ids: Vocab,
}

const TOKENS: &str = "tokenizer.ggml.tokens";
const TYPES: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";

/// Reads `tokens`, `token_type` and `scores`, checking their types and lengths.
fn read_vocab(g: &Gguf) -> Result<GgufVocab> {
    let list = opt_array(g, TOKENS)?.ok_or_else(|| bad(TOKENS, "missing: the file has no tokenizer"))?;
    if list.is_empty() {
        return Err(bad(TOKENS, "the vocabulary is empty"));
    }
    if list.len() > u32::MAX as usize {
        return Err(bad(TOKENS, format!("{} tokens do not fit 32-bit ids", list.len())));
    }
    let n = list.len();
    let mut tokens = Vec::with_capacity(n);
    let mut ids = Vocab::with_capacity(n);
    for (i, v) in list.iter().enumerate() {
        let Value::Str(s) = v else {
            return Err(bad(TOKENS, format!("token {i}: expected a string, found {}", show(v))));
        };
        // llama.cpp renames empty tokens so that every id has a distinct text.
        let text = if s.is_empty() { format!("[EMPTY_{i}]") } else { s.clone() };
        if let Some(first) = ids.insert(text.clone(), i as u32) {
            return Err(bad(TOKENS, format!("tokens {first} and {i} are both {text:?}")));
        }
        tokens.push(text);
    }

    let types = match opt_array(g, TYPES)? {
        None => vec![token_type::NORMAL; n],
        Some(a) if a.len() != n => {
            return Err(bad(TYPES, format!("{} entries for {n} tokens (`{TOKENS}`)", a.len())));
        }
        Some(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_u64() {
                Some(t @ 1..=6) => Ok(t as u8),
                Some(_) => Ok(token_type::NORMAL), // undefined types: normal, as llama.cpp
                None => Err(bad(TYPES, format!("token {i}: expected an integer, found {}", show(v)))),
            })
            .collect::<Result<Vec<u8>>>()?,
    };

    let scores = match opt_array(g, SCORES)? {
        None => vec![0.0; n],
        Some(a) if a.len() != n => {
            return Err(bad(SCORES, format!("{} entries for {n} tokens (`{TOKENS}`)", a.len())));
        }
        Some(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_f64() {
                Some(s) if s.is_nan() => Ok(f32::NEG_INFINITY),
                Some(s) => Ok(s as f32),
                None => Err(bad(SCORES, format!("token {i}: expected a number, found {}", show(v)))),
            })
            .collect::<Result<Vec<f32>>>()?,
    };
    Ok(GgufVocab { tokens, types, scores, ids })
}

// ----------------------------------------------------------------------------------------------------
// Models
// ----------------------------------------------------------------------------------------------------

/// Longest token (in bytes) that SentencePiece merges may produce. The vocabularies tested stay far below
/// (Llama 2 and Phi-3: 48); the bound keeps a hostile vocabulary from costing time quadratic in
/// its tokens' lengths.
const MAX_MERGED_TOKEN_BYTES: usize = 512;

/// SentencePiece BPE merges derived from the vocabulary: every split of every token into two tokens,
/// ranked by the merged token's score (highest first). Byte tokens take no part: llama.cpp only falls back
/// to them for characters left over after merging.
fn spm_merges(v: &GgufVocab) -> Vec<(String, String)> {
    struct Candidate {
        score: f32,
        chars: usize,
        left_chars: usize,
        id: u32,
        left: u32,
        right: u32,
    }
    let usable = |id: u32| v.types[id as usize] != token_type::BYTE;
    let mut candidates = Vec::new();
    for (id, text) in v.tokens.iter().enumerate() {
        if !usable(id as u32) || text.len() > MAX_MERGED_TOKEN_BYTES {
            continue;
        }
        let chars = text.chars().count();
        for (k, (at, _)) in text.char_indices().enumerate().skip(1) {
            let (l, r) = text.split_at(at);
            if let (Some(&left), Some(&right)) = (v.ids.get(l), v.ids.get(r))
                && usable(left)
                && usable(right)
            {
                let score = v.scores[id];
                candidates.push(Candidate { score, chars, left_chars: k, id: id as u32, left, right });
            }
        }
    }
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.chars.cmp(&a.chars))
            .then(b.left_chars.cmp(&a.left_chars))
            .then(a.id.cmp(&b.id))
    });
    candidates
        .into_iter()
        .map(|c| (v.tokens[c.left as usize].clone(), v.tokens[c.right as usize].clone()))
        .collect()
}

/// `tokenizer.ggml.merges` as (left, right) pairs, in rank order. Entries are split at the first space
/// after the first byte (as llama.cpp does); malformed entries, repeats and merges of tokens that are not
/// in the vocabulary are dropped (llama.cpp can never apply them either).
fn bpe_merges(g: &Gguf, v: &GgufVocab) -> Result<Vec<(String, String)>> {
    let list =
        opt_array(g, MERGES)?.ok_or_else(|| bad(MERGES, "missing (required for `gpt2` tokenizers)"))?;
    let mut seen = HashSet::with_capacity(list.len());
    let mut merges = Vec::with_capacity(list.len());
    let mut dropped = 0usize;
    let mut both = String::new();
    for (i, m) in list.iter().enumerate() {
        let Value::Str(s) = m else {
            return Err(bad(MERGES, format!("merge {i}: expected a string, found {}", show(m))));
        };
        let Some(at) = s.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
            dropped += 1;
            continue;
        };
        let (l, r) = (&s[..at], &s[at + 1..]);
        both.clear();
        both.push_str(l);
        both.push_str(r);
        let pair = match (v.ids.get(l), v.ids.get(r), v.ids.contains_key(both.as_str())) {
            (Some(&a), Some(&b), true) => (a, b),
            _ => {
                dropped += 1;
                continue;
            }
        };
        if !seen.insert(pair) {
            dropped += 1;
            continue;
        }
        merges.push((l.to_string(), r.to_string()));
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            total = list.len(),
            "GGUF merges: ignored malformed, repeated or unknown merges"
        );
    }
    Ok(merges)
}

/// The BPE model; takes the vocabulary's text → id map.
fn build_bpe(
    v: &mut GgufVocab,
    merges: Vec<(String, String)>,
    byte_fallback: bool,
    unk: Option<u32>,
    ignore_merges: bool,
) -> Result<BPE> {
    let unk_token = unk.map(|id| v.tokens[id as usize].clone());
    let mut builder = BPE::builder()
        .vocab_and_merges(std::mem::take(&mut v.ids), merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(byte_fallback)
        .ignore_merges(ignore_merges);
    if let Some(unk) = unk_token {
        builder = builder.unk_token(unk);
    }
    guarded(|| builder.build()).map_err(|m| bad(TOKENS, format!("cannot build the BPE model: {m}")))
}

// ----------------------------------------------------------------------------------------------------
// The pipeline
// ----------------------------------------------------------------------------------------------------

/// Which of llama.cpp's tokenizers the metadata describes.
enum Kind {
    /// `llama`: SentencePiece BPE with byte fallback and scores.
    Spm,
    /// `gpt2`: byte-level BPE with merges, and its pre-tokenizer.
    Bpe(PreTokenizerKind),
}

/// Special ids and flags, after llama.cpp's defaults.
struct Specials {
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
}

fn read_specials(g: &Gguf, kind: &Kind, n: usize) -> Result<Specials> {
    let spm = matches!(kind, Kind::Spm);
    let default = |id: u32| (spm && (id as usize) < n).then_some(id);
    let bos = opt_token_id(g, "tokenizer.ggml.bos_token_id", n)?.unwrap_or(default(1));
    let eos = opt_token_id(g, "tokenizer.ggml.eos_token_id", n)?.unwrap_or(default(2));
    let unk = opt_token_id(g, "tokenizer.ggml.unknown_token_id", n)?.unwrap_or(default(0));
    let eot = opt_token_id(g, "tokenizer.ggml.eot_token_id", n)?.flatten();
    let eom = opt_token_id(g, "tokenizer.ggml.eom_token_id", n)?.flatten();
    // Checked so that a bad id is reported, though the tokenizer does not use them.
    for key in ["padding", "seperator", "separator", "mask"] {
        opt_token_id(g, &format!("tokenizer.ggml.{key}_token_id"), n)?;
    }

    const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    let add_bos = match opt_bool(g, ADD_BOS)? {
        Some(true) if bos.is_none() => {
            return Err(bad(ADD_BOS, "is true but there is no BOS token (`tokenizer.ggml.bos_token_id`)"));
        }
        Some(b) => b,
        None => bos.is_some() && (spm || matches!(kind, Kind::Bpe(p) if p.add_bos)),
    };
    let add_eos = match opt_bool(g, ADD_EOS)? {
        Some(true) if eos.is_none() => {
            return Err(bad(ADD_EOS, "is true but there is no EOS token (`tokenizer.ggml.eos_token_id`)"));
        }
        Some(b) => b,
        None => false,
    };
    let eog = [eot, eom].into_iter().flatten().collect();
    Ok(Specials { bos, eos, unk, eog, add_bos, add_eos })
}

/// A `TemplateProcessing` that adds BOS and/or EOS around each sequence.
fn post_processor(bos: Option<(u32, &str)>, eos: Option<(u32, &str)>) -> Result<Option<TemplateProcessing>> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let template = |seq: &str, type_id: u32| {
        let mut pieces = Vec::new();
        if bos.is_some() {
            pieces.push(format!("BOS:{type_id}"));
        }
        pieces.push(format!("${seq}:{type_id}"));
        if eos.is_some() {
            pieces.push(format!("EOS:{type_id}"));
        }
        pieces.join(" ")
    };
    let mut special = Vec::new();
    for (name, tok) in [("BOS", bos), ("EOS", eos)] {
        if let Some((id, text)) = tok {
            let t = SpecialToken::new(name.into(), vec![id], vec![text.into()])
                .map_err(|e| bad(TOKENS, format!("post-processor: {e}")))?;
            special.push(t);
        }
    }
    TemplateProcessing::builder()
        .try_single(template("A", 0))
        .and_then(|b| b.try_pair(format!("{} {}", template("A", 0), template("B", 1))))
        .map_err(|e| bad(TOKENS, format!("post-processor: {e}")))?
        .special_tokens(special)
        .build()
        .map(Some)
        .map_err(|e| bad(TOKENS, format!("post-processor: {e}")))
}

/// A `Split` pre-tokenizer that keeps both the matches and the text between them.
fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| bad("tokenizer.ggml.pre", format!("regex {regex:?} does not compile: {e}")))
}

/// Builds the tokenizer llama.cpp would use from the `tokenizer.*` keys of `g` (see the module docs).
/// Every missing required key, wrongly typed value, out-of-range token id or mismatched array length is a
/// [`TokenizerError::GgufMetadata`] naming the key.
pub fn tokenizer_from_gguf(g: &Gguf) -> Result<Tokenizer> {
    const MODEL: &str = "tokenizer.ggml.model";
    const PRE: &str = "tokenizer.ggml.pre";
    let kind = match opt_str(g, MODEL)? {
        Some("llama") => Kind::Spm, // SentencePiece has no pre-tokenizer: `tokenizer.ggml.pre` is ignored
        Some("gpt2") => Kind::Bpe(match opt_str(g, PRE)? {
            None => {
                tracing::warn!("GGUF has no `{PRE}`; using llama.cpp's \"default\" pre-tokenizer");
                default_pre_tokenizer()
            }
            Some(name) => pre_tokenizer_kind(name).ok_or_else(|| {
                let supported = SUPPORTED_PRE_TOKENIZERS.join(", ");
                bad(PRE, format!("unknown pre-tokenizer {name:?}; supported: {supported}"))
            })?,
        }),
        Some(other) => {
            let msg = format!("tokenizer {other:?} is not supported (supported: \"llama\", \"gpt2\")");
            return Err(bad(MODEL, msg));
        }
        None => return Err(bad(MODEL, "missing: the file has no tokenizer")),
    };
    let mut vocab = read_vocab(g)?;
    let n = vocab.tokens.len();
    let sp = read_specials(g, &kind, n)?;
    let chat_template = opt_str(g, "tokenizer.chat_template")?.map(str::to_string);
    let add_space_prefix = opt_bool(g, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);

    // Tokens llama.cpp treats as end of generation by their text are control tokens.
    let mut eog = sp.eog.clone();
    for text in EOG_TOKENS {
        if let Some(&id) = vocab.ids.get(*text) {
            vocab.types[id as usize] = token_type::CONTROL;
            eog.push(id);
        }
    }

    let mut inner = match kind {
        Kind::Spm => {
            let merges = spm_merges(&vocab);
            let model = build_bpe(&mut vocab, merges, true, sp.unk, false)?;
            let mut tok = tokenizers::Tokenizer::new(model);
            let replace = Replace::new(" ", SPACE).map_err(|e| bad(TOKENS, e.to_string()))?;
            let normalizer = if add_space_prefix {
                NormalizerWrapper::Sequence(NormalizerSequence::new(vec![
                    NormalizerWrapper::Prepend(Prepend::new(SPACE.into())),
                    NormalizerWrapper::Replace(replace),
                ]))
            } else {
                NormalizerWrapper::Replace(replace)
            };
            let mut decoders = vec![
                DecoderWrapper::Replace(Replace::new(SPACE, " ").map_err(|e| bad(TOKENS, e.to_string()))?),
                DecoderWrapper::ByteFallback(ByteFallback::new()),
                DecoderWrapper::Fuse(Fuse::new()),
            ];
            if add_space_prefix {
                decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
            }
            tok.with_normalizer(Some(normalizer));
            tok.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(decoders))));
            tok
        }
        Kind::Bpe(pre) => {
            let merges = bpe_merges(g, &vocab)?;
            let model = build_bpe(&mut vocab, merges, false, None, pre.ignore_merges)?;
            let mut tok = tokenizers::Tokenizer::new(model);
            let mut steps = pre.regexes.iter().map(|r| split(r)).collect::<Result<Vec<_>>>()?;
            steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)));
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSequence::new(steps))));
            tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
            tok
        }
    };

    // Control and unknown tokens: special; user-defined: plain added tokens. All match the raw text.
    // llama.cpp strips the whitespace after Phi-3's special tokens (but not after <unk>, <s>, <|endoftext|>).
    let name = opt_str(g, "general.name").ok().flatten().unwrap_or_default().to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let mut special = Vec::new();
    let mut plain = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        let is_special = match vocab.types[id] {
            token_type::CONTROL | token_type::UNKNOWN => true,
            token_type::USER_DEFINED => false,
            _ => continue,
        };
        let rstrip = phi3 && !matches!(text.as_str(), "<unk>" | "<s>" | "<|endoftext|>");
        let t = AddedToken::from(text.clone(), is_special).normalized(false).rstrip(rstrip);
        if is_special { special.push(t) } else { plain.push(t) }
    }
    guarded(|| -> std::result::Result<(), String> {
        inner.add_special_tokens(&special);
        inner.add_tokens(&plain);
        Ok(())
    })
    .map_err(|m| bad(TYPES, format!("adding the special tokens: {m}")))?;

    let text = |id: Option<u32>| id.map(|i| (i, vocab.tokens[i as usize].as_str()));
    let post = post_processor(text(sp.bos).filter(|_| sp.add_bos), text(sp.eos).filter(|_| sp.add_eos))?;
    inner.with_post_processor(post.map(PostProcessorWrapper::Template));

    eog.retain(|&id| Some(id) != sp.eos); // `Tokenizer::from_parts` drops repeats
    let spec = TokenizerSpec {
        bos_token: text(sp.bos).map(|(_, t)| t.to_string()),
        eos_token: text(sp.eos).map(|(_, t)| t.to_string()),
        extra_eos_ids: eog,
        add_bos: sp.add_bos,
        add_eos: sp.add_eos,
        chat_template,
        chat_template_origin: Some(format!("{ORIGIN} `tokenizer.chat_template`")),
        origin: ORIGIN.to_string(),
    };
    Tokenizer::from_parts(inner, spec)
}

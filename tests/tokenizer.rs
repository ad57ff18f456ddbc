//! Tokenizer tests on the real stories260K (SentencePiece BPE, byte fallback) and SmolLM2 (byte-level
//! BPE, ChatML) tokenizers: HF goldens, round trips, BOS policy, streaming detokenization, chat templates
//! and error reporting.

use std::path::{Path, PathBuf};

use prism::engine::tokenizer::{
    ChatMessage, StreamDecoder, Tokenizer, TokenizerError, TokenizerSpec, strftime,
};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn stories() -> Tokenizer {
    Tokenizer::from_dir(&shared("models/stories260K")).expect("stories260K tokenizer")
}

fn smollm() -> Tokenizer {
    Tokenizer::from_dir(&shared("models/smollm2-tokenizer")).expect("smollm2 tokenizer")
}

fn golden(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(shared(&format!("golden/{name}"))).expect("golden file");
    let v: Value = serde_json::from_str(&text).expect("golden JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// Strings with every kind of text a tokenizer must not lose.
const CORPUS: &[&str] = &[
    "Once upon a time, there was a little girl named Lily.",
    "Hello, world!",
    "a",
    "The quick brown fox\njumps over\n\nthe lazy dog.\n",
    "tabs\tand\ttabs\t\tdouble",
    "line one\r\nline two\r\n",
    "日本語のテキストと中文字符",
    "Ça va? Déjà vu, naïve café, Straße, ñandú, Ørsted",
    "مرحبا بالعالم",
    "Здравствуй, мир",
    "emoji 😀 and 🤖🚀 and flags 🇫🇷🇯🇵",
    "family 👨‍👩‍👧‍👦 and skin 👍🏽 and ❤️",
    "fn main() {\n    let x = 1;\n    if x > 0 {\n        println!(\"{x}\");\n    }\n}",
    "def f(x):\n\treturn x ** 2  # comment\n",
    "numbers 1234567890 3.14159 -42 1e-5",
    "symbols ~!@#$%^&*()_+-=[]{}|;':\",./<>?`",
    "mixed 中文 English العربية 😀 done",
    "zero\u{200b}width and combining e\u{301}",
    "\n\nleading newlines",
    "trailing newline\n",
];

/// Strings with whitespace that SentencePiece's `remove_extra_whitespaces` normalizes away.
const WHITESPACE_CORPUS: &[&str] =
    &[" leading space", "trailing space ", "two  spaces", "   ", "\u{3000}ideographic space"];

// ---------------------------------------------------------------------------------------------------
// Goldens
// ---------------------------------------------------------------------------------------------------

#[test]
fn stories_goldens() {
    let tok = stories();
    for case in golden("stories260K.json") {
        let prompt = case["prompt"].as_str().expect("prompt");
        assert_eq!(tok.encode(prompt, true).unwrap(), ids(&case["input_ids"]), "case {}", case["name"]);
        let new = ids(&case["greedy_new_ids"]);
        assert_eq!(
            tok.decode(&new, true).unwrap(),
            case["greedy_text"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
}

#[test]
fn smollm_goldens() {
    let tok = smollm();
    let mut chats = 0;
    for case in golden("smollm2-135m-instruct.json") {
        let name = &case["name"];
        let expected = ids(&case["input_ids"]);
        if let Some(prompt) = case["prompt"].as_str() {
            // SmolLM2 adds no BOS: add_bos_token is false and the post-processor adds nothing.
            assert_eq!(tok.encode(prompt, true).unwrap(), expected, "case {name}");
        } else {
            let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
            let rendered = tok.apply_chat_template(&messages, true).unwrap();
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "case {name}");
            // As HF's apply_chat_template(tokenize=True): the template holds the special tokens.
            assert_eq!(tok.encode(&rendered, false).unwrap(), expected, "case {name}");
            chats += 1;
        }
        let new = ids(&case["greedy_new_ids"]);
        assert_eq!(tok.decode(&new, true).unwrap(), case["greedy_text"].as_str().unwrap(), "case {name}");
    }
    assert!(chats > 0, "the SmolLM2 golden has chat cases");
}

// ---------------------------------------------------------------------------------------------------
// Special tokens and BOS/EOS policy
// ---------------------------------------------------------------------------------------------------

#[test]
fn special_token_facts() {
    let st = stories();
    assert_eq!(st.bos_id(), Some(1));
    assert_eq!(st.eos_ids(), &[2]);
    assert_eq!(st.vocab_size(), 512);
    assert_eq!(st.id_to_token(1).as_deref(), Some("<s>"));
    assert_eq!(st.token_to_id("<0x0A>"), Some(13));
    assert!(st.is_special(1) && st.is_special(2) && !st.is_special(13) && !st.is_special(400));
    assert!(!st.has_chat_template());

    let sm = smollm();
    assert_eq!(sm.bos_id(), Some(1), "bos_token <|im_start|>");
    assert_eq!(sm.eos_ids(), &[2], "<|im_end|>, also generation_config's eos_token_id");
    assert_eq!(sm.vocab_size(), 49152);
    assert!(sm.is_special(0) && sm.is_special(2) && !sm.is_special(100));
    assert!(sm.has_chat_template());
    assert!(sm.is_eos(2) && !sm.is_eos(1));
}

#[test]
fn bos_is_added_once() {
    let st = stories();
    // The post-processor (TemplateProcessing) adds <s>; add_bos_token must not add a second one.
    let with = st.encode("Hello", true).unwrap();
    let without = st.encode("Hello", false).unwrap();
    assert_eq!(with[0], 1);
    assert_ne!(with[1], 1);
    assert_eq!(&with[1..], &without[..]);
    assert_eq!(st.encode("", true).unwrap(), vec![1]);
    assert_eq!(st.encode("", false).unwrap(), Vec::<u32>::new());
    // A literal "<s>" in the text is parsed as the special token (as HF does).
    assert_eq!(st.encode("<s>Hello", false).unwrap()[0], 1);

    // Special tokens written in the text become single ids.
    let sm = smollm();
    assert_eq!(sm.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap()[0], 1);
    assert!(sm.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap().ends_with(&[2]));
}

/// stories260K's tokenizer.json without its post-processor, to test BOS/EOS added by config.
fn stories_without_post_processor() -> tokenizers::Tokenizer {
    let text = std::fs::read_to_string(shared("models/stories260K/tokenizer.json")).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    json["post_processor"] = Value::Null;
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap()
}

#[test]
fn config_adds_bos_and_eos_when_post_processor_does_not() {
    let spec = TokenizerSpec {
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        extra_eos_ids: vec![2, 0],
        add_bos: true,
        add_eos: true,
        chat_template: None,
        chat_template_origin: None,
        origin: "test".into(),
    };
    let tok = Tokenizer::from_parts(stories_without_post_processor(), spec.clone()).unwrap();
    let plain = tok.encode("Hello", false).unwrap();
    let full = tok.encode("Hello", true).unwrap();
    assert_eq!(full.len(), plain.len() + 2);
    assert_eq!((full[0], full[full.len() - 1]), (1, 2));
    assert_eq!(tok.eos_ids(), &[2, 0], "EOS token first, duplicates removed");

    // Not asked for: nothing added.
    let off = TokenizerSpec { add_bos: false, add_eos: false, ..spec.clone() };
    let tok = Tokenizer::from_parts(stories_without_post_processor(), off).unwrap();
    assert_eq!(tok.encode("Hello", true).unwrap(), plain);

    // With the real post-processor, add_bos does not double the BOS; add_eos still appends EOS.
    let real = tokenizers::Tokenizer::from_file(shared("models/stories260K/tokenizer.json")).unwrap();
    let tok = Tokenizer::from_parts(real, spec.clone()).unwrap();
    let ids = tok.encode("Hello", true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1);
    assert_eq!((ids[0], ids[ids.len() - 1]), (1, 2));

    // add_bos with a BOS that is not in the vocabulary is a configuration error.
    let bad = TokenizerSpec { bos_token: Some("<nope>".into()), ..spec };
    let err = Tokenizer::from_parts(stories_without_post_processor(), bad).unwrap_err();
    assert!(err.to_string().contains("<nope>") && err.to_string().contains("test"), "{err}");
}

// ---------------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------------

#[test]
fn smollm_round_trips_everything() {
    // Byte-level BPE is lossless: every string comes back byte for byte, whitespace included.
    let tok = smollm();
    for s in CORPUS.iter().chain(WHITESPACE_CORPUS) {
        let ids = tok.encode(s, true).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *s, "{s:?} -> {ids:?}");
        assert_eq!(tok.decode(&ids, true).unwrap(), *s);
    }
}

/// SentencePiece's `remove_extra_whitespaces`, which stories260K's tokenizer.json reproduces with regex
/// normalizers: leading and trailing spaces are dropped and runs of spaces collapse to one. Only the
/// ASCII space: tabs, newlines and other spaces are kept.
fn sentencepiece_whitespace(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim_matches(' ').chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

#[test]
fn stories_round_trips() {
    let tok = stories();
    let mut exact = 0;
    for s in CORPUS.iter().chain(WHITESPACE_CORPUS) {
        let expected = sentencepiece_whitespace(s);
        exact += usize::from(expected == *s);
        let ids = tok.encode(s, true).unwrap();
        // The post-processor's BOS is a special token: skip_special_tokens drops it, and the decoder's
        // Strip removes the space the normalizer prepended ("▁"), so the text comes back exactly
        // (up to the whitespace normalization).
        assert_eq!(tok.decode(&ids, true).unwrap(), expected, "{s:?} -> {ids:?}");
        // Without skipping, "<s>" stays and the prepended "▁" shows as a space after it (legacy Llama).
        let with_bos = if expected.is_empty() { "<s>".to_string() } else { format!("<s> {expected}") };
        assert_eq!(tok.decode(&ids, false).unwrap(), with_bos);
        // Without special tokens, decode(encode(s)) is exact as well.
        let plain = tok.encode(s, false).unwrap();
        assert_eq!(tok.decode(&plain, false).unwrap(), expected);
        // 512 tokens: non-ASCII text goes through byte-fallback tokens.
        if !s.is_ascii() {
            assert!(plain.iter().any(|&i| (3..259).contains(&i)), "{s:?} uses byte tokens");
        }
    }
    assert!(exact >= 15, "most of the corpus round-trips byte for byte");
    // The normalization is really on (a misconfigured pipeline would keep the spaces).
    assert_eq!(tok.decode(&tok.encode("  a  b  ", true).unwrap(), true).unwrap(), "a b");
    assert_eq!(tok.encode(" Once", true).unwrap(), tok.encode("Once", true).unwrap());
}

// ---------------------------------------------------------------------------------------------------
// Streaming detokenization
// ---------------------------------------------------------------------------------------------------

/// Streams `ids` and checks the pieces concatenate to the full decode, and that no piece is empty.
fn check_stream(tok: &Tokenizer, ids: &[u32], skip: bool) {
    let mut dec = StreamDecoder::with_skip_special_tokens(skip);
    let mut streamed = String::new();
    for &id in ids {
        if let Some(piece) = dec.push(tok, id).unwrap() {
            assert!(!piece.is_empty());
            streamed.push_str(&piece);
        }
    }
    if let Some(piece) = dec.finish(tok).unwrap() {
        streamed.push_str(&piece);
    }
    assert_eq!(streamed, tok.decode(ids, skip).unwrap(), "ids {ids:?}");
}

#[test]
fn stream_equals_decode_on_text() {
    for tok in [stories(), smollm()] {
        for s in CORPUS.iter().chain(WHITESPACE_CORPUS) {
            let ids = tok.encode(s, true).unwrap();
            check_stream(&tok, &ids, true);
            check_stream(&tok, &ids, false);
            check_stream(&tok, &tok.encode(s, false).unwrap(), true);
        }
    }
}

#[test]
fn stream_equals_decode_on_goldens() {
    let st = stories();
    for case in golden("stories260K.json") {
        check_stream(&st, &ids(&case["greedy_new_ids"]), true);
        let mut all = ids(&case["input_ids"]);
        all.extend(ids(&case["greedy_new_ids"]));
        check_stream(&st, &all, true);
        check_stream(&st, &all, false);
    }
    let sm = smollm();
    for case in golden("smollm2-135m-instruct.json") {
        check_stream(&sm, &ids(&case["greedy_new_ids"]), true);
        check_stream(&sm, &ids(&case["greedy_new_ids"]), false);
    }
}

#[test]
fn stream_holds_partial_characters() {
    let tok = stories();
    // "中" is three byte tokens: nothing comes out until the character is complete and settled.
    let ids = tok.encode("a中b", false).unwrap();
    let mut dec = StreamDecoder::new();
    let pieces: Vec<Option<String>> = ids.iter().map(|&id| dec.push(&tok, id).unwrap()).collect();
    let text: String =
        pieces.iter().flatten().cloned().collect::<String>() + &dec.finish(&tok).unwrap().unwrap_or_default();
    assert_eq!(text, "a中b");
    assert!(pieces.iter().flatten().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");

    // Byte-level BPE: an emoji split over tokens is never emitted half-way.
    let sm = smollm();
    let ids = sm.encode("🤖🚀👨‍👩‍👧", false).unwrap();
    assert!(ids.len() > 3);
    let mut dec = StreamDecoder::new();
    for &id in &ids {
        if let Some(p) = dec.push(&sm, id).unwrap() {
            assert!(!p.contains('\u{FFFD}'), "partial character emitted: {p:?}");
        }
    }
}

#[test]
fn stream_equals_decode_on_random_ids() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for tok in [stories(), smollm()] {
        let n = tok.vocab_size() as u32;
        for round in 0..300 {
            let len = rng.random_range(1..40);
            let ids: Vec<u32> = (0..len)
                .map(|_| match round % 3 {
                    // Uniform over the vocabulary (for stories260K, half are byte tokens).
                    0 => rng.random_range(0..n),
                    // Mostly low ids: special tokens, bytes, short pieces.
                    1 => rng.random_range(0..n.min(300)),
                    // Uniform plus ids beyond the vocabulary (ignored by decode).
                    _ => rng.random_range(0..n + 10),
                })
                .collect();
            check_stream(&tok, &ids, true);
            check_stream(&tok, &ids, false);
        }
    }
}

#[test]
fn stream_decoder_is_reusable_after_finish() {
    let tok = stories();
    let mut dec = StreamDecoder::new();
    for text in ["Lily was sad", "Tom had a big dog"] {
        let mut out = String::new();
        for id in tok.encode(text, true).unwrap() {
            out.push_str(&dec.push(&tok, id).unwrap().unwrap_or_default());
        }
        out.push_str(&dec.finish(&tok).unwrap().unwrap_or_default());
        assert_eq!(out, text);
    }
}

// ---------------------------------------------------------------------------------------------------
// Chat templates
// ---------------------------------------------------------------------------------------------------

#[test]
fn smollm_chat_template() {
    let tok = smollm();
    let user = ChatMessage::new("user", "What is 2+2?");
    let default_system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    assert_eq!(
        tok.apply_chat_template(std::slice::from_ref(&user), true).unwrap(),
        format!("{default_system}<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    );
    assert_eq!(
        tok.apply_chat_template(std::slice::from_ref(&user), false).unwrap(),
        format!("{default_system}<|im_start|>user\nWhat is 2+2?<|im_end|>\n")
    );
    // A given system message replaces the default one.
    let msgs = [ChatMessage::new("system", "Be brief."), user.clone(), ChatMessage::new("assistant", "4")];
    assert_eq!(
        tok.apply_chat_template(&msgs, true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n<|im_start|>assistant\n"
    );
    // Special tokens in the rendered text are single ids.
    let ids = tok.encode(&tok.apply_chat_template(&msgs, true).unwrap(), false).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 4);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 3);
}

/// A copy of the SmolLM2 tokenizer directory with some files replaced or removed.
fn smollm_variant(files: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
    ] {
        std::fs::copy(shared("models/smollm2-tokenizer").join(name), dir.path().join(name)).unwrap();
    }
    for (name, content) in files {
        let path = dir.path().join(name);
        match content {
            Some(c) => std::fs::write(&path, c).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
    }
    dir
}

/// Renders `template` with `messages` (bos `<s>`, eos `</s>`).
fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String, TokenizerError> {
    let spec = TokenizerSpec {
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        chat_template: Some(template.into()),
        origin: "inline".into(),
        ..TokenizerSpec::default()
    };
    let real = tokenizers::Tokenizer::from_file(shared("models/stories260K/tokenizer.json")).unwrap();
    Tokenizer::from_parts(real, spec)?.apply_chat_template(messages, add_generation_prompt)
}

#[test]
fn template_matches_python_jinja() {
    // Expected output produced by Python jinja2 3.1 configured as transformers configures it
    // (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, transformers' tojson).
    // The dict literal lists its keys in sorted order: without minijinja's `preserve_order` feature,
    // maps iterate in key order, whereas Python keeps insertion order.
    let template = "{{ bos_token }}\n{%- for m in messages %}\n    {% if m.role == 'system' %}\n        [SYS] {{ m['content'].strip() }}\n    {% elif m.content.startswith('!') %}\n{{ m.role | upper }}: {{ m.content[1:] | trim }}!\n    {% else %}\n{{ m.role }}: {{ m.content }}\n    {% endif %}\n    {% if loop.last %}{% break %}{% endif %}\n{% endfor %}\n{{ messages | map(attribute='role') | join(',') }}\n{{ {'content': 'a<b>\"\u{e9}\"', 'role': 'x'} | tojson }}\n{{ [1, 2.5, none, true] | tojson }}\n{{ {'k': [1, {'z': 'y'}]} | tojson(indent=2) }}\n{% if add_generation_prompt %}<assistant>\n{% endif %}\n{{ eos_token }}";
    let expected = "<s>        [SYS] be nice\nUSER: hey!\nassistant: ok\nsystem,user,assistant\n{\"content\": \"a<b>\\\"\u{e9}\\\"\", \"role\": \"x\"}\n[1, 2.5, null, true]\n{\n  \"k\": [\n    1,\n    {\n      \"z\": \"y\"\n    }\n  ]\n}\n<assistant>\n</s>";
    let msgs = [
        ChatMessage::new("system", "  be nice  "),
        ChatMessage::new("user", "!hey  "),
        ChatMessage::new("assistant", "ok"),
    ];
    assert_eq!(render(template, &msgs, true).unwrap(), expected);
}

#[test]
fn template_helpers() {
    let msgs = [ChatMessage::new("user", "hi")];
    // raise_exception surfaces the template's message.
    let err = render(
        "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}",
        &msgs,
        true,
    )
    .unwrap_err();
    assert!(matches!(err, TokenizerError::TemplateRender { .. }), "{err:?}");
    assert!(err.to_string().contains("System first!") && err.to_string().contains("inline"), "{err}");
    // strftime_now gives today's date in the requested format.
    let date = render("{{ strftime_now('%Y-%m-%d') }}", &msgs, true).unwrap();
    assert!(date.len() == 10 && date.starts_with("20") && date.as_bytes()[4] == b'-', "{date}");
    // Python dict and string methods.
    let out = render("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %} {{ 'A,B'.split(',') | length }} {{ 'x'.upper() }}", &msgs, true)
        .unwrap();
    assert_eq!(out, "a=1 2 X");
    // tojson options as Python's json.dumps.
    let out = render(
        "{{ {'b': [1, 2], 'a': 'é😀'} | tojson(sort_keys=true, ensure_ascii=true, separators=[',', ':']) }}",
        &msgs,
        true,
    )
    .unwrap();
    assert_eq!(out, r#"{"a":"\u00e9\ud83d\ude00","b":[1,2]}"#);
    assert_eq!(
        render("{{ messages | tojson }}", &msgs, true).unwrap(),
        r#"[{"role": "user", "content": "hi"}]"#
    );
    // No trailing newline is kept (keep_trailing_newline off, as HF).
    assert_eq!(render("{{ messages[0].content }}\n", &msgs, false).unwrap(), "hi");
}

#[test]
fn strftime_formats_utc() {
    // 2024-02-29 13:05:09 UTC, a Thursday.
    let t = 1_709_211_909;
    assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
    assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024"); // Llama 3.1's date line
    assert_eq!(strftime("%A %B %-d, %I %p, day %j %%", t), "Thursday February 29, 01 PM, day 060 %");
    assert_eq!(strftime("%F %T %Z %q %", 0), "1970-01-01 00:00:00 UTC %q %");
    assert_eq!(strftime("%Y-%m-%d %a", -86_400), "1969-12-31 Wed");
    assert_eq!(strftime("%D %R %e|%u%w", 951_782_400), "02/29/00 00:00 29|22"); // 2000-02-29, Tuesday
}

#[test]
fn template_errors() {
    // Syntax errors surface when the tokenizer is built, naming the template's origin.
    let err = render("{% for m in messages %}{{ m.content }", &[], true).unwrap_err();
    assert!(matches!(err, TokenizerError::TemplateSyntax { .. }), "{err:?}");
    assert!(err.to_string().contains("inline") && err.to_string().contains("syntax error"), "{err}");

    let dir = smollm_variant(&[("chat_template.jinja", Some("{% if %}"))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("chat_template.jinja"), "{err}");

    // No template at all.
    let err = stories().apply_chat_template(&[ChatMessage::new("user", "hi")], true).unwrap_err();
    assert!(matches!(err, TokenizerError::NoChatTemplate), "{err:?}");
}

#[test]
fn template_sources_and_precedence() {
    // chat_template.jinja wins over tokenizer_config.json.
    let dir = smollm_variant(&[("chat_template.jinja", Some("JINJA {{ messages[0].content }}"))]);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.apply_chat_template(&[ChatMessage::new("user", "x")], true).unwrap(), "JINJA x");

    // Without the .jinja file, tokenizer_config.json's template is used (SmolLM2's, identical).
    let dir = smollm_variant(&[("chat_template.jinja", None)]);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.apply_chat_template(&[], true).unwrap(), "<|im_start|>assistant\n");

    // A list of named templates: "default" is taken.
    let config = r#"{"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|im_end|>",
        "chat_template": [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "DEFAULT {{ eos_token }}"}]}"#;
    let dir = smollm_variant(&[("chat_template.jinja", None), ("tokenizer_config.json", Some(config))]);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.apply_chat_template(&[], true).unwrap(), "DEFAULT <|im_end|>");
    assert_eq!(tok.bos_id(), Some(1));

    // eos_token_id lists in the config files join the EOS set.
    let dir = smollm_variant(&[("generation_config.json", Some(r#"{"eos_token_id": [2, 0, 7]}"#))]);
    assert_eq!(Tokenizer::from_dir(dir.path()).unwrap().eos_ids(), &[2, 0, 7]);
}

// ---------------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------------

#[test]
fn missing_and_bad_files_name_the_file() {
    let dir = smollm_variant(&[("tokenizer.json", None)]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json") && err.to_string().contains("not found"), "{err}");

    let dir = smollm_variant(&[("tokenizer.json", Some("{ not json"))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let dir = smollm_variant(&[("tokenizer.json", Some(r#"{"model": {"type": "Nonsense"}}"#))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let dir = smollm_variant(&[("tokenizer_config.json", Some("{\"bos_token\": "))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer_config.json") && err.to_string().contains("JSON"), "{err}");

    let dir = smollm_variant(&[("tokenizer_config.json", Some(r#"{"bos_token": 5}"#))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("tokenizer_config.json") && err.to_string().contains("bos_token"),
        "{err}"
    );

    let dir = smollm_variant(&[("tokenizer_config.json", Some(r#"{"add_bos_token": "yes"}"#))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("add_bos_token"), "{err}");

    let dir = smollm_variant(&[("generation_config.json", Some(r#"{"eos_token_id": "two"}"#))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("generation_config.json") && err.to_string().contains("eos_token_id"),
        "{err}"
    );

    let dir = smollm_variant(&[("config.json", Some("[1, 2]"))]);
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    // Only tokenizer.json is required.
    let dir = smollm_variant(&[
        ("tokenizer_config.json", None),
        ("chat_template.jinja", None),
        ("config.json", None),
        ("generation_config.json", None),
    ]);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert!(!tok.has_chat_template() && tok.eos_ids().is_empty() && tok.bos_id().is_none());

    let err = Tokenizer::from_dir(Path::new("/nonexistent/dir")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dir/tokenizer.json"), "{err}");
}

#[test]
fn odd_ids_do_not_panic() {
    let tok = stories();
    assert_eq!(tok.decode(&[u32::MAX, 100_000, 1], true).unwrap(), "");
    assert_eq!(tok.id_to_token(u32::MAX), None);
    assert!(!tok.is_special(u32::MAX));
    let mut dec = StreamDecoder::new();
    assert_eq!(dec.push(&tok, u32::MAX).unwrap(), None);
    assert_eq!(dec.finish(&tok).unwrap(), None);
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<StreamDecoder>();
}

//! The `prism` command line end to end: devices, run (sampling, stop, chat, errors), pull. (`bench`:
//! tests/bench_cli.rs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism")).args(args).output().unwrap()
}

fn run_stories(extra: &[&str], prompt: &str) -> Output {
    let model = shared("models/stories260K");
    let mut args = vec!["run", "--model", model.to_str().unwrap(), "--backend", "cpu"];
    args.extend_from_slice(extra);
    args.push(prompt);
    prism(&args)
}

fn text(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn devices_lists_cpu_and_says_why_others_are_missing() {
    let o = prism(&["devices"]);
    assert!(o.status.success());
    let out = text(&o);
    assert!(out.contains("cpu: available"), "{out}");
    // Without ROCm or a CUDA driver (CI), hip and cuda say why; wgpu lists an adapter (lavapipe in CI)
    // or says why there is none.
    for other in ["hip", "cuda", "wgpu"] {
        let listed = out.contains(&format!("{other}: available\n  [0] "));
        assert!(listed || out.contains(&format!("{other}: not available: ")), "{out}");
    }
}

#[test]
fn same_seed_same_text_other_seed_other_text() {
    let args = ["--temperature", "1.0", "--max-tokens", "40", "--seed"];
    let a = run_stories(&[&args[..], &["7"]].concat(), "Once upon a time");
    let b = run_stories(&[&args[..], &["7"]].concat(), "Once upon a time");
    let c = run_stories(&[&args[..], &["8"]].concat(), "Once upon a time");
    assert!(a.status.success(), "{}", err(&a));
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c), "two seeds gave the same 40 sampled tokens");
}

#[test]
fn stop_string_ends_the_text_before_it() {
    let o = run_stories(&["--temperature", "0", "--max-tokens", "64", "--stop", "Lily"], "Once upon a time");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o), ", there was a little girl named ");
    assert!(err(&o).contains("finish: Stop"), "{}", err(&o));
}

#[test]
fn prompt_plus_max_tokens_beyond_context_is_an_error() {
    let o = run_stories(&["--max-tokens", "600"], "Once upon a time");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("exceeds the model's context of 512"), "{}", err(&o));
    assert!(!err(&o).contains("panicked"));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let o = prism(&["run", "--model", "/nonexistent/model", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("/nonexistent/model"), "{}", err(&o));
    let o = run_stories(&["--chat"], "hi");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).to_lowercase().contains("chat template"), "{}", err(&o));
    let o = run_stories(&["--top-p", "1.5"], "hi");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("top_p"), "{}", err(&o));
    let model = shared("models/stories260K");
    let o = prism(&["run", "--model", model.to_str().unwrap(), "--backend", "wgpu", "--device", "99", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("wgpu"), "{}", err(&o));
}

#[test]
fn chat_goes_through_the_template() {
    // stories260K has no template: lend it SmolLM2's ChatML one.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(shared("models/stories260K").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        shared("models/smollm2-tokenizer/chat_template.jinja"),
        dir.path().join("chat_template.jinja"),
    )
    .unwrap();
    let model = dir.path().to_str().unwrap();
    let base = ["run", "--model", model, "--temperature", "0", "--max-tokens", "3", "--show-ids", "--chat"];
    let with_system = prism(&[&base[..], &["--system", "Be brief.", "Hello"]].concat());
    let without = prism(&[&base[..], &["Hello"]].concat());
    assert!(with_system.status.success(), "{}", err(&with_system));
    let ids = |o: &Output| -> Vec<u64> {
        let line = err(o).lines().find_map(|l| l.strip_prefix("ids: ").map(String::from)).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        v["input_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
    };
    let (a, b) = (ids(&with_system), ids(&without));
    // The rendered prompt holds the messages: far longer than the bare word.
    assert!(a.len() > 20 && b.len() > 20, "{a:?} {b:?}");
    assert_ne!(a, b, "the system message must change the prompt");
}

#[test]
fn pull_fetches_verifies_and_replaces_a_corrupt_copy() {
    let cache = tempfile::tempdir().unwrap();
    let models = cache.path().join("prism/models");
    std::fs::create_dir_all(&models).unwrap();
    let file = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(&file, b"GGUF but not the real thing").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["pull", "smollm2"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(text(&o).trim(), file.display().to_string());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), prism::engine::pull::default_model().size);
    let sha = prism::engine::pull::sha256_file(&file, |_| {}).unwrap();
    assert_eq!(sha, prism::engine::pull::default_model().sha256);

    let o = prism(&["pull", "gpt-17"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("unknown model `gpt-17`"), "{}", err(&o));
}

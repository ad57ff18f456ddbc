//! stories260K against Hugging Face transformers' float32 goldens: ids, text and logits, through the
//! `prism run` command line and the library.

use std::path::{Path, PathBuf};
use std::process::Command;

use prism::backend::{BackendKind, BackendOptions, create};
use prism::engine::generate::{Engine, EngineOptions, ModelFiles};
use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

#[path = "common/gpu.rs"]
mod gpu;

fn golden() -> Value {
    let text = std::fs::read_to_string(shared("golden/stories260K.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn prism_run_reproduces_every_golden_case() {
    run_golden_cases(BackendKind::Cpu);
}

#[test]
fn prism_run_reproduces_every_golden_case_on_wgpu() {
    if gpu::available(BackendKind::Wgpu) {
        run_golden_cases(BackendKind::Wgpu);
    }
}

/// `prism run --backend kind` greedy on every golden case: text, input ids and generated ids exact.
fn run_golden_cases(kind: BackendKind) {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let new_ids = ids(&case["greedy_new_ids"]);
        let out = Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["run", "--model"])
            .arg(shared("models/stories260K"))
            .args(["--backend", kind.name(), "--threads", "2", "--temperature", "0", "--show-ids"])
            .args(["--max-tokens", &new_ids.len().to_string()])
            .arg(case["prompt"].as_str().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "case {name}: prism run failed: {stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout, case["greedy_text"].as_str().unwrap(), "case {name}: text");
        let line = stderr.lines().find_map(|l| l.strip_prefix("ids: ")).expect("ids line");
        let got: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ids(&got["input_ids"]), ids(&case["input_ids"]), "case {name}: input ids");
        assert_eq!(ids(&got["generated_ids"]), new_ids, "case {name}: generated ids");
        assert!(stderr.contains("prompt: "), "statistics on stderr: {stderr}");
    }
}

#[test]
fn last_position_logits_match_transformers() {
    let mut backends = vec![(BackendKind::Cpu, 1), (BackendKind::Cpu, 2)];
    if gpu::available(BackendKind::Wgpu) {
        backends.push((BackendKind::Wgpu, 0));
    }
    let g = golden();
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    for (kind, threads) in backends {
        let b = create(kind, BackendOptions { device: 0, threads }).unwrap();
        let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
        let mut engine = Engine::new(b, files, EngineOptions::default()).unwrap();
        for case in g["cases"].as_array().unwrap() {
            let prompt_ids = ids(&case["input_ids"]);
            let logits = engine.prefill_logits(&prompt_ids).unwrap();
            for pair in case["last_logits_top10"].as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                let got = logits[id] as f64;
                assert!((got - want).abs() < 1e-3, "{}: logit {id} {got} vs {want}", case["name"]);
            }
            let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
            let lse = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
            let want = case["last_logsumexp"].as_f64().unwrap();
            assert!((lse - want).abs() < 1e-3, "logsumexp {lse} vs {want}");
        }
    }
    drop(files);
}

#[test]
fn prefill_in_chunks_equals_one_pass() {
    // A prompt split over several forward steps must give the same logits as one step.
    let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
    let prompt =
        files.tokenizer.encode("Once upon a time, there was a little dog named Max who", true).unwrap();
    let mut results = Vec::new();
    for chunk in [512, 3] {
        let files = ModelFiles::open(&shared("models/stories260K")).unwrap();
        let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
        let opts = EngineOptions { max_step_tokens: chunk, ..Default::default() };
        let mut engine = Engine::new(b, files, opts).unwrap();
        results.push(engine.prefill_logits(&prompt).unwrap());
    }
    let err: f32 = results[0].iter().zip(&results[1]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(err < 1e-4, "chunked prefill differs by {err}");
}

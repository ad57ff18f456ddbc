//! Broken model files: each gets a clear error naming what is wrong, never a panic.

use std::path::{Path, PathBuf};

use prism::backend::{BackendKind, BackendOptions, create};
use prism::engine::generate::{Engine, EngineError, EngineOptions, ModelFiles};

fn stories() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/stories260K")
}

/// A copy of stories260K in a temp dir, for breaking one file at a time.
fn copy_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(stories().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Writes a safetensors file from `(name, dtype, shape, data bytes)` entries.
fn write_safetensors(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape,
                               "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend_from_slice(bytes);
    }
    write_raw(path, serde_json::to_vec(&header).unwrap(), &data);
}

fn write_raw(path: &Path, header: Vec<u8>, data: &[u8]) {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// Loads the whole model onto the CPU backend and returns the error text.
fn load_error(dir: &Path) -> String {
    let r = ModelFiles::open(dir).and_then(|files| {
        let b = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 1 }).unwrap();
        Engine::new(b, files, EngineOptions { context: 64, ..Default::default() })
    });
    match r {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` should mention `{p}`");
    }
}

#[test]
fn the_intact_model_loads() {
    let files = ModelFiles::open(&stories()).unwrap();
    let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
    Engine::new(b, files, EngineOptions::default()).unwrap();
}

#[test]
fn truncated_file() {
    let dir = copy_model();
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    assert_contains(&load_error(dir.path()), &["corrupt weight file", "data_offsets", "outside"]);
    std::fs::write(&p, &bytes[..5]).unwrap();
    assert_contains(&load_error(dir.path()), &["too short"]);
    std::fs::write(&p, &bytes[..100]).unwrap();
    assert_contains(&load_error(dir.path()), &["header length"]);
}

#[test]
fn bad_json_header() {
    let dir = copy_model();
    let p = dir.path().join("model.safetensors");
    write_raw(&p, b"{\"a\": [1, 2".to_vec(), &[0; 16]);
    assert_contains(&load_error(dir.path()), &["header is not a JSON object"]);
    write_raw(&p, b"[1, 2, 3]".to_vec(), &[0; 16]);
    assert_contains(&load_error(dir.path()), &["header is not a JSON object"]);
    write_raw(&p, br#"{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}"#.to_vec(), &[0; 8]);
    assert_contains(&load_error(dir.path()), &["`x`", "data_offsets is not a pair"]);
}

#[test]
fn huge_header_length_is_refused_without_allocating() {
    let dir = copy_model();
    let p = dir.path().join("model.safetensors");
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&p, bytes).unwrap();
    assert_contains(&load_error(dir.path()), &["header length", "exceeds"]);
}

#[test]
fn offsets_out_of_bounds_and_overflowing_shapes() {
    let dir = copy_model();
    let p = dir.path().join("model.safetensors");
    write_raw(&p, br#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4000]}}"#.to_vec(), &[0; 16]);
    assert_contains(&load_error(dir.path()), &["`w`", "outside the 16 data bytes"]);
    write_raw(&p, br#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [12, 4]}}"#.to_vec(), &[0; 16]);
    assert_contains(&load_error(dir.path()), &["`w`", "data_offsets [12, 4]"]);
    let huge = format!(
        r#"{{"w": {{"dtype": "F32", "shape": [{0}, {0}, {0}], "data_offsets": [0, 16]}}}}"#,
        u64::MAX / 2
    );
    write_raw(&p, huge.into_bytes(), &[0; 16]);
    assert_contains(&load_error(dir.path()), &["`w`", "overflows"]);
}

#[test]
fn dtype_and_shape_disagree_with_byte_length() {
    let dir = copy_model();
    let p = dir.path().join("model.safetensors");
    write_raw(&p, br#"{"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}"#.to_vec(), &[0; 8]);
    assert_contains(&load_error(dir.path()), &["`w`", "needs 6 bytes", "span 8"]);
    write_raw(&p, br#"{"w": {"dtype": "Q9_X", "shape": [3], "data_offsets": [0, 8]}}"#.to_vec(), &[0; 8]);
    assert_contains(&load_error(dir.path()), &["unknown dtype `Q9_X`"]);
}

/// The real tensors of stories260K, decoded from its file, so one can be changed.
fn stories_tensors() -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(stories().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out = Vec::new();
    for (name, meta) in header {
        if name == "__metadata__" {
            continue;
        }
        let off = meta["data_offsets"].as_array().unwrap();
        let (b, e) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
        let shape = meta["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize);
        out.push((
            name,
            meta["dtype"].as_str().unwrap().to_string(),
            shape.collect(),
            bytes[8 + n + b..8 + n + e].to_vec(),
        ));
    }
    out
}

fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, String, Vec<usize>, Vec<u8>)>)) {
    let mut t = stories_tensors();
    edit(&mut t);
    let refs: Vec<_> = t.iter().map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.clone())).collect();
    write_safetensors(&dir.join("model.safetensors"), &refs);
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_model();
    rewrite(dir.path(), |t| t.retain(|(n, ..)| n != "model.layers.3.mlp.up_proj.weight"));
    assert_contains(&load_error(dir.path()), &["model.layers.3.mlp.up_proj.weight", "missing"]);
}

#[test]
fn wrong_shape_is_named() {
    let dir = copy_model();
    rewrite(dir.path(), |t| {
        let e = t.iter_mut().find(|(n, ..)| n == "model.layers.0.self_attn.k_proj.weight").unwrap();
        e.2 = vec![e.2[1], e.2[0]];
    });
    assert_contains(
        &load_error(dir.path()),
        &["model.layers.0.self_attn.k_proj.weight", "shape [64, 32]", "expected [32, 64]"],
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = copy_model();
    rewrite(dir.path(), |t| {
        let e = t.iter_mut().find(|(n, ..)| n == "model.norm.weight").unwrap();
        e.1 = "I32".into();
    });
    assert_contains(&load_error(dir.path()), &["model.norm.weight", "unsupported dtype I32"]);
}

#[test]
fn f16_and_bf16_weights_load_and_agree_with_f32() {
    // The same model stored in f16 and bf16 must load and predict the same first token.
    let files = ModelFiles::open(&stories()).unwrap();
    let ids = files.tokenizer.encode("Once upon a time", true).unwrap();
    let mut reference = None;
    for dtype in ["F32", "F16", "BF16"] {
        let dir = copy_model();
        rewrite(dir.path(), |t| {
            for e in t.iter_mut() {
                let vals: Vec<f32> =
                    e.3.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                e.3 = match dtype {
                    "F16" => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                    "BF16" => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
                    _ => e.3.clone(),
                };
                e.1 = dtype.into();
            }
        });
        let files = ModelFiles::open(dir.path()).unwrap();
        let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
        let mut engine = Engine::new(b, files, EngineOptions::default()).unwrap();
        let logits = engine.prefill_logits(&ids).unwrap();
        let top = argmax(&logits);
        match reference {
            None => reference = Some(top),
            Some(r) => assert_eq!(top, r, "{dtype} predicts another token than f32"),
        }
    }
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |best, i| if x[i] > x[best] { i } else { best })
}

#[test]
fn bad_configs() {
    let dir = copy_model();
    let cfg = dir.path().join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    std::fs::write(&cfg, "{ not json").unwrap();
    assert_contains(&load_error(dir.path()), &["config.json", "not valid JSON"]);

    let mut v = original.clone();
    v["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_contains(&load_error(dir.path()), &["unknown architecture `GPTNeoXForCausalLM`"]);

    let mut v = original.clone();
    v["num_key_value_heads"] = serde_json::json!(3);
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_contains(&load_error(dir.path()), &["not a multiple of num_key_value_heads 3"]);

    let mut v = original.clone();
    v["hidden_size"] = serde_json::json!(0);
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_contains(&load_error(dir.path()), &["hidden_size", "out of range"]);

    let mut v = original.clone();
    v["vocab_size"] = serde_json::json!(1u64 << 40);
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_contains(&load_error(dir.path()), &["vocab_size", "out of range"]);

    let mut v = original;
    v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    std::fs::write(&cfg, v.to_string()).unwrap();
    assert_contains(&load_error(dir.path()), &["rope_scaling type `yarn` is not supported"]);
}

#[test]
fn missing_files() {
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert_contains(&load_error(dir.path()), &["no model.safetensors"]);
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_contains(&load_error(dir.path()), &["tokenizer.json"]);
    let dir = copy_model();
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert_contains(&load_error(dir.path()), &["config.json"]);
}

#[test]
fn sharded_checkpoint_loads_and_bad_index_is_refused() {
    let dir = copy_model();
    let tensors = stories_tensors();
    let (a, b) = tensors.split_at(tensors.len() / 2);
    let mut map = serde_json::Map::new();
    for (part, file) in [(a, "model-00001-of-00002.safetensors"), (b, "model-00002-of-00002.safetensors")] {
        let refs: Vec<_> =
            part.iter().map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.clone())).collect();
        write_safetensors(&dir.path().join(file), &refs);
        for (n, ..) in part {
            map.insert(n.clone(), serde_json::json!(file));
        }
    }
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, serde_json::json!({"weight_map": map}).to_string()).unwrap();
    let files = ModelFiles::open(dir.path()).unwrap();
    let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
    Engine::new(b, files, EngineOptions::default()).unwrap();

    std::fs::write(&index, r#"{"weight_map": {"x": "../../etc/passwd"}}"#).unwrap();
    assert_contains(&load_error(dir.path()), &["not a plain file name"]);
}

#[test]
fn context_overflow_is_an_error_not_a_crash() {
    let files = ModelFiles::open(&stories()).unwrap();
    let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
    let mut engine = Engine::new(b, files, EngineOptions { context: 100, ..Default::default() }).unwrap();
    let params = prism::engine::generate::GenerateParams {
        max_tokens: 90,
        sampling: Default::default(),
        stop: vec![],
        ignore_eos: false,
    };
    let err = engine.generate(&[1; 20], &params, |_| {}).unwrap_err();
    assert!(matches!(err, EngineError::ContextOverflow { prompt: 20, max_tokens: 90, .. }), "{err}");
    // The engine keeps working after the refusal.
    let params = prism::engine::generate::GenerateParams { max_tokens: 5, ignore_eos: true, ..params };
    let ok = engine.generate(&[1; 20], &params, |_| {});
    assert_eq!(ok.unwrap().ids.len(), 5);
}

/// Greedy ids of a model directory for one prompt.
fn greedy(dir: &Path, prompt: &str, n: usize) -> Vec<u32> {
    let files = ModelFiles::open(dir).unwrap();
    let ids = files.tokenizer.encode(prompt, true).unwrap();
    let b = create(BackendKind::Cpu, BackendOptions::default()).unwrap();
    let mut engine = Engine::new(b, files, EngineOptions::default()).unwrap();
    let params = prism::engine::generate::GenerateParams {
        max_tokens: n,
        sampling: Default::default(),
        stop: vec![],
        ignore_eos: true,
    };
    engine.generate(&ids, &params, |_| {}).unwrap().ids
}

fn set_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

#[test]
fn qwen2_biases_are_loaded_and_applied() {
    let reference = greedy(&stories(), "Once upon a time", 20);
    // Qwen2 = Llama + q/k/v biases: zero biases must change nothing, a large bias must change the text.
    for (bias, same) in [(0.0f32, true), (3.0, false)] {
        let dir = copy_model();
        set_config(dir.path(), |v| v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]));
        rewrite(dir.path(), |t| {
            for l in 0..5 {
                for (p, rows) in [("q", 64usize), ("k", 32), ("v", 32)] {
                    let data: Vec<u8> = (0..rows).flat_map(|_| bias.to_le_bytes()).collect();
                    let name = format!("model.layers.{l}.self_attn.{p}_proj.bias");
                    t.push((name, "F32".into(), vec![rows], data));
                }
            }
        });
        let got = greedy(dir.path(), "Once upon a time", 20);
        assert_eq!(got == reference, same, "bias {bias}: {got:?} vs {reference:?}");
    }
    // Without the biases a Qwen2 checkpoint is incomplete.
    let dir = copy_model();
    set_config(dir.path(), |v| v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]));
    assert_contains(&load_error(dir.path()), &["model.layers.0.self_attn.q_proj.bias", "missing"]);
}

#[test]
fn mistral_sliding_window_limits_attention() {
    let reference = greedy(&stories(), "Once upon a time", 40);
    let dir = copy_model();
    set_config(dir.path(), |v| {
        v["architectures"] = serde_json::json!(["MistralForCausalLM"]);
        v["sliding_window"] = serde_json::json!(4096);
    });
    assert_eq!(greedy(dir.path(), "Once upon a time", 40), reference, "a window wider than the text");
    set_config(dir.path(), |v| v["sliding_window"] = serde_json::json!(4));
    assert_ne!(greedy(dir.path(), "Once upon a time", 40), reference, "a 4-token window must matter");
}

#[test]
fn llama3_rope_scaling_matches_the_transformers_formula() {
    let dir = copy_model();
    set_config(dir.path(), |v| {
        v["head_dim"] = serde_json::json!(128);
        v["rope_theta"] = serde_json::json!(500000.0);
        v["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
    });
    let (cfg, _) = prism::engine::config::ModelConfig::from_hf_dir(dir.path()).unwrap();
    let inv = cfg.rope_inv_freq();
    assert_eq!(inv.len(), 64);
    // Reference values from transformers' `_compute_llama3_parameters` (computed in f64).
    let want = [
        (0, 1.0),
        (10, 0.128_687_373_432_650_52),
        (20, 0.016_560_440_080_994_446),
        (30, 0.001_371_893_567_761_138_1),
        (40, 3.428_102_195_952_591e-5),
        (50, 4.411_534_674_558_404e-6),
        (63, 3.068_925_988_914_511e-7),
    ];
    for (i, w) in want {
        let rel = ((inv[i] as f64 - w) / w).abs();
        assert!(rel < 1e-5, "inv_freq[{i}] = {} vs {w}", inv[i]);
    }
}

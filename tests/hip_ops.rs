//! The HIP backend and its CUDA twin against the CPU backend (the shared op table), the goldens on the
//! GPU, and the loader's behaviour where a runtime is missing. Without a GPU the GPU tests print why
//! they do not run; on the H100 they are run explicitly (see README, "HIP / CUDA").

#[path = "common/ops.rs"]
mod ops;

use std::path::{Path, PathBuf};

use prism::backend::cpu::CpuBackend;
use prism::backend::{Backend, BackendError, BackendKind, BackendOptions, create, probe_all};
use prism::engine::generate::{Engine, EngineOptions, GenerateParams, ModelFiles};
use prism::engine::pull;
use serde_json::Value;

const GPU_KINDS: [BackendKind; 2] = [BackendKind::Cuda, BackendKind::Hip];

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The GPU backends that start here; prints why each other one does not.
fn gpu_backends() -> Vec<Box<dyn Backend>> {
    let mut out = Vec::new();
    for kind in GPU_KINDS {
        match create(kind, BackendOptions::default()) {
            Ok(b) => {
                eprintln!("{}: testing on {}", kind.name(), b.info().device);
                out.push(b);
            }
            Err(e) => eprintln!("{} backend not available, its GPU checks do not run here: {e}", kind.name()),
        }
    }
    out
}

#[test]
fn gpu_ops_match_cpu_backend_and_reference() {
    for mut b in gpu_backends() {
        let mut cpu = CpuBackend::new(2).unwrap();
        ops::compare_backends(b.as_mut(), &mut cpu);
        ops::check_cases(b.as_mut(), &ops::cases(), ops::MAX_NMSE_QUANT);
    }
}

#[test]
fn gpu_bad_arguments_are_invalid_argument() {
    // A fresh backend: with one KV cache, `set_step` checks block ids against it.
    for mut b in gpu_backends() {
        ops::check_errors(b.as_mut());
    }
}

fn engine(b: Box<dyn Backend>, path: &Path) -> Engine {
    let files = ModelFiles::open(path).unwrap();
    Engine::new(b, files, EngineOptions { context: 1024, ..Default::default() }).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, sampling: Default::default(), stop: vec![], ignore_eos: false }
}

#[test]
fn gpu_stories260k_golden_exact() {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(shared("golden/stories260K.json")).unwrap()).unwrap();
    for b in gpu_backends() {
        let name = b.info().backend;
        let mut e = engine(b, &shared("models/stories260K"));
        for case in g["cases"].as_array().unwrap() {
            let prompt_ids = ids(&case["input_ids"]);
            let logits = e.prefill_logits(&prompt_ids).unwrap();
            for pair in case["last_logits_top10"].as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                let got = logits[id] as f64;
                assert!((got - want).abs() < 1e-3, "{name} {}: logit {id} {got} vs {want}", case["name"]);
            }
            let want = ids(&case["greedy_new_ids"]);
            let mut text = String::new();
            let out = e.generate(&prompt_ids, &greedy(want.len()), |s| text.push_str(s)).unwrap();
            assert_eq!(out.ids, want, "{name} {}: generated ids", case["name"]);
            assert_eq!(text, case["greedy_text"].as_str().unwrap());
            eprintln!("{name} {}: {} ids identical to the golden", case["name"], want.len());
        }
    }
}

#[test]
fn gpu_smollm2_q4_1_meets_the_golden_bar() {
    let backends = gpu_backends();
    if backends.is_empty() {
        return;
    }
    let path = pull::pull(pull::default_model(), |_| {}).expect("SmolLM2 Q4_1 in the model cache");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(shared("golden/smollm2-135m-instruct.json")).unwrap())
            .unwrap();
    for b in backends {
        let name = b.info().backend;
        let mut e = engine(b, &path);
        for case in golden["cases"].as_array().unwrap() {
            let cname = case["name"].as_str().unwrap();
            let prompt_ids = ids(&case["input_ids"]);
            let logits = e.prefill_logits(&prompt_ids).unwrap();
            for pair in case["last_logits_top10"].as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
                let got = logits[id] as f64;
                assert!((got - want).abs() <= 2e-2, "{name} {cname}: logit of {id} is {got}, golden {want}");
            }
            let want = ids(&case["greedy_new_ids"]);
            let required = case["required_prefix_tokens"].as_u64().unwrap() as usize;
            let out = e.generate(&prompt_ids, &greedy(want.len()), |_| {}).unwrap();
            assert_eq!(out.ids[..required], want[..required], "{name} {cname}: first {required} ids");
            eprintln!(
                "{name} {cname}: {} of {} generated ids identical (required {required})",
                out.ids.iter().zip(&want).take_while(|(a, b)| a == b).count(),
                want.len()
            );
        }
    }
}

/// Without a GPU runtime, `devices` says why, `create` fails with Unavailable (no panic), and the CPU
/// backend runs on. With one, the devices carry a name, an architecture and memory.
#[test]
fn missing_runtimes_are_explained_and_cpu_keeps_working() {
    let reports = probe_all(2);
    for kind in GPU_KINDS {
        let r = reports.iter().find(|r| r.kind == kind).expect("every backend is probed");
        match &r.devices {
            Err(why) => {
                assert!(why.len() > 20, "{}: reason too thin: {why}", kind.name());
                eprintln!("{}: {why}", kind.name());
                match create(kind, BackendOptions::default()) {
                    Err(BackendError::Unavailable { backend, reason }) => {
                        assert_eq!(backend, kind.name());
                        assert!(!reason.is_empty());
                    }
                    Err(e) => panic!("{}: expected Unavailable, got {e}", kind.name()),
                    Ok(_) => panic!("{}: probe failed but the backend started", kind.name()),
                }
            }
            Ok(devs) => {
                assert!(!devs.is_empty());
                for d in devs {
                    assert!(d.contains("sm_") || d.contains("gfx"), "{d}");
                    assert!(d.contains("GiB total"), "{d}");
                }
            }
        }
    }
    let cpu = reports.iter().find(|r| r.kind == BackendKind::Cpu).unwrap();
    assert!(cpu.devices.is_ok());
    let b = create(BackendKind::Cpu, BackendOptions { device: 0, threads: 2 }).unwrap();
    let mut e = engine(b, &shared("models/stories260K"));
    let ids = e.tokenizer.encode("Once upon a time", true).unwrap();
    assert_eq!(e.generate(&ids, &greedy(4), |_| {}).unwrap().ids.len(), 4);
}

/// Every kernel compiles for AMD and NVIDIA targets where hiprtc / NVRTC are installed (CI installs
/// both); prints which compiler is missing otherwise.
#[test]
fn kernels_compile_for_amd_and_nvidia() {
    use prism::backend::hip::api::Vendor;
    use prism::backend::hip::kernels;
    for (vendor, archs) in [(Vendor::Amd, ["gfx90a", "gfx1030"]), (Vendor::Nvidia, ["sm_80", "sm_90"])] {
        if let Err(why) = kernels::compiler_info(vendor) {
            eprintln!("{vendor:?} kernels not compiled here: {why}");
            continue;
        }
        let archs: Vec<String> = archs.iter().map(|s| s.to_string()).collect();
        let built = kernels::build_all(&archs, |_| {}).unwrap_or_else(|log| panic!("{log}"));
        assert_eq!(built.len(), archs.len() * kernels::SOURCES.len());
        assert!(built.iter().all(|b| b.bytes > 1000), "{built:?}");
    }
}

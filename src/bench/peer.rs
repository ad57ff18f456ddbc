//! Peers measured in the same run: llama.cpp's `llama-bench` on the same GGUF with matching settings,
//! one repetition per call (so its repetitions interleave with prism's), its JSON parsed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::BenchError;
use crate::backend::BackendKind;

/// A peer given as `[BACKEND:]llama.cpp=PATH`: which backends' rows it is compared with (all when no
/// backend is named) and the `llama-bench` binary.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSpec {
    /// Only rows of this backend (e.g. `cuda` against llama.cpp CUDA, `wgpu` against llama.cpp Vulkan).
    pub backend: Option<BackendKind>,
    /// The `llama-bench` executable.
    pub llama_bench: PathBuf,
}

impl PeerSpec {
    /// Parses `[BACKEND:]llama.cpp=PATH`; PATH is the `llama-bench` binary or a directory holding it
    /// (directly or in `bin/`). The path must exist.
    pub fn parse(spec: &str) -> Result<PeerSpec, BenchError> {
        let bad = |detail: String| BenchError::Peer { spec: spec.to_string(), detail };
        let (name, path) =
            spec.split_once('=').ok_or_else(|| bad("expected [BACKEND:]llama.cpp=PATH".into()))?;
        let (backend, name) = match name.split_once(':') {
            Some((b, n)) => {
                let kind = BackendKind::CONCRETE
                    .into_iter()
                    .find(|k| k.name() == b)
                    .ok_or_else(|| bad(format!("unknown backend `{b}` (cpu, wgpu, hip, cuda)")))?;
                (Some(kind), n)
            }
            None => (None, name),
        };
        if name != "llama.cpp" {
            return Err(bad(format!("unknown peer `{name}`: the supported peer is llama.cpp")));
        }
        let path = Path::new(path);
        let llama_bench = [path.to_path_buf(), path.join("llama-bench"), path.join("bin/llama-bench")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                bad(format!(
                    "no llama-bench at {} (give the binary or a directory holding it)",
                    path.display()
                ))
            })?;
        Ok(PeerSpec { backend, llama_bench })
    }

    /// Whether this peer is compared with rows of `backend`.
    pub fn applies_to(&self, backend: BackendKind) -> bool {
        self.backend.is_none_or(|b| b == backend)
    }

    /// Runs one repetition of one test (`n_prompt` > 0 for pp, else `n_gen` for tg) on `model`.
    pub fn run_once(&self, model: &Path, test: PeerTest) -> Result<PeerSample, String> {
        let mut cmd = Command::new(&self.llama_bench);
        cmd.arg("-m").arg(model);
        cmd.args(["-p", &test.n_prompt.to_string(), "-n", &test.n_gen.to_string(), "-r", "1"]);
        cmd.args(["-t", &test.threads.to_string(), "-ngl", &test.gpu_layers.to_string(), "-o", "json"]);
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", self.llama_bench.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            return Err(format!(
                "llama-bench exited with {}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        parse_llama_bench_json(&String::from_utf8_lossy(&out.stdout), test.n_prompt, test.n_gen)
    }
}

/// One llama-bench call's settings.
#[derive(Clone, Copy, Debug)]
pub struct PeerTest {
    /// Prompt tokens (pp), else 0.
    pub n_prompt: usize,
    /// Generated tokens (tg), else 0.
    pub n_gen: usize,
    /// CPU threads (`-t`).
    pub threads: usize,
    /// Layers offloaded to the GPU (`-ngl`): 99 for GPU backends, 0 for the CPU.
    pub gpu_layers: u32,
}

/// What one llama-bench result says.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSample {
    /// Tokens per second of each repetition.
    pub samples_ts: Vec<f64>,
    /// llama.cpp's backend list (`CPU`, `CUDA`, `Vulkan`, ...).
    pub backends: String,
    /// llama.cpp's commit.
    pub build_commit: String,
    /// Its device description (`gpu_info`, else `cpu_info`).
    pub device: String,
}

/// Finds the result of test (`n_prompt`, `n_gen`) in llama-bench's `-o json` output (an array of test
/// objects; anything printed before the array is ignored) and reads its `samples_ts`, or `avg_ts` when
/// an older build has no samples.
pub fn parse_llama_bench_json(stdout: &str, n_prompt: usize, n_gen: usize) -> Result<PeerSample, String> {
    let start = stdout.find('[').ok_or("llama-bench printed no JSON array")?;
    let tests: Vec<Value> = serde_json::from_str(&stdout[start..])
        .map_err(|e| format!("llama-bench JSON does not parse: {e}"))?;
    let matches = |t: &&Value, key: &str, want: usize| t[key].as_u64() == Some(want as u64);
    let t = tests
        .iter()
        .find(|t| matches(t, "n_prompt", n_prompt) && matches(t, "n_gen", n_gen))
        .ok_or_else(|| format!("llama-bench JSON has no test with n_prompt {n_prompt}, n_gen {n_gen}"))?;
    let samples: Vec<f64> = match t["samples_ts"].as_array() {
        Some(a) => a.iter().filter_map(Value::as_f64).collect(),
        None => t["avg_ts"].as_f64().into_iter().collect(),
    };
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(format!("llama-bench JSON has no usable samples_ts/avg_ts: {}", t["samples_ts"]));
    }
    let text = |key: &str| t[key].as_str().unwrap_or("").to_string();
    let gpu = text("gpu_info");
    Ok(PeerSample {
        samples_ts: samples,
        backends: text("backends"),
        build_commit: text("build_commit"),
        device: if gpu.is_empty() { text("cpu_info") } else { gpu },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of `llama-bench -m stories260K.gguf -p 16 -n 8 -r 3 -t 2 -o json` (CPU build
    /// 0c1e57098b, the machine of benches/RESULTS.md).
    const FIXTURE: &str = include_str!("../../tests/fixtures/llama-bench-stories260K.json");

    #[test]
    fn reads_the_samples_of_the_matching_test() {
        let pp = parse_llama_bench_json(FIXTURE, 16, 0).unwrap();
        assert_eq!(pp.samples_ts, vec![36674.1, 46177.4, 46777.6]);
        assert_eq!(pp.backends, "CPU");
        assert_eq!(pp.build_commit, "0c1e57098b");
        assert_eq!(pp.device, "AMD EPYC");
        let tg = parse_llama_bench_json(FIXTURE, 0, 8).unwrap();
        assert_eq!(tg.samples_ts, vec![15883.2, 16626.4, 16602.6]);
    }

    #[test]
    fn missing_test_or_garbage_is_an_error_not_a_panic() {
        let e = parse_llama_bench_json(FIXTURE, 512, 0).unwrap_err();
        assert!(e.contains("no test with n_prompt 512"), "{e}");
        assert!(parse_llama_bench_json("main: error loading model", 16, 0).unwrap_err().contains("no JSON"));
        assert!(parse_llama_bench_json("[{\"n_prompt\": 16", 16, 0).unwrap_err().contains("does not parse"));
        let no_samples = r#"[{"n_prompt": 16, "n_gen": 0, "samples_ts": []}]"#;
        assert!(parse_llama_bench_json(no_samples, 16, 0).unwrap_err().contains("no usable"));
    }

    #[test]
    fn avg_ts_stands_in_for_missing_samples_and_log_lines_are_skipped() {
        let old = "loading...\n[{\"n_prompt\": 0, \"n_gen\": 64, \"avg_ts\": 59.5, \"gpu_info\": \"H100\"}]";
        let s = parse_llama_bench_json(old, 0, 64).unwrap();
        assert_eq!(s.samples_ts, vec![59.5]);
        assert_eq!(s.device, "H100");
    }

    #[test]
    fn specs_name_a_peer_and_maybe_a_backend() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("llama-bench"), "").unwrap();
        let p = PeerSpec::parse(&format!("llama.cpp={}", dir.path().display())).unwrap();
        assert_eq!((p.backend, p.llama_bench.clone()), (None, bin.join("llama-bench")));
        assert!(p.applies_to(BackendKind::Cpu) && p.applies_to(BackendKind::Cuda));
        let p = PeerSpec::parse(&format!("cuda:llama.cpp={}", bin.display())).unwrap();
        assert_eq!(p.backend, Some(BackendKind::Cuda));
        assert!(!p.applies_to(BackendKind::Wgpu));
        let err = |s: &str| PeerSpec::parse(s).unwrap_err().to_string();
        assert!(err("llama.cpp=/nonexistent").contains("no llama-bench at /nonexistent"));
        assert!(err("vllm=/x").contains("unknown peer `vllm`"));
        assert!(err("tpu:llama.cpp=/x").contains("unknown backend `tpu`"));
        assert!(err("llama.cpp").contains("expected"));
    }
}

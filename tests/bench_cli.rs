//! `prism bench` end to end: `--backend all --json` rows (CPU, and wgpu where it runs: lavapipe in CI),
//! CSV and SVG outputs, ceilings, peers (missing, failing, and a stand-in llama-bench), bad models.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

fn stories() -> String {
    shared("models/stories260K").to_str().unwrap().to_string()
}

fn stories_gguf() -> String {
    shared("models/stories260K/stories260K.gguf").to_str().unwrap().to_string()
}

fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism")).args(args).output().unwrap()
}

/// `prism bench` with whitespace-separated arguments (paths here hold no spaces).
fn bench(args: &str) -> Output {
    prism(&std::iter::once("bench").chain(args.split_whitespace()).collect::<Vec<_>>())
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_rows(o: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)));
    v.as_array().unwrap().clone()
}

fn f(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {row}"))
}

/// Fields every successful row has, positive.
fn check_row(row: &Value, reps: usize) {
    for key in ["model", "model_filename", "backend", "device", "test"] {
        assert!(!row[key].as_str().unwrap().is_empty(), "{key} empty in {row}");
    }
    let samples = row["samples_ts"].as_array().unwrap();
    assert_eq!(samples.len(), reps, "{row}");
    assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{row}");
    let (min, med, max) = (f(row, "min_ts"), f(row, "median_ts"), f(row, "max_ts"));
    assert!(0.0 < min && min <= med && med <= max, "{row}");
    assert!(f(row, "avg_ts") >= min && f(row, "avg_ts") <= max, "{row}");
    assert!(f(row, "stddev_ts") >= 0.0, "{row}");
    assert!(f(row, "gbps") > 0.0 && f(row, "gflops") > 0.0, "{row}");
    assert!(row["model_n_params"].as_u64().unwrap() > 200_000, "{row}");
    assert!(row["model_size"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["reps"].as_u64(), Some(reps as u64));
    assert!(row["error"].is_null(), "{row}");
    if row["n_prompt"].as_u64().unwrap() > 0 {
        assert!(f(row, "ttft_ms") > 0.0, "{row}");
    } else {
        assert!(row["ttft_ms"].is_null(), "{row}");
    }
}

#[test]
fn backend_all_json_has_one_row_per_backend_and_test() {
    let o = bench(&format!("--model {} --backend all -p 16 -n 8 -b 1,2 -r 2 --json", stories()));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_rows(&o);
    let backends: BTreeSet<&str> = rows.iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert!(backends.contains("cpu"), "{backends:?}");
    if std::env::var("PRISM_REQUIRE_WGPU").as_deref() == Ok("1") {
        assert!(backends.contains("wgpu"), "PRISM_REQUIRE_WGPU=1 but no wgpu rows: {}", stderr(&o));
    } else if !backends.contains("wgpu") {
        eprintln!("no wgpu rows here (no adapter); set PRISM_REQUIRE_WGPU=1 to make this a failure");
    }
    for b in &backends {
        let tests: Vec<(String, u64)> = rows
            .iter()
            .filter(|r| r["backend"] == *b)
            .map(|r| (r["test"].as_str().unwrap().to_string(), r["n_batch"].as_u64().unwrap()))
            .collect();
        let want = [("pp16", 1), ("tg8", 1), ("tg8", 2)].map(|(t, n)| (t.to_string(), n));
        assert_eq!(tests, want, "{b}");
    }
    for row in &rows {
        check_row(row, 2);
        // Without --peer or --ceilings these stay empty.
        assert!(row["peer"].is_null() && row["ratio"].is_null() && row["pct_ceiling_gbps"].is_null());
    }
}

#[test]
fn csv_and_svg_files_are_written_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, svg) = (dir.path().join("rows.csv"), dir.path().join("chart.svg"));
    let o = bench(&format!(
        "--model {} --backend cpu -p 16 -n 8 -r 2 --csv {} --plot {}",
        stories(),
        csv.display(),
        svg.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    // The table still goes to stdout.
    assert!(stdout(&o).contains("| stories260K | cpu | pp16 | 1 |"), "{}", stdout(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert!(header.starts_with(&["model", "model_filename"]), "{}", lines[0]);
    for line in &lines[1..] {
        assert_eq!(csv_fields(line).len(), header.len(), "{line}");
    }
    let col = |line: &str, name: &str| -> String {
        csv_fields(line)[header.iter().position(|h| *h == name).unwrap()].clone()
    };
    assert!(col(lines[1], "device").contains("threads"), "{}", lines[1]);
    assert_eq!(col(lines[1], "test"), "pp16");
    assert_eq!(col(lines[2], "test"), "tg8");
    assert_eq!(col(lines[2], "samples_ts").split(';').count(), 2);
    assert!(col(lines[2], "median_ts").parse::<f64>().unwrap() > 0.0);

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"), "{chart}");
    assert!(chart.contains("stories260K") && chart.contains("prism cpu") && chart.contains("<rect"));
    assert_eq!(chart.matches("<svg").count(), chart.matches("</svg>").count());

    // `--csv` without a file prints the CSV instead of the table.
    let o = bench(&format!("--model {} --backend cpu -p 8 -n 0 -r 1 --csv", stories()));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("model,model_filename,") && out.lines().count() == 2, "{out}");
}

#[test]
fn ceilings_alone_and_beside_a_run() {
    let o = bench("--ceilings --backend cpu -r 2 --json");
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_rows(&o);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["backend"], "cpu");
    assert!(rows[0]["copy_gbps"]["median"].as_f64().unwrap() > 0.1, "{}", rows[0]);
    assert!(rows[0]["gemm_gflops"]["median"].as_f64().unwrap() > 0.1, "{}", rows[0]);
    assert_eq!(rows[0]["copy_gbps_samples"].as_array().unwrap().len(), 2);

    let o = bench(&format!("--ceilings --model {} --backend cpu -p 16 -n 8 -r 1 --json", stories()));
    assert!(o.status.success(), "{}", stderr(&o));
    for row in json_rows(&o) {
        check_row(&row, 1);
        let (pct, gbps, ceiling) = (f(&row, "pct_ceiling_gbps"), f(&row, "gbps"), f(&row, "ceiling_gbps"));
        assert!((pct - 100.0 * gbps / ceiling).abs() < 1e-6 * pct.max(1.0), "{row}");
        assert!(f(&row, "pct_ceiling_gflops") > 0.0, "{row}");
    }
}

#[test]
fn a_missing_peer_or_model_is_a_clear_error() {
    let o = bench(&format!("--model {} --backend cpu --peer llama.cpp=/nonexistent", stories_gguf()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--peer llama.cpp=/nonexistent: no llama-bench at /nonexistent"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"));

    let o = bench("--model /no/such/model.gguf --backend cpu");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("model /no/such/model.gguf does not exist"), "{}", stderr(&o));

    let o = bench(&format!("--model {} --backend tpu", stories()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown backend `tpu`"), "{}", stderr(&o));
}

#[test]
fn a_corrupt_model_fails_its_rows_and_the_exit_code_but_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let o = bench(&format!(
        "--model {} --model {} --backend cpu -p 8 -n 4 -r 1 --json",
        bad.display(),
        stories()
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 of 4 bench rows failed"), "{}", stderr(&o));
    let rows = json_rows(&o);
    assert_eq!(rows.len(), 4);
    for row in &rows[..2] {
        assert!(row["error"].as_str().unwrap().len() > 10, "{row}");
        assert!(row["median_ts"].is_null(), "{row}");
    }
    for row in &rows[2..] {
        check_row(row, 1);
    }
}

/// Splits one CSV line into fields (quoted fields may hold commas and doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// Writes an executable stand-in for llama-bench.
fn fake_llama_bench(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("llama-bench");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_peer_runs_once_per_repetition_with_matching_settings_and_gives_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    // Answers like llama-bench -o json: 100 t/s for whatever -p/-n it was given; logs its arguments.
    let body = format!(
        r#"echo "$@" >> {log}
p=0; n=0
while [ $# -gt 0 ]; do case "$1" in -p) p=$2;; -n) n=$2;; esac; shift; done
echo '[{{"n_prompt": '$p', "n_gen": '$n', "samples_ts": [100.0], "backends": "FAKE", "build_commit": "abc123"}}]'"#,
        log = log.display()
    );
    fake_llama_bench(dir.path(), &body);
    let peer = format!("llama.cpp={}", dir.path().display());
    let o = bench(&format!(
        "--model {} --backend cpu -t 2 -p 16 -n 8 -b 1,2 -r 3 --peer {peer} --json",
        stories_gguf()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_rows(&o);
    assert_eq!(rows.len(), 3);
    for row in &rows[..2] {
        check_row(row, 3);
        assert_eq!(row["peer"], "llama.cpp");
        assert_eq!(row["peer_samples_ts"].as_array().unwrap().len(), 3, "{row}");
        assert_eq!(row["peer_median_ts"].as_f64(), Some(100.0));
        assert_eq!(
            (row["peer_backends"].as_str(), row["peer_build"].as_str()),
            (Some("FAKE"), Some("abc123"))
        );
        assert!((f(row, "ratio") - f(row, "median_ts") / 100.0).abs() < 1e-9, "{row}");
    }
    // Batched decode has no llama-bench counterpart: said so, no calls.
    assert!(rows[2]["peer_error"].as_str().unwrap().contains("one sequence"), "{}", rows[2]);
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 6, "{calls:?}");
    for c in &calls[..3] {
        assert!(c.contains("-p 16 -n 0 -r 1 -t 2 -ngl 0 -o json") && c.contains("stories260K.gguf"), "{c}");
    }
    for c in &calls[3..] {
        assert!(c.contains("-p 0 -n 8 -r 1 -t 2 -ngl 0 -o json"), "{c}");
    }
    let table = bench(&format!("--model {} --backend cpu -p 16 -n 0 -r 1 --peer {peer}", stories_gguf()));
    assert!(stdout(&table).contains("| 100.0 |"), "{}", stdout(&table));
}

#[test]
fn a_failing_peer_is_reported_in_its_row_and_prism_numbers_stay() {
    let dir = tempfile::tempdir().unwrap();
    fake_llama_bench(dir.path(), "echo 'error: failed to load model' >&2\nexit 3");
    let peer = format!("llama.cpp={}", dir.path().join("llama-bench").display());
    let o = bench(&format!("--model {} --backend cpu -p 8 -n 4 -r 2 --peer {peer} --json", stories_gguf()));
    assert!(o.status.success(), "{}", stderr(&o));
    for row in json_rows(&o) {
        check_row(&row, 2);
        let e = row["peer_error"].as_str().unwrap();
        assert!(e.contains("exited with") && e.contains("failed to load model"), "{e}");
        assert!(row["ratio"].is_null() && row["peer_median_ts"].is_null());
    }
    assert!(stderr(&o).contains("llama.cpp failed"), "{}", stderr(&o));

    // An HF directory has no GGUF for llama-bench: the peer is skipped, with the reason.
    let o = bench(&format!("--model {} --backend cpu -p 8 -n 0 -r 1 --peer {peer} --json", stories()));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json_rows(&o);
    assert!(rows[0]["peer_error"].as_str().unwrap().contains("Hugging Face directory"), "{}", rows[0]);
}

//! How bench results are written: a markdown table (stdout), JSON (an array of rows) and CSV (one line
//! per row, the JSON's fields as columns).

use std::fmt::Write as _;

use super::BenchRow;
use super::ceilings::Ceilings;

/// Columns of the CSV, in order (the JSON field names).
pub const CSV_COLUMNS: [&str; 38] = [
    "model",
    "model_filename",
    "model_size",
    "model_n_params",
    "backend",
    "backends",
    "device",
    "n_threads",
    "test",
    "n_prompt",
    "n_gen",
    "n_batch",
    "reps",
    "samples_ts",
    "median_ts",
    "avg_ts",
    "min_ts",
    "max_ts",
    "stddev_ts",
    "ttft_ms",
    "gbps",
    "gflops",
    "ceiling_gbps",
    "ceiling_gflops",
    "pct_ceiling_gbps",
    "pct_ceiling_gflops",
    "peer",
    "peer_samples_ts",
    "peer_median_ts",
    "peer_avg_ts",
    "peer_stddev_ts",
    "peer_backends",
    "peer_build",
    "ratio",
    "peer_error",
    "error",
    "prism_version",
    "unix_time",
];

/// Rows as CSV with a header line. Sample lists are `;`-separated inside one field; fields holding a
/// comma, quote or newline are quoted.
pub fn csv(rows: &[BenchRow]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for r in rows {
        let json = serde_json::to_value(r).unwrap_or_default();
        let fields: Vec<String> = CSV_COLUMNS.iter().map(|&c| csv_field(&json[c])).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

fn with_pct(v: Option<f64>, pct: Option<f64>) -> String {
    match (v, pct) {
        (Some(v), Some(p)) => format!("{v:.1} ({p:.0} %)"),
        (v, _) => num(v, 1),
    }
}

/// A markdown table of the rows, devices listed above it and failures below it.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = String::new();
    let mut devices: Vec<(&str, &str)> =
        rows.iter().map(|r| (r.backend.as_str(), r.device.as_str())).collect();
    devices.dedup();
    for (b, d) in devices.iter().filter(|(_, d)| !d.is_empty()) {
        let _ = writeln!(out, "{b}: {d}");
    }
    let peer = rows.iter().any(|r| r.peer.is_some());
    out.push_str("| model | backend | test | b | t/s median | min – max | ± sd | TTFT ms | GB/s | GFLOP/s |");
    out.push_str(if peer { " llama.cpp t/s | prism / llama.cpp |\n" } else { "\n" });
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    out.push_str(if peer { "---:|---:|\n" } else { "\n" });
    for r in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {} – {} | {} | {} | {} | {} |",
            r.model,
            r.backend,
            r.test,
            r.n_batch,
            if r.error.is_some() { "failed".into() } else { num(r.median_ts, 1) },
            num(r.min_ts, 1),
            num(r.max_ts, 1),
            num(r.stddev_ts, 1),
            num(r.ttft_ms, 1),
            with_pct(r.gbps, r.pct_ceiling_gbps),
            with_pct(r.gflops, r.pct_ceiling_gflops),
        );
        if peer {
            let peer_ts = match (&r.peer_median_ts, &r.peer_error) {
                (Some(m), _) => format!("{m:.1}"),
                (None, Some(e)) if e.starts_with("skipped") => "skipped".into(),
                (None, Some(_)) => "failed".into(),
                (None, None) => "–".into(),
            };
            let _ =
                write!(out, " {peer_ts} | {} |", r.ratio.map_or_else(|| "–".into(), |x| format!("{x:.2}×")));
        }
        out.push('\n');
    }
    let mut skips: Vec<&str> = rows.iter().filter_map(|r| r.peer_error.as_deref()).collect();
    skips.retain(|e| e.starts_with("skipped"));
    skips.sort_unstable();
    skips.dedup();
    for reason in skips {
        let _ = writeln!(out, "llama.cpp {reason}");
    }
    for r in rows {
        let what = format!("{} {} {} b{}", r.model, r.backend, r.test, r.n_batch);
        if let Some(e) = &r.error {
            let _ = writeln!(out, "{what}: prism failed: {e}");
        }
        if let Some(e) = r.peer_error.as_ref().filter(|e| !e.starts_with("skipped")) {
            let _ = writeln!(out, "{what}: llama.cpp failed: {e}");
        }
    }
    out
}

/// A markdown table of measured ceilings.
pub fn ceilings_table(ceilings: &[Ceilings]) -> String {
    let mut out = String::from(
        "| backend | device | copy GB/s (read+write) median | min – max | GEMM GFLOP/s median | min – max | GEMM m×n×k (f16 weights) |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for c in ceilings {
        let (m, g) = (&c.copy_gbps, &c.gemm_gflops);
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} – {:.1} | {:.1} | {:.1} – {:.1} | {}×{}×{} |",
            c.backend,
            c.device,
            m.median,
            m.min,
            m.max,
            g.median,
            g.min,
            g.max,
            c.sizes.gemm_m,
            c.sizes.gemm_n,
            c.sizes.gemm_k
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> BenchRow {
        BenchRow {
            model: "m, \"quoted\"".into(),
            backend: "cpu".into(),
            test: "tg16".into(),
            n_gen: 16,
            n_batch: 1,
            samples_ts: vec![1.5, 2.0],
            median_ts: Some(1.75),
            peer: Some("llama.cpp".into()),
            peer_error: Some("llama-bench exited with 1".into()),
            unix_time: 1_700_000_000,
            ..BenchRow::default()
        }
    }

    #[test]
    fn csv_has_one_header_and_quotes_awkward_fields() {
        let text = csv(&[row(), row()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), CSV_COLUMNS.len());
        assert!(lines[1].starts_with("\"m, \"\"quoted\"\"\","), "{}", lines[1]);
        assert!(lines[1].contains(",1.5;2.0,1.75,"), "{}", lines[1]);
        assert!(lines[1].ends_with(",1700000000"), "{}", lines[1]);
    }

    #[test]
    fn every_csv_column_is_a_json_field_of_a_row() {
        let json = serde_json::to_value(row()).unwrap();
        for c in CSV_COLUMNS {
            assert!(json.get(c).is_some(), "column {c} is not a field");
        }
    }

    #[test]
    fn table_shows_the_peer_failure_below_the_rows() {
        let t = table(&[row()]);
        assert!(t.contains("| llama.cpp t/s | prism / llama.cpp |"), "{t}");
        assert!(t.contains("| 1.8 |") || t.contains("| 1.7 |") || t.contains("1.75"), "{t}");
        assert!(t.contains("llama.cpp failed: llama-bench exited with 1"), "{t}");
    }
}

//! Prometheus metrics: request counts by endpoint and status, token counters, latency histograms, and the
//! engines' live gauges (queue depth, running sequences, KV-cache use), rendered in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed bucket bounds (seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<(Vec<u64>, f64, u64)>, // per-bucket counts, sum, count
}

/// Bounds for time to first token.
pub const TTFT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Bounds for the time between two tokens of one stream.
pub const ITL_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Histogram {
    /// An empty histogram.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, inner: Mutex::new((vec![0; bounds.len()], 0.0, 0)) }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            g.0[i] += 1;
        }
        g.1 += v;
        g.2 += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&g.0) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", g.2);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", g.1);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", g.2);
    }
}

/// Per-model counters kept by the HTTP side.
#[derive(Debug)]
pub struct ModelMetrics {
    /// Prompt tokens of admitted requests.
    pub prompt_tokens: AtomicU64,
    /// Generated tokens.
    pub generation_tokens: AtomicU64,
    /// Seconds from request arrival to the first generated token.
    pub ttft: Histogram,
    /// Seconds between consecutive tokens of one request.
    pub itl: Histogram,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics {
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
        }
    }
}

/// Requests answered, by endpoint and status.
#[derive(Debug, Default)]
pub struct RequestCounts(Mutex<BTreeMap<(String, u16), u64>>);

impl RequestCounts {
    /// Counts one response.
    pub fn record(&self, endpoint: &str, status: u16) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint.to_string(), status)).or_default() += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP prism_requests_total HTTP requests answered, by endpoint and status.");
        let _ = writeln!(out, "# TYPE prism_requests_total counter");
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for ((endpoint, status), n) in m.iter() {
            let _ = writeln!(out, "prism_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
    }
}

/// One model's numbers at render time.
pub struct ModelSample<'a> {
    /// `model="..",device=".."` labels.
    pub labels: String,
    /// HTTP-side counters.
    pub metrics: &'a ModelMetrics,
    /// Whether the model is loaded.
    pub ready: bool,
    /// Requests queued (not yet running).
    pub queued: usize,
    /// Sequences running.
    pub running: usize,
    /// KV blocks in use and in total.
    pub kv_blocks: (usize, usize),
    /// Preemptions so far.
    pub preemptions: u64,
    /// Sequences cancelled by a client that left.
    pub cancelled: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
}

/// A label value with backslashes, double quotes and newlines escaped as the text format requires.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders everything in the Prometheus text format.
pub fn render(requests: &RequestCounts, models: &[ModelSample]) -> String {
    let mut out = String::new();
    requests.render(&mut out);
    type Get = fn(&ModelSample) -> String;
    let scalars: [(&str, &str, &str, Get); 10] = [
        ("prism_model_ready", "gauge", "1 when the model is loaded and serving.", |m| {
            u8::from(m.ready).to_string()
        }),
        ("prism_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", |m| {
            m.metrics.prompt_tokens.load(Ordering::Relaxed).to_string()
        }),
        ("prism_generation_tokens_total", "counter", "Generated tokens.", |m| {
            m.metrics.generation_tokens.load(Ordering::Relaxed).to_string()
        }),
        ("prism_queue_depth", "gauge", "Requests waiting to be admitted.", |m| m.queued.to_string()),
        ("prism_running_sequences", "gauge", "Sequences in the running batch.", |m| m.running.to_string()),
        ("prism_kv_cache_blocks_used", "gauge", "KV-cache blocks in use.", |m| m.kv_blocks.0.to_string()),
        ("prism_kv_cache_blocks_total", "gauge", "KV-cache blocks in the pool.", |m| {
            m.kv_blocks.1.to_string()
        }),
        ("prism_preemptions_total", "counter", "Sequences preempted for KV-cache room.", |m| {
            m.preemptions.to_string()
        }),
        ("prism_cancelled_total", "counter", "Sequences cancelled because the client left.", |m| {
            m.cancelled.to_string()
        }),
        (
            "prism_prefix_cache_hit_tokens_total",
            "counter",
            "Prompt tokens reused from the prefix cache.",
            |m| m.cached_tokens.to_string(),
        ),
    ];
    for (name, kind, help, get) in scalars {
        family(&mut out, name, kind, help);
        for m in models {
            let _ = writeln!(out, "{name}{{{}}} {}", m.labels, get(m));
        }
    }
    family(&mut out, "prism_kv_cache_usage_ratio", "gauge", "Fraction of KV-cache blocks in use.");
    for m in models {
        let ratio = m.kv_blocks.0 as f64 / m.kv_blocks.1.max(1) as f64;
        let _ = writeln!(out, "prism_kv_cache_usage_ratio{{{}}} {ratio}", m.labels);
    }
    let ttft = "prism_time_to_first_token_seconds";
    family(&mut out, ttft, "histogram", "Seconds from request arrival to the first token.");
    for m in models {
        m.metrics.ttft.render(&mut out, ttft, &m.labels);
    }
    let itl = "prism_inter_token_latency_seconds";
    family(&mut out, itl, "histogram", "Seconds between consecutive tokens of a request.");
    for m in models {
        m.metrics.itl.render(&mut out, itl, &m.labels);
    }
    out
}

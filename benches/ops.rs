//! Per-op microbenchmarks on every backend that starts here (`cargo bench --bench ops`): gemv per
//! weight type (GB/s of weights), GEMM (GFLOP/s) and attention at several context lengths (GFLOP/s).
//!
//! Criterion prints throughput as decimal bytes/s (GB/s) for the gemv groups and as elements/s for the others, where
//! one element is one floating-point operation (so "Gelem/s" reads GFLOP/s). Backends that do not
//! start are listed with the reason and skipped. Filter as usual: `cargo bench --bench ops -- cpu/gemv`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use prism::backend::{
    AttnShape, Backend, BackendKind, BackendOptions, BufId, DType, KvSpec, MatmulMode, StepBatch, create,
};
use prism::bench::ceilings::random_weight;

/// Sizes of one run: a Llama-1B projection `[rows, cols]` and a prefill chunk of `gemm_rows` under
/// `cargo bench`; small ones under `cargo test --all-targets` (criterion then runs each benchmark once
/// as a smoke test, and CI should not spend minutes on it).
struct Sizes {
    rows: usize,
    cols: usize,
    gemm_rows: usize,
    decode_ctx: &'static [usize],
    prefill: &'static [usize],
}

fn sizes() -> Sizes {
    if std::env::args().any(|a| a == "--bench") {
        Sizes { rows: 4096, cols: 2048, gemm_rows: 256, decode_ctx: &[256, 1024, 4096], prefill: &[128, 512] }
    } else {
        Sizes { rows: 256, cols: 256, gemm_rows: 32, decode_ctx: &[64], prefill: &[32] }
    }
}

/// Attention shape of Llama-3.2-1B: 32 query heads, 8 KV heads of 64.
const SHAPE: AttnShape = AttnShape { heads: 32, kv_heads: 8, head_dim: 64, scale: 0.125, window: None };
const BLOCK: usize = 16;

/// Every backend that starts here, with its name; the others are reported and skipped.
fn backends() -> Vec<(String, Box<dyn Backend>)> {
    let mut out = Vec::new();
    for kind in [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Hip, BackendKind::Cuda] {
        match create(kind, BackendOptions { device: 0, threads: 0 }) {
            Ok(b) => {
                eprintln!("benchmarking {}: {}", kind.name(), b.info().device);
                out.push((kind.name().to_string(), b));
            }
            Err(e) => eprintln!("SKIPPED {}: {e}", kind.name()),
        }
    }
    out
}

/// Records `op`, submits, and waits by reading one element of `wait`.
fn run_and_wait(b: &mut dyn Backend, wait: BufId, op: &mut dyn FnMut(&mut dyn Backend)) {
    op(b);
    b.submit().expect("submit");
    b.download(wait, &mut [0.0]).expect("download");
}

fn gemv_and_gemm(c: &mut Criterion, name: &str, b: &mut dyn Backend, z: &Sizes) {
    let (rows, cols, gemm_rows) = (z.rows, z.cols, z.gemm_rows);
    let x = b.upload(&(0..gemm_rows * cols).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect::<Vec<_>>());
    let x = x.expect("upload x"); // [gemm_rows, cols]
    let out = b.alloc(gemm_rows * rows).expect("alloc out"); // [gemm_rows, rows]
    let mut gemv = c.benchmark_group(format!("{name}/gemv"));
    let mut weights = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let t = random_weight("w", dtype, rows, cols, 7).expect("weight bytes");
        let bytes = t.bytes.len() as u64;
        let w = match b.upload_weight(std::slice::from_ref(&t), None) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("SKIPPED {name} gemv {dtype}: {e}");
                continue;
            }
        };
        weights.push((dtype, w));
        gemv.throughput(Throughput::BytesDecimal(bytes));
        gemv.bench_function(BenchmarkId::new(dtype.name(), format!("{rows}x{cols}")), |bench| {
            bench.iter(|| {
                run_and_wait(b, out, &mut |b| b.matmul(w, x, out, 1, MatmulMode::Overwrite).expect("gemv"))
            })
        });
    }
    gemv.finish();
    let mut gemm = c.benchmark_group(format!("{name}/gemm"));
    gemm.throughput(Throughput::Elements((2 * gemm_rows * rows * cols) as u64));
    for (dtype, w) in weights.into_iter().filter(|(d, _)| [DType::F16, DType::Q4_0].contains(d)) {
        let id = BenchmarkId::new(dtype.name(), format!("{gemm_rows}x{rows}x{cols}"));
        gemm.bench_function(id, |bench| {
            bench.iter(|| {
                run_and_wait(b, out, &mut |b| {
                    b.matmul(w, x, out, gemm_rows, MatmulMode::Overwrite).expect("gemm")
                })
            })
        });
    }
    gemm.finish();
}

/// Decode attention (one query over `ctx` cached positions) and prefill attention (`ctx` queries,
/// causal), on a zeroed cache: the work does not depend on the values.
fn attention(c: &mut Criterion, name: &str, b: &mut dyn Backend, z: &Sizes) {
    let mut group = c.benchmark_group(format!("{name}/attention"));
    let max_ctx = z.decode_ctx.iter().chain(z.prefill).copied().max().unwrap_or(BLOCK);
    let blocks: Vec<u32> = (0..(max_ctx / BLOCK) as u32).collect();
    let spec = KvSpec { layers: 1, blocks: blocks.len(), block_size: BLOCK, kv_heads: 8, head_dim: 64 };
    let kv = b.alloc_kv(spec).expect("alloc kv");
    let q = b.upload(&vec![0.01; 512 * SHAPE.q_width()]).expect("upload q"); // [512, heads·head_dim]
    let out = b.alloc(512 * SHAPE.q_width()).expect("alloc out"); // [512, heads·head_dim]
    let per_pair = 4 * SHAPE.heads * SHAPE.head_dim; // q·k and p·v, 2 flops each, per (query, key)
    for &ctx in z.decode_ctx {
        let step = StepBatch::single(&[0], ctx - 1, &blocks[..ctx / BLOCK]);
        group.throughput(Throughput::Elements((per_pair * ctx) as u64));
        group.bench_function(BenchmarkId::new("decode", ctx), |bench| {
            b.set_step(&step).expect("set_step");
            bench.iter(|| {
                run_and_wait(b, out, &mut |b| b.attention(q, kv, 0, out, SHAPE, 1).expect("attention"))
            })
        });
    }
    for &n in z.prefill {
        let step = StepBatch::single(&vec![0; n], 0, &blocks[..n / BLOCK]);
        group.throughput(Throughput::Elements((per_pair * n * (n + 1) / 2) as u64));
        group.bench_function(BenchmarkId::new("prefill", n), |bench| {
            b.set_step(&step).expect("set_step");
            bench.iter(|| {
                run_and_wait(b, out, &mut |b| b.attention(q, kv, 0, out, SHAPE, n).expect("attention"))
            })
        });
    }
    group.finish();
}

fn ops(c: &mut Criterion) {
    let z = sizes();
    for (name, mut b) in backends() {
        gemv_and_gemm(c, &name, b.as_mut(), &z);
        attention(c, &name, b.as_mut(), &z);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ops
}
criterion_main!(benches);

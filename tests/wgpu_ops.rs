//! wgpu backend op tests: every op of the shared table against the CPU backend (NMSE; quantized
//! weights to 1e-3), argument errors, weights split across bindings, and the device report. Runs on
//! whatever adapter is first (lavapipe in CI). Without an adapter the tests say why and pass, unless
//! `PRISM_REQUIRE_WGPU=1` (set by `scripts/test.sh`) makes that a failure.

#[path = "common/ops.rs"]
mod ops;

use prism::backend::cpu::CpuBackend;
use prism::backend::wgpu::{WgpuBackend, WgpuOptions, kernels};
use prism::backend::{AttnShape, Backend, DType, HostBytes, HostTensor, KvSpec, MatmulMode, StepBatch};

/// The first adapter's backend, or `None` (with the reason printed) where none exists and none is
/// required.
fn backend(max_binding: Option<u64>) -> Option<WgpuBackend> {
    let opts = WgpuOptions { max_chunk_bytes: max_binding.unwrap_or(u64::MAX), ..Default::default() };
    with_options(opts)
}

fn with_options(opts: WgpuOptions) -> Option<WgpuBackend> {
    match WgpuBackend::with_options(0, opts) {
        Ok(b) => {
            eprintln!("wgpu device: {}", b.info().device);
            Some(b)
        }
        Err(e) if std::env::var("PRISM_REQUIRE_WGPU").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: no wgpu adapter here ({e}); set PRISM_REQUIRE_WGPU=1 to make this fail");
            None
        }
        Err(e) => panic!("PRISM_REQUIRE_WGPU=1 but the wgpu backend does not start: {e}"),
    }
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(mut gpu) = backend(None) else { return };
    let mut cpu = CpuBackend::new(2).unwrap();
    let compared = ops::compare_backends_where(&mut gpu, &mut cpu, &|_| true);
    eprintln!("{compared} cases compared");
    assert!(compared > 150, "only {compared} cases ran");
}

#[test]
fn workgroup_reductions_match_the_cpu_backend_too() {
    let Some(mut gpu) = with_options(WgpuOptions { subgroups: false, ..Default::default() }) else { return };
    let mut cpu = CpuBackend::new(2).unwrap();
    ops::compare_backends_where(&mut gpu, &mut cpu, &|_| true);
}

#[test]
fn every_op_matches_the_f64_reference() {
    let Some(mut gpu) = backend(None) else { return };
    ops::check_cases(&mut gpu, &ops::cases(), ops::MAX_NMSE_QUANT);
}

#[test]
fn bad_arguments_are_invalid_argument() {
    let Some(mut gpu) = backend(None) else { return };
    ops::check_errors(&mut gpu);
}

/// A weight larger than one binding (here a 4 KiB limit) is cut into chunks by rows, for matmul
/// (gemv and GEMM) and embedding alike, and gives the same numbers as one piece.
#[test]
fn weights_larger_than_a_binding_are_split() {
    let Some(mut small) = backend(Some(4096)) else { return };
    let Some(mut whole) = backend(None) else { return };
    for dtype in [DType::F32, DType::F16, DType::Q4_1, DType::Q8_0] {
        let (rows, cols) = (300, 64);
        let vals: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 263) as f32 - 131.0) / 97.0).collect();
        let t = HostTensor::from_f32("w", vec![rows, cols], &vals).unwrap();
        let t = match dtype {
            DType::F32 => t,
            DType::F16 => {
                let b: Vec<u8> = vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
                HostTensor::new("w", dtype, vec![rows, cols], HostBytes::Owned(b.into())).unwrap()
            }
            _ => {
                let b = prism::backend::quant::quantize(dtype, &vals).unwrap();
                HostTensor::new("w", dtype, vec![rows, cols], HostBytes::Owned(b.into())).unwrap()
            }
        };
        let mut results = Vec::new();
        for b in [&mut small as &mut dyn Backend, &mut whole] {
            let w = b.upload_weight(std::slice::from_ref(&t), None).unwrap();
            let mut got = Vec::new();
            for tokens in [1, 3, 20] {
                let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
                let (xb, ob) = (b.upload(&x).unwrap(), b.alloc(tokens * rows).unwrap());
                b.matmul(w, xb, ob, tokens, MatmulMode::Overwrite).unwrap();
                let mut o = vec![0f32; tokens * rows];
                b.download(ob, &mut o).unwrap();
                got.extend(o);
            }
            let tokens: Vec<u32> = vec![0, 299, 150, 17];
            let eb = b.alloc(tokens.len() * cols).unwrap();
            b.set_step(&flat(&tokens)).unwrap();
            b.embed(w, eb, tokens.len()).unwrap();
            let mut e = vec![0f32; tokens.len() * cols];
            b.download(eb, &mut e).unwrap();
            got.extend(e);
            results.push(got);
        }
        assert_eq!(results[0], results[1], "{dtype}: split and whole weights differ");
    }
}

/// Decode steps through the fused kernel (`rope_attention`: RoPE, the KV store and attention in one
/// dispatch) give the same numbers (bit for bit on lavapipe) as `rope_store_kv` then `attention`, on
/// caches of their own, for
/// the vec4 and the scalar kernel; later steps read the keys and values the fused kernel stored.
#[test]
fn fused_decode_attention_matches_the_two_dispatches() {
    let Some(mut b) = backend(None) else { return };
    for (heads, kv_heads, head_dim, window) in [(6, 2, 64, None), (3, 1, 34, Some(7))] {
        let shape = AttnShape { heads, kv_heads, head_dim, scale: 0.125, window };
        let spec = KvSpec { layers: 1, blocks: 12, block_size: 4, kv_heads, head_dim };
        let (qw, xw) = (shape.q_width(), shape.qkv_width());
        let step = |toks: &[(u32, u32)]| StepBatch {
            tokens: vec![0; toks.len()],
            positions: toks.iter().map(|t| t.1).collect(),
            token_seq: toks.iter().map(|t| t.0).collect(),
            block_table_start: vec![0, 5],
            block_table_len: vec![5, 5],
            block_tables: vec![7, 2, 9, 0, 4, 11, 1, 8, 3, 6],
            output_rows: vec![],
        };
        let inv: Vec<f32> =
            (0..head_dim / 2).map(|i| 1.0 / 10000f32.powf(i as f32 / head_dim as f32)).collect();
        let inv = b.upload(&inv).unwrap();
        let (fused, plain) = (b.alloc_kv(spec).unwrap(), b.alloc_kv(spec).unwrap());
        let prefill: Vec<(u32, u32)> = (0..9).map(|p| (0, p)).chain((0..5).map(|p| (1, p))).collect();
        let decode: [&[(u32, u32)]; 4] = [&[(0, 9), (1, 5)], &[(1, 6)], &[(1, 7), (0, 10)], &[(0, 11)]];
        for (k, toks) in std::iter::once(&prefill[..]).chain(decode).enumerate() {
            let n = toks.len();
            let x: Vec<f32> =
                (0..n * xw).map(|i| (((i + 131 * k) * 7919 % 263) as f32 - 131.0) / 97.0).collect();
            b.set_step(&step(toks)).unwrap();
            let (xb, q, out) = (b.upload(&x).unwrap(), b.alloc(n * qw).unwrap(), b.alloc(n * qw).unwrap());
            let mut got = Vec::new();
            for kv in [fused, plain] {
                if k > 0 && kv == fused {
                    b.rope_attention(xb, inv, q, kv, 0, out, shape, n).unwrap();
                } else {
                    b.rope_store_kv(xb, inv, q, kv, 0, shape, n).unwrap();
                    b.attention(q, kv, 0, out, shape, n).unwrap();
                }
                let mut o = vec![0f32; n * qw];
                b.download(out, &mut o).unwrap();
                got.push(o);
            }
            let diff = got[0].iter().zip(&got[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-6, "head_dim {head_dim}, step {k}: fused and separate differ by {diff}");
        }
    }
}

fn flat(tokens: &[u32]) -> prism::backend::StepBatch {
    prism::backend::StepBatch {
        tokens: tokens.to_vec(),
        positions: (0..tokens.len() as u32).collect(),
        token_seq: vec![0; tokens.len()],
        block_table_start: vec![0],
        block_table_len: vec![0],
        block_tables: vec![],
        output_rows: vec![],
    }
}

/// K-quants have no WGSL kernels: they are stored as f16 and compared against the CPU backend like
/// every other dtype (the table's Q4_K/Q6_K cases run in `every_op_matches_the_cpu_backend`).
#[test]
fn k_quants_are_widened_not_refused() {
    assert!(!kernels::supports(DType::Q6K) && !kernels::supports(DType::Q4K));
    let Some(mut gpu) = backend(None) else { return };
    let t = HostTensor::new("blk.0.q6", DType::Q6K, vec![1, 256], HostBytes::Owned(vec![0u8; 210].into()))
        .unwrap();
    assert!(gpu.upload_weight(&[t], None).is_ok());
}

#[test]
fn devices_report_features_and_limits() {
    let Some(gpu) = backend(None) else { return };
    let d = gpu.info().device;
    for needle in ["f16", "subgroup", "cooperative matrix", "max binding"] {
        assert!(d.contains(needle), "{d}");
    }
}

//! wgpu backend op tests: every op of the shared table against the CPU backend (NMSE; quantized
//! weights to 1e-3), argument errors, weights split across bindings, and the device report. Runs on
//! whatever adapter is first (lavapipe in CI). Without an adapter the tests say why and pass, unless
//! `PRISM_REQUIRE_WGPU=1` (set by `scripts/test.sh`) makes that a failure.

#[path = "common/ops.rs"]
mod ops;

use prism::backend::cpu::CpuBackend;
use prism::backend::wgpu::{WgpuBackend, WgpuOptions, kernels};
use prism::backend::{Backend, DType, HostBytes, HostTensor, MatmulMode};

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

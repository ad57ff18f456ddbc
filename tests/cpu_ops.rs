//! CPU backend op tests: every op against scalar f64 references at every SIMD level this CPU runs,
//! argument errors, determinism, and weights read from mapped (aligned or not) file bytes.

#[path = "common/ops.rs"]
mod ops;

use std::sync::Arc;

use prism::backend::cpu::{CpuBackend, simd_level};
use prism::backend::{Backend, DType, HostBytes, HostTensor, MatmulMode};

const LEVELS: [&str; 4] = ["avx512f", "avx2+fma", "neon", "scalar"];

#[test]
fn all_ops_match_reference_at_every_simd_level() {
    let mut tested = 0;
    for level in LEVELS {
        for threads in [1, 2] {
            let Ok(mut b) = CpuBackend::with_simd(threads, level) else { continue };
            eprintln!("checking {}", b.info().device);
            ops::check_all_ops(&mut b);
            tested += 1;
        }
    }
    assert!(tested >= 2, "at least the scalar level runs everywhere");
}

#[test]
fn best_level_agrees_with_scalar_backend() {
    let mut best = CpuBackend::new(2).unwrap();
    let mut scalar = CpuBackend::with_simd(1, "scalar").unwrap();
    ops::compare_backends(&mut best, &mut scalar);
}

#[test]
fn bad_arguments_are_invalid_argument() {
    for level in [simd_level(), "scalar"] {
        ops::check_errors(&mut CpuBackend::with_simd(2, level).unwrap());
    }
}

#[test]
fn info_names_cpu_threads_and_simd() {
    let b = CpuBackend::new(2).unwrap();
    let info = b.info();
    assert_eq!(info.backend, "cpu");
    assert!(info.device.contains("2 threads") && info.device.contains(simd_level()), "{}", info.device);
    assert!(CpuBackend::with_simd(1, "no-such-level").is_err());
}

/// One GEMM- and one gemv-sized matmul of f16 weights; the output bits.
fn matmul_bits(b: &mut CpuBackend) -> Vec<u32> {
    let (rows, cols) = (300, 777);
    let w: Vec<u8> = (0..rows * cols)
        .flat_map(|i| half::f16::from_f32(((i * 37 % 101) as f32 - 50.0) / 50.0).to_le_bytes())
        .collect();
    let t = HostTensor::new("w", DType::F16, vec![rows, cols], HostBytes::Owned(w.into())).unwrap();
    let w = b.upload_weight(&[t], None).unwrap();
    let mut bits = Vec::new();
    for tokens in [1, 2, 50] {
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let (xb, out) = (b.upload(&x).unwrap(), b.alloc(tokens * rows).unwrap());
        b.matmul(w, xb, out, tokens, MatmulMode::Overwrite).unwrap();
        let mut o = vec![0f32; tokens * rows];
        b.download(out, &mut o).unwrap();
        bits.extend(o.iter().map(|v| v.to_bits()));
    }
    bits
}

#[test]
fn matmul_is_deterministic_across_runs_and_thread_counts() {
    let one = matmul_bits(&mut CpuBackend::new(1).unwrap());
    let two = matmul_bits(&mut CpuBackend::new(2).unwrap());
    let again = matmul_bits(&mut CpuBackend::new(2).unwrap());
    // More threads than cores: smaller tasks, a different split of the weight rows.
    let eight = matmul_bits(&mut CpuBackend::new(8).unwrap());
    assert_eq!(two, again);
    assert_eq!(one, two);
    assert_eq!(one, eight);
}

/// Weights mapped from a file at an aligned offset (read in place) and at an odd offset (copied):
/// both give the same results as owned bytes.
#[test]
fn mapped_weights_aligned_and_unaligned() {
    let (rows, cols) = (9, 37);
    let vals: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut file = tempfile::tempfile().unwrap();
    let mut content = vec![0u8; 8];
    content.extend(&bytes);
    content.push(0);
    content.extend(&bytes);
    std::io::Write::write_all(&mut file, &content).unwrap();
    // SAFETY: the temporary file is private to this test and not modified while mapped.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap());
    let n = bytes.len();
    let aligned = HostBytes::mapped(map.clone(), 8..8 + n).unwrap();
    let unaligned = HostBytes::mapped(map, 9 + n..9 + 2 * n).unwrap();
    let mut b = CpuBackend::new(2).unwrap();
    let x: Vec<f32> = (0..3 * cols).map(|i| (i as f32 * 0.11).cos()).collect();
    let xb = b.upload(&x).unwrap();
    let mut results = Vec::new();
    for hb in [HostBytes::Owned(bytes.clone().into()), aligned, unaligned] {
        let t = HostTensor::new("w", DType::F32, vec![rows, cols], hb).unwrap();
        let w = b.upload_weight(&[t.clone(), t], None).unwrap();
        let out = b.alloc(3 * 2 * rows).unwrap();
        b.matmul(w, xb, out, 3, MatmulMode::Overwrite).unwrap();
        let mut o = vec![0f32; 3 * 2 * rows];
        b.download(out, &mut o).unwrap();
        results.push(o);
    }
    let want: Vec<f32> = (0..3)
        .flat_map(|t| {
            let (x, vals) = (&x, &vals);
            (0..2 * rows).map(move |j| {
                (0..cols).map(|k| x[t * cols + k] as f64 * vals[(j % rows) * cols + k] as f64).sum::<f64>()
                    as f32
            })
        })
        .collect();
    let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    for r in &results {
        assert!(ops::nmse(r, &want64) < 1e-10);
        assert_eq!(r, &results[0]);
    }
}

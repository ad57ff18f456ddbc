//! The device's ceilings as prism's own ops reach them: a large `copy` (memory bandwidth) and a large
//! f16-weight `matmul` (arithmetic rate), each a median of several timed repetitions.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::stats::Stats;
use crate::backend::{Backend, DType, HostBytes, HostTensor, MatmulMode, Result, quant};

/// Sizes of the ceiling measurements on one kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CeilingSizes {
    /// f32 elements of the copy (source and destination each); larger than the caches.
    pub copy_elems: usize,
    /// Copies timed together (so one sample is long enough to time).
    pub copies_per_sample: usize,
    /// GEMM `[m, k] · [n, k]ᵀ`: activation rows.
    pub gemm_m: usize,
    /// Weight rows (outputs).
    pub gemm_n: usize,
    /// Weight columns (inputs).
    pub gemm_k: usize,
}

impl CeilingSizes {
    /// 64 MB buffers and a 2-GFLOP GEMM on the CPU; 96 MB buffers (past an H100's 50 MB L2, inside
    /// wgpu's 128 MB binding limit) and a 69-GFLOP GEMM on a GPU.
    pub fn for_backend(backend: &str) -> CeilingSizes {
        if backend == "cpu" {
            CeilingSizes {
                copy_elems: 16 << 20,
                copies_per_sample: 4,
                gemm_m: 256,
                gemm_n: 2048,
                gemm_k: 2048,
            }
        } else {
            CeilingSizes {
                copy_elems: 24 << 20,
                copies_per_sample: 20,
                gemm_m: 2048,
                gemm_n: 4096,
                gemm_k: 4096,
            }
        }
    }
}

/// Measured ceilings of one backend.
#[derive(Clone, Debug, Serialize)]
pub struct Ceilings {
    /// Backend name.
    pub backend: String,
    /// Its device.
    pub device: String,
    /// What was measured.
    pub sizes: CeilingSizes,
    /// Copy bandwidth, GB/s counting bytes read plus bytes written, per repetition.
    pub copy_gbps_samples: Vec<f64>,
    /// Summary of `copy_gbps_samples`.
    pub copy_gbps: Stats,
    /// GEMM rate, GFLOP/s (2·m·n·k per GEMM), per repetition.
    pub gemm_gflops_samples: Vec<f64>,
    /// Summary of `gemm_gflops_samples`.
    pub gemm_gflops: Stats,
}

/// A weight `[rows, cols]` of `dtype` with random values in [-1, 1) (quantized with llama.cpp's
/// reference quantizers; f16/bf16 rounded from f32).
pub fn random_weight(name: &str, dtype: DType, rows: usize, cols: usize, seed: u64) -> Option<HostTensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let bytes: Vec<u8> = match dtype {
        DType::F32 => return HostTensor::from_f32(name, vec![rows, cols], &values),
        DType::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        _ => quant::quantize(dtype, &values).ok()?,
    };
    HostTensor::new(name, dtype, vec![rows, cols], HostBytes::Owned(bytes.into()))
}

/// Measures the copy and GEMM ceilings of `backend` (one warm-up, then `reps` repetitions each).
/// Allocates about `2·copy_elems` f32 plus the GEMM's buffers on it.
pub fn measure(backend: &mut dyn Backend, reps: usize, sizes: CeilingSizes) -> Result<Ceilings> {
    let info = backend.info();
    let reps = reps.max(1);
    let s = sizes;

    // ---- copy: src → dst, `copies_per_sample` times, then wait -------------------------------------
    let src = backend.alloc(s.copy_elems)?; // [copy_elems]
    let dst = backend.alloc(s.copy_elems)?; // [copy_elems]
    let wait = backend.alloc(1)?;
    let mut copy_gbps_samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t0 = Instant::now();
        for _ in 0..s.copies_per_sample {
            backend.copy(src, 0, dst, 0, s.copy_elems)?;
        }
        backend.copy(dst, 0, wait, 0, 1)?;
        backend.submit()?;
        backend.download(wait, &mut [0.0])?;
        let bytes = (2 * 4 * s.copy_elems * s.copies_per_sample) as f64;
        if rep > 0 {
            copy_gbps_samples.push(bytes / t0.elapsed().as_secs_f64() / 1e9);
        }
    }

    // ---- GEMM: out[m, n] = x[m, k] · W[n, k]ᵀ with f16 weights ------------------------------------
    let w = random_weight("ceiling.gemm", DType::F16, s.gemm_n, s.gemm_k, 1).ok_or_else(|| {
        crate::backend::BackendError::InvalidArgument { op: "ceilings", detail: "GEMM weight shape".into() }
    })?;
    let w = backend.upload_weight(std::slice::from_ref(&w), None)?;
    let x: Vec<f32> = (0..s.gemm_m * s.gemm_k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let x = backend.upload(&x)?; // [m, k]
    let out = backend.alloc(s.gemm_m * s.gemm_n)?; // [m, n]
    let mut gemm_gflops_samples = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t0 = Instant::now();
        backend.matmul(w, x, out, s.gemm_m, MatmulMode::Overwrite)?;
        backend.submit()?;
        backend.download(out, &mut [0.0])?;
        let flops = 2.0 * (s.gemm_m * s.gemm_n * s.gemm_k) as f64;
        if rep > 0 {
            gemm_gflops_samples.push(flops / t0.elapsed().as_secs_f64() / 1e9);
        }
    }
    let summary = |v: &[f64]| Stats::of(v).unwrap_or_default();
    Ok(Ceilings {
        backend: info.backend,
        device: info.device,
        sizes: s,
        copy_gbps: summary(&copy_gbps_samples),
        copy_gbps_samples,
        gemm_gflops: summary(&gemm_gflops_samples),
        gemm_gflops_samples,
    })
}

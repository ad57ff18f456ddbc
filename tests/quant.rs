//! Quantized weights: the CPU backend's quantized matmul (gemv and GEMM) and embed at every SIMD level
//! against dequantize-then-f64 references; dequantization bit-identical to llama.cpp's gguf-py on real
//! blocks and whole tensors of real GGUF files; the Q8_0/Q4_0/Q4_1 quantizers byte-identical to
//! llama.cpp's reference quantizers.

#[path = "common/ops.rs"]
mod ops;

use std::path::Path;
use std::sync::Arc;

use prism::backend::cpu::CpuBackend;
use prism::backend::quant::{self, QuantError};
use prism::backend::{Backend, DType, HostBytes, HostTensor, MatmulMode, StepBatch};
use prism::engine::gguf::Gguf;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

const LEVELS: [&str; 4] = ["avx512f", "avx2+fma", "neon", "scalar"];
const QUANT: [DType; 5] = [DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4K, DType::Q6K];

fn root(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root("tests/data/quant_fixture.json")).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn dtype_named(name: &str) -> DType {
    DType::ALL.into_iter().find(|d| d.name() == name).unwrap()
}

/// Every SIMD level this CPU runs, as backends with `threads` threads.
fn backends(threads: usize) -> Vec<CpuBackend> {
    let b: Vec<_> = LEVELS.iter().filter_map(|l| CpuBackend::with_simd(threads, l).ok()).collect();
    assert!(b.len() >= 2, "at least one SIMD level and scalar");
    b
}

fn embed_rows(b: &mut CpuBackend, t: &HostTensor, tokens: &[u32]) -> Vec<f32> {
    let dim = t.shape[1];
    let w = b.upload_weight(std::slice::from_ref(t), None).unwrap();
    b.set_step(&StepBatch::single(tokens, 0, &[])).unwrap();
    let out = b.alloc(tokens.len() * dim).unwrap();
    b.embed(w, out, tokens.len()).unwrap();
    let mut v = vec![0f32; tokens.len() * dim];
    b.download(out, &mut v).unwrap();
    v
}

fn same_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!(
            "{what}: element {i} is {} ({:#x}), want {} ({:#x})",
            a[i],
            a[i].to_bits(),
            b[i],
            b[i].to_bits()
        );
    }
}

#[test]
fn dtype_block_helpers() {
    let table = [(8, DType::Q8_0, 32, 34), (2, DType::Q4_0, 32, 18), (3, DType::Q4_1, 32, 20)];
    let k = [
        (12, DType::Q4K, 256, 144),
        (14, DType::Q6K, 256, 210),
        (0, DType::F32, 1, 4),
        (30, DType::BF16, 1, 2),
    ];
    for (id, dt, be, bb) in table.into_iter().chain(k) {
        assert_eq!(DType::from_ggml(id), Some(dt));
        assert_eq!((dt.block_elems(), dt.block_bytes()), (be, bb), "{dt}");
        assert_eq!(dt.is_quantized(), be > 1);
        assert_eq!(dt.bytes_for(3 * be), Some(3 * bb));
        assert_eq!(dt.bytes_for(usize::MAX / 2 * 2), None, "overflow");
        if be > 1 {
            assert_eq!(dt.bytes_for(be + 1), None, "{dt}: partial block");
            let bytes = HostBytes::Owned(vec![0u8; 2 * bb].into());
            assert!(HostTensor::new("t", dt, vec![2, be], bytes.clone()).is_some());
            assert!(
                HostTensor::new("t", dt, vec![2 * be, 1], bytes).is_none(),
                "{dt}: rows must be whole blocks"
            );
        }
    }
    assert_eq!(DType::from_ggml(6), None, "Q5_0 has no kernels");
    let names: Vec<_> = QUANT.iter().map(|d| d.name()).collect();
    assert_eq!(names, ["q8_0", "q4_0", "q4_1", "q4_k", "q6_k"]);
}

#[test]
fn quantized_ops_match_reference_at_every_simd_level() {
    let mut seed = 5000;
    let mut next = || {
        seed += 1;
        seed
    };
    let cases = ops::quant_cases(&mut next);
    for threads in [1, 2] {
        for mut b in backends(threads) {
            eprintln!("{} quantized cases on {}", cases.len(), b.info().device);
            ops::check_cases(&mut b, &cases, ops::MAX_NMSE);
        }
    }
}

/// A quantized matmul's output bits for gemv- and GEMM-sized token counts.
fn quant_matmul_bits(b: &mut CpuBackend, dtype: DType) -> Vec<u32> {
    let mut r = ChaCha8Rng::seed_from_u64(9);
    let (rows, cols) = (301, 1024);
    let (_, bytes) = ops::random_quant(&mut r, dtype, rows * cols);
    let t = HostTensor::new("w", dtype, vec![rows, cols], HostBytes::Owned(bytes.into())).unwrap();
    let w = b.upload_weight(&[t], None).unwrap();
    let mut bits = Vec::new();
    for tokens in [1, 3, 8, 50] {
        let x: Vec<f32> = (0..tokens * cols).map(|_| r.random_range(-1.0..1.0)).collect();
        let (xb, out) = (b.upload(&x).unwrap(), b.alloc(tokens * rows).unwrap());
        b.matmul(w, xb, out, tokens, MatmulMode::Overwrite).unwrap();
        let mut o = vec![0f32; tokens * rows];
        b.download(out, &mut o).unwrap();
        bits.extend(o.iter().map(|v| v.to_bits()));
    }
    bits
}

#[test]
fn quantized_matmul_is_deterministic_across_thread_counts() {
    for dtype in QUANT {
        let one = quant_matmul_bits(&mut CpuBackend::new(1).unwrap(), dtype);
        for threads in [2, 8] {
            assert_eq!(
                one,
                quant_matmul_bits(&mut CpuBackend::new(threads).unwrap(), dtype),
                "{dtype} {threads}"
            );
        }
    }
}

#[test]
fn real_blocks_dequantize_like_gguf_py_at_every_level() {
    let f = fixture();
    let mut seen = Vec::new();
    for blk in f["blocks"].as_array().unwrap() {
        let dtype = dtype_named(blk["dtype"].as_str().unwrap());
        let bytes = unhex(blk["bytes"].as_str().unwrap());
        let want: Vec<f32> = unhex(blk["f32"].as_str().unwrap())
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let what = format!("{dtype} {}", blk["source"].as_str().unwrap());
        let mut got = vec![0f32; want.len()];
        quant::dequantize(dtype, &bytes, &mut got);
        same_bits(&got, &want, &format!("quant::dequantize {what}"));
        // The SIMD dequantizers (embedding rows): the blocks as one row, and each block as a row.
        let be = dtype.block_elems();
        for (rows, cols) in [(1, want.len()), (want.len() / be, be)] {
            let t = HostTensor::new("t", dtype, vec![rows, cols], HostBytes::Owned(bytes.clone().into()))
                .unwrap();
            let tokens: Vec<u32> = (0..rows as u32).collect();
            for mut b in backends(1) {
                let got = embed_rows(&mut b, &t, &tokens);
                same_bits(&got, &want, &format!("embed on {} {what}", b.info().device));
            }
        }
        seen.push(dtype);
    }
    for dtype in QUANT {
        assert!(seen.contains(&dtype), "the fixture has no {dtype} block");
    }
}

/// Whole tensors of local GGUF files (the SmolLM2 Q4_1 model; llama.cpp-quantized models under
/// `.peers/`): every tensor's byte range is exactly its dtype's size, and dequantization — scalar, and
/// the SIMD embedding rows — matches the sha256 of gguf-py's.
#[test]
fn real_gguf_tensors_dequantize_like_gguf_py() {
    let f = fixture();
    let mut checked = 0;
    let mut files_seen = std::collections::BTreeSet::new();
    for entry in f["tensors"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let path = root(file);
        if !path.exists() {
            eprintln!("!!! SKIPPING {} of {file}: the file is absent", entry["tensor"]);
            continue;
        }
        let map = Arc::new(unsafe_map(&path));
        let g = Gguf::parse(&map).unwrap();
        if files_seen.insert(file.to_string()) {
            for t in &g.tensors {
                let n: u64 = t.dims.iter().product();
                match DType::from_ggml(t.ggml_type) {
                    Some(dt) => {
                        assert_eq!(dt.bytes_for(n as usize), Some(t.range.len()), "{file} {}", t.name)
                    }
                    None => eprintln!("{file}: {} has ggml type {} (no prism kernels)", t.name, t.ggml_type),
                }
            }
        }
        let name = entry["tensor"].as_str().unwrap();
        let t = g.tensors.iter().find(|t| t.name == name).unwrap();
        let dtype = DType::from_ggml(t.ggml_type).unwrap();
        assert_eq!(dtype.name(), entry["dtype"].as_str().unwrap());
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let bytes = HostBytes::mapped(map.clone(), t.range.clone()).unwrap();
        let ht = HostTensor::new(name, dtype, shape.clone(), bytes).unwrap();
        let all = ht.to_f32_vec();
        let sum: Vec<u8> =
            Sha256::digest(all.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).to_vec();
        assert_eq!(
            unhex(entry["sha256"].as_str().unwrap()),
            sum,
            "{file} {name}: sha256 of the dequantized f32"
        );
        let (rows, cols) = (shape[0], shape[1]);
        let tokens: Vec<u32> = (0..37).map(|i| (i * (rows - 1) / 36) as u32).collect();
        let want: Vec<f32> = tokens.iter().flat_map(|&t| all[t as usize * cols..][..cols].to_vec()).collect();
        for mut b in backends(2) {
            same_bits(
                &embed_rows(&mut b, &ht, &tokens),
                &want,
                &format!("{name} embed on {}", b.info().device),
            );
        }
        eprintln!("{file} {name} ({dtype}, {rows}×{cols}) matches gguf-py");
        checked += 1;
    }
    if checked == 0 {
        eprintln!("!!! SKIPPED every real-tensor check: no model file present (.dev/, .peers/models/)");
    }
}

fn unsafe_map(path: &Path) -> memmap2::Mmap {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: read-only map of a model file that no one writes while the test runs.
    unsafe { memmap2::Mmap::map(&file) }.unwrap()
}

/// The quantizer input of the fixture (`quant_input` of tests/data/make_quant_fixture.py), exactly.
fn quant_input() -> Vec<f32> {
    let mut s: u32 = 12345;
    let mut x = Vec::new();
    for i in 0..28 * 32 {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = (s >> 8) as f32 / 16_777_216.0 * 2.0 - 1.0;
        x.push(v * 2f32.powi((i / 32) % 7 - 3));
    }
    x.extend([0f32; 32]);
    x.extend([127.0, 2.5, -3.5, 0.5, -0.5, 1.5, -1.5]);
    x.extend((0..25).map(|k| 0.25 * k as f32));
    x.extend([-1.0, 1.0]);
    x.extend((0..30).map(|k| (0.1f64 * k as f64 - 1.0) as f32));
    x.extend([1.0, -1.0]);
    x.extend((0..30).map(|k| (0.03f64 * k as f64) as f32));
    x
}

/// An independent restatement of llama.cpp's reference quantizers, one block at a time.
fn reference_block(dtype: DType, b: &[f32]) -> Vec<u8> {
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    let recip = |d: f32| if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut out = Vec::new();
    match dtype {
        DType::Q8_0 => {
            let d = b.iter().map(|v| v.abs()).fold(0.0, f32::max) / 127.0;
            out.extend(f16(d));
            // roundf: half away from zero.
            out.extend(b.iter().map(|&v| {
                let y = v * recip(d);
                (y.signum() as f64 * (y.abs() as f64 + 0.5).floor()) as i8 as u8
            }));
        }
        DType::Q4_0 => {
            let i = (0..32).fold(0, |best, i| if b[i].abs() > b[best].abs() { i } else { best });
            let d = b[i] / -8.0;
            out.extend(f16(d));
            let q: Vec<u8> =
                b.iter().map(|&v| ((v * recip(d) + 8.5).trunc() as i32).clamp(0, 15) as u8).collect();
            out.extend((0..16).map(|j| q[j] | q[j + 16] << 4));
        }
        _ => {
            let min = b.iter().copied().fold(f32::INFINITY, f32::min);
            let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            out.extend(f16(d));
            out.extend(f16(min));
            let q: Vec<u8> =
                b.iter().map(|&v| (((v - min) * recip(d) + 0.5).trunc() as i32).clamp(0, 15) as u8).collect();
            out.extend((0..16).map(|j| q[j] | q[j + 16] << 4));
        }
    }
    out
}

#[test]
fn quantizers_match_gguf_py_and_llama_cpp_reference() {
    let f = fixture();
    let x = quant_input();
    assert_eq!(x.len() as u64, f["quantize"]["n"].as_u64().unwrap());
    let mut r = ChaCha8Rng::seed_from_u64(77);
    let random: Vec<f32> = (0..64 * 32).map(|i| r.random_range(-1.0f32..1.0) * (1 + i % 5) as f32).collect();
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let got = quant::quantize(dtype, &x).unwrap();
        assert_eq!(got, unhex(f["quantize"][dtype.name()].as_str().unwrap()), "{dtype}: gguf-py bytes");
        for input in [&x, &random] {
            let want: Vec<u8> = input.chunks_exact(32).flat_map(|b| reference_block(dtype, b)).collect();
            assert_eq!(quant::quantize(dtype, input).unwrap(), want, "{dtype}: reference quantizer");
        }
    }
    assert!(matches!(quant::quantize(DType::Q4K, &x), Err(QuantError::Unsupported(_))));
    assert!(matches!(quant::quantize(DType::Q4_0, &x[..40]), Err(QuantError::Length { .. })));
}

#[test]
fn quantize_dequantize_round_trips() {
    // Blocks whose values are exactly representable (`d`, `m` small dyadic numbers, every extreme
    // quant present) come back bit for bit.
    let mut r = ChaCha8Rng::seed_from_u64(3);
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let mut x = Vec::new();
        for blk in 0..40 {
            let d = (1 + blk % 9) as f32 / 64.0 * if blk % 2 == 0 { 1.0 } else { -1.0 };
            let m = -((blk % 5) as f32) / 16.0;
            let mut q: Vec<i32> = match dtype {
                DType::Q8_0 => (0..32).map(|_| r.random_range(-127..=127)).collect(),
                _ => (0..32).map(|_| r.random_range(0..16)).collect(),
            };
            let (lo, hi) = if dtype == DType::Q8_0 { (127, -127) } else { (0, 15) };
            q[blk % 32] = lo;
            q[(blk + 7) % 32] = if dtype == DType::Q4_1 { hi } else { q[(blk + 7) % 32] };
            x.extend(q.iter().map(|&q| match dtype {
                DType::Q8_0 => d * q as f32,
                DType::Q4_0 => d * (q - 8) as f32,
                _ => d.abs() * q as f32 + m,
            }));
        }
        let bytes = quant::quantize(dtype, &x).unwrap();
        let mut back = vec![0f32; x.len()];
        quant::dequantize(dtype, &bytes, &mut back);
        // (Equal as numbers: a negative `d` times 0 gives −0.)
        assert_eq!(back, x, "{dtype} round trip of representable blocks");
    }
    // Random data: every element within half a step (one step where Q4_0 clips +8 to 7), plus the
    // f16 rounding of the scales.
    let x: Vec<f32> = (0..256 * 32).map(|i| r.random_range(-2.0f32..2.0) * (1 + i % 3) as f32).collect();
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let bytes = quant::quantize(dtype, &x).unwrap();
        let mut back = vec![0f32; x.len()];
        quant::dequantize(dtype, &bytes, &mut back);
        for (b, (xb, yb)) in x.chunks_exact(32).zip(back.chunks_exact(32)).enumerate() {
            let blk = &bytes[b * dtype.block_bytes()..];
            let d = quant::f16_at(blk, 0).abs();
            let (step, extra) = match dtype {
                DType::Q8_0 => (0.5, 128.0 * d / 1024.0),
                DType::Q4_0 => (1.0, 8.0 * d / 1024.0),
                _ => (0.5, 16.0 * d / 1024.0 + quant::f16_at(blk, 2).abs() / 1024.0),
            };
            for (a, bv) in xb.iter().zip(yb) {
                assert!((a - bv).abs() <= step * d * 1.0001 + extra, "{dtype} block {b}: {a} → {bv} (d {d})");
            }
        }
    }
}

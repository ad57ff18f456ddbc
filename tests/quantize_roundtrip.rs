//! `--quantize` writes llama.cpp's block layout: prism's quantizers reproduce llama-quantize's bytes
//! (fixture from llama.cpp 0c1e57098b), and the bytes survive a round trip through the GGUF reader.

use std::path::Path;

use prism::backend::{DType, quant};
use prism::engine::gguf::Gguf;
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llamacpp_quant_rows.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A minimal GGUF v3 file holding one tensor `w` of `dims` (innermost first).
fn gguf_with(ggml_type: u32, dims: [u64; 2], data: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata
    let key = "general.alignment";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key.as_bytes());
    b.extend(4u32.to_le_bytes());
    b.extend(32u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'w');
    b.extend(2u32.to_le_bytes());
    b.extend(dims[0].to_le_bytes());
    b.extend(dims[1].to_le_bytes());
    b.extend(ggml_type.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(data);
    b
}

#[test]
fn quantizers_reproduce_llama_cpp_bytes_and_round_trip_through_gguf() {
    let f = fixture();
    let (rows, cols) = (f["rows"].as_u64().unwrap() as usize, f["cols"].as_u64().unwrap() as usize);
    let source: Vec<f32> = hex(f["f16_hex"].as_str().unwrap())
        .chunks(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    assert_eq!(source.len(), rows * cols);
    for (dtype, key) in [(DType::Q8_0, "q8_0"), (DType::Q4_0, "q4_0")] {
        let want = hex(f[format!("{key}_hex")].as_str().unwrap());
        let ours = quant::quantize(dtype, &source).unwrap();
        assert_eq!(ours.len(), want.len(), "{key}: size");
        let first_diff = ours.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{key}: bytes differ from llama-quantize's");

        let ggml_type = f[format!("{key}_type")].as_u64().unwrap() as u32;
        assert_eq!(DType::from_ggml(ggml_type), Some(dtype));
        let file = gguf_with(ggml_type, [cols as u64, rows as u64], &ours);
        let g = Gguf::parse(&file).unwrap();
        let t = &g.tensors[0];
        assert_eq!(t.dims, vec![cols as u64, rows as u64]);
        assert_eq!(&file[t.range.clone()], &ours[..], "{key}: bytes read back");

        let mut back = vec![0f32; rows * cols];
        quant::dequantize(dtype, &file[t.range.clone()], &mut back);
        // Each value is within half a quantization step of the source (a whole step where Q4_0 clips
        // the side opposite its largest value at 7·d), plus the rounding of the scale d to f16.
        for (blk, (s, d)) in source.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = s.iter().fold(0f32, |a, v| a.max(v.abs()));
            let (step, tol) = if dtype == DType::Q8_0 { (amax / 127.0, 0.6) } else { (amax / 8.0, 1.05) };
            for (x, y) in s.iter().zip(d) {
                assert!((x - y).abs() <= step * tol + 1e-7, "{key} block {blk}: {x} -> {y}");
            }
        }
    }
}

//! The quantized-weight part of the op table (`ops.rs`): random quantized blocks and the matmul and
//! embedding cases of every quantized dtype.

use half::f16;
use prism::backend::{DType, HostBytes, HostTensor, MatmulMode};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Embed, Matmul, OpCase};

/// Byte offsets of the f16 scale fields in a block of a quantized dtype.
fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q8_0 | DType::Q4_0 => &[0],
        DType::Q4_1 | DType::Q4K => &[0, 2],
        DType::Q6K => &[208],
        _ => &[],
    }
}

/// `n` elements of a quantized dtype with random quants (random bytes) and random finite f16
/// scales of either sign: the bytes and their exact dequantized values.
pub fn random_quant(r: &mut ChaCha8Rng, dtype: DType, n: usize) -> (Vec<f32>, Vec<u8>) {
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(n).expect("whole blocks")).map(|_| r.random()).collect();
    for blk in bytes.chunks_exact_mut(dtype.block_bytes()) {
        for &at in scale_offsets(dtype) {
            let v = f16::from_f32(r.random_range(-0.1f32..0.1));
            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    let t = HostTensor::new("q", dtype, vec![n], HostBytes::Owned(bytes.clone().into())).expect("tensor");
    (t.to_f32_vec(), bytes)
}

/// The quantized-weight cases (every quantized dtype): gemv (1–8 tokens) and GEMM (≥ 9 tokens)
/// matmuls with odd row counts, multi-part weights, bias, both modes, rows longer than one GEMM
/// k-slice; embedding lookups.
pub fn quant_cases(next: &mut impl FnMut() -> u64) -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<Box<dyn OpCase>> = Vec::new();
    let modes = [MatmulMode::Overwrite, MatmulMode::Accumulate];
    for (di, dtype) in [DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4K, DType::Q6K].into_iter().enumerate()
    {
        let blk = dtype.block_elems();
        let cols = [blk, 3 * blk, 2048, 1280 / blk * blk];
        for (i, (parts, tokens)) in [
            (&[1][..], 1),
            (&[3][..], 2),
            (&[17][..], 3),
            (&[5, 3, 9][..], 4),
            (&[9][..], 5),
            (&[4, 7][..], 8),
            (&[17][..], 9),
            (&[13, 3][..], 13),
            (&[70, 3, 40][..], 61),
            (&[7, 20][..], 130), // more tokens than one GEMM task takes
        ]
        .into_iter()
        .enumerate()
        {
            let c = cols[(i + di) % cols.len()];
            let mode = modes[(i + di) % 2];
            let bias = (i + di) % 3 == 0;
            v.push(Box::new(Matmul::new(next(), dtype, parts, c, tokens, mode, bias)));
        }
        for (i, (cols, tokens)) in [(3 * blk, 1), (2048, 2), (blk, 7), (2 * blk, 12)].into_iter().enumerate()
        {
            let (mode, silu) = (modes[(i + di) % 2], (i + di) % 2 == 0);
            v.push(Box::new(Matmul::fused(next(), dtype, &[11, 6], cols, tokens, mode, i == 0, silu)));
        }
        for dim in [blk, 2 * blk] {
            v.push(Box::new(Embed::new(next(), dtype, &[20, 17], dim)));
        }
    }
    // One-token gemvs at model widths: thousands of rows (several per GPU warp), rows longer than one
    // pass of a warp, widths that end inside a pass; input as it is, normalized, SwiGLU.
    let (over, acc) = (MatmulMode::Overwrite, MatmulMode::Accumulate);
    for (dtype, parts, cols, mode, stage) in [
        (DType::Q8_0, &[9000][..], 64, over, Some(false)),
        (DType::Q8_0, &[513][..], 2080, acc, Some(true)),
        (DType::Q4_0, &[300][..], 4128, acc, None),
        (DType::Q4_0, &[2100][..], 576, over, Some(false)),
        (DType::Q4_1, &[40, 24][..], 8192, acc, Some(true)),
        (DType::Q4_1, &[100][..], 1056, over, None),
        // Every format × input once more at the widest fused width and at widths of odd units.
        (DType::Q8_0, &[1000][..], 8192, acc, None),
        (DType::Q4_0, &[333][..], 8192, over, Some(true)),
        (DType::Q4_1, &[1001][..], 2080, acc, Some(false)),
        (DType::Q8_0, &[77][..], 800, over, Some(false)),
    ] {
        v.push(match stage {
            None => Box::new(Matmul::new(next(), dtype, parts, cols, 1, mode, true)),
            Some(silu) => Box::new(Matmul::fused(next(), dtype, parts, cols, 1, mode, true, silu)),
        });
    }
    v
}

//! Weights on the host side of the HIP/CUDA backend: argument checks, then the bytes the device keeps.
//! Float weights go as they are. Q8_0/Q4_0/Q4_1 blocks are split into a quant array and f16 scale (and
//! min) arrays so device rows are 16-byte aligned; Q4_K/Q6_K, which have no kernels here, are
//! dequantized to f16 (2–3.5× their size, exact to f16 rounding).

use crate::backend::check::{self, WeightShape};
use crate::backend::{DType, HostTensor, Result, quant};

/// A weight ready to copy to the device: `layout` is one of f32, f16, bf16, q8_0, q4_0, q4_1.
pub struct HostWeight {
    pub name: String,
    pub layout: DType,
    pub rows: usize,
    pub cols: usize,
    /// Elements (float layouts) or quants (`[rows, cols]` i8 or `[rows, cols/2]` nibbles).
    pub data: Vec<u8>,
    /// f16 block scales `[rows, cols/32]` (quantized layouts).
    pub scales: Vec<u8>,
    /// f16 block mins `[rows, cols/32]` (Q4_1).
    pub mins: Vec<u8>,
    pub bias: Option<Vec<f32>>,
}

/// Checks `parts` (stacked by rows) and `bias` as every backend does, and lays the bytes out.
pub fn prepare(parts: &[HostTensor], bias: Option<&[f32]>) -> Result<HostWeight> {
    let WeightShape { name, dtype, rows, cols, .. } = check::weight_parts(parts, bias)?;
    let mut w = HostWeight {
        name,
        layout: dtype,
        rows,
        cols,
        data: Vec::new(),
        scales: Vec::new(),
        mins: Vec::new(),
        bias: bias.map(|b| b.to_vec()),
    };
    let total: usize = parts.iter().map(|p| p.bytes.len()).sum();
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => {
            w.data.reserve_exact(total);
            for p in parts {
                w.data.extend_from_slice(&p.bytes);
            }
        }
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
            let (bb, head) = (dtype.block_bytes(), if dtype == DType::Q4_1 { 4 } else { 2 });
            let blocks = total / bb;
            w.data.reserve_exact(blocks * (bb - head));
            w.scales.reserve_exact(blocks * 2);
            for p in parts {
                for blk in p.bytes.chunks_exact(bb) {
                    w.scales.extend_from_slice(&blk[..2]);
                    if head == 4 {
                        w.mins.extend_from_slice(&blk[2..4]);
                    }
                    w.data.extend_from_slice(&blk[head..]);
                }
            }
        }
        DType::Q4K | DType::Q6K => {
            w.layout = DType::F16;
            w.data.reserve_exact(rows * cols * 2);
            let mut tmp = Vec::new();
            for p in parts {
                tmp.resize(p.numel(), 0f32);
                quant::dequantize(dtype, &p.bytes, &mut tmp);
                w.data.extend(tmp.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()));
            }
        }
    }
    Ok(w)
}

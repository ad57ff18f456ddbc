//! Weight layouts on the GPU: every format keeps its storage size, rearranged for aligned wide loads.
//! Rows are whole units of 32 elements (float rows are zero-padded to one); quantized blocks are
//! split into a quant array (`wq`: 32, 16 or 16 bytes per block) and a scale array (`ws`: the f16 `d`,
//! or `d, m` for Q4_1), as `shaders/lib/w_*.wgsl` read them. A weight larger than one binding is cut
//! into chunks of whole rows.

use crate::backend::DType;

/// Bytes per row of the two arrays of one weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLayout {
    /// Units of 32 elements per row.
    pub units: usize,
    /// Bytes of a row in the quant (or plain) array.
    pub q_bytes: usize,
    /// Bytes of a row in the scale array (0 for float formats).
    pub s_bytes: usize,
}

impl RowLayout {
    /// The layout of rows of `cols` elements of `dtype` (a kernel format, see `kernels::supports`).
    pub fn new(dtype: DType, cols: usize) -> RowLayout {
        let units = cols.div_ceil(32);
        let (q, s) = match dtype {
            DType::F32 => (128, 0),
            DType::F16 | DType::BF16 => (64, 0),
            DType::Q8_0 => (32, 2),
            DType::Q4_0 => (16, 2),
            _ => (16, 4), // Q4_1
        };
        RowLayout { units, q_bytes: units * q, s_bytes: units * s }
    }

    /// Rows per chunk so that neither array of a chunk exceeds `max_bytes` (at least one row).
    pub fn rows_per_chunk(&self, max_bytes: u64) -> usize {
        let widest = self.q_bytes.max(self.s_bytes).max(1) as u64;
        (max_bytes / widest).max(1) as usize
    }
}

/// Writes `rows` consecutive host rows (`src`, llama.cpp/safetensors layout, rows of `cols` elements)
/// into the quant array `q` and the scale array `s` of their chunk, starting at chunk row `at`.
pub fn pack_rows(dtype: DType, cols: usize, src: &[u8], rows: usize, at: usize, q: &mut [u8], s: &mut [u8]) {
    let lay = RowLayout::new(dtype, cols);
    let host_row = src.len() / rows.max(1);
    for r in 0..rows {
        let row = &src[r * host_row..][..host_row];
        let qr = &mut q[(at + r) * lay.q_bytes..][..lay.q_bytes];
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                qr[..host_row].copy_from_slice(row);
                qr[host_row..].fill(0);
            }
            _ => {
                let (bb, qb, sb) = match dtype {
                    DType::Q8_0 => (34, 32, 2),
                    DType::Q4_0 => (18, 16, 2),
                    _ => (20, 16, 4),
                };
                let sr = &mut s[(at + r) * lay.s_bytes..][..lay.s_bytes];
                for (b, blk) in row.chunks_exact(bb).enumerate() {
                    sr[b * sb..][..sb].copy_from_slice(&blk[..sb]);
                    qr[b * qb..][..qb].copy_from_slice(&blk[sb..]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_blocks_split_into_quants_and_scale_pairs() {
        // Two rows of one Q4_1 block each: d, m, then 16 bytes of nibbles.
        let src: Vec<u8> = (0u8..40).collect();
        let lay = RowLayout::new(DType::Q4_1, 32);
        assert_eq!(lay, RowLayout { units: 1, q_bytes: 16, s_bytes: 4 });
        let (mut q, mut s) = (vec![0u8; 32], vec![0u8; 8]);
        pack_rows(DType::Q4_1, 32, &src, 2, 0, &mut q, &mut s);
        assert_eq!(&s[..], &[0, 1, 2, 3, 20, 21, 22, 23]);
        assert_eq!(&q[..16], &src[4..20]);
        assert_eq!(&q[16..], &src[24..40]);
    }

    #[test]
    fn float_rows_are_padded_to_whole_units() {
        let src: Vec<u8> = (1u8..=12).collect(); // two f16 rows of 3
        let lay = RowLayout::new(DType::F16, 3);
        assert_eq!(lay.q_bytes, 64);
        let mut q = vec![9u8; 3 * 64];
        pack_rows(DType::F16, 3, &src, 2, 1, &mut q, &mut []);
        assert_eq!(&q[64..70], &src[..6]);
        assert!(q[70..128].iter().all(|&b| b == 0));
        assert_eq!(&q[128..134], &src[6..]);
        assert_eq!(q[0], 9, "rows before `at` are untouched");
        assert_eq!(lay.rows_per_chunk(200), 3);
        assert_eq!(lay.rows_per_chunk(10), 1);
    }
}

//! Host-side tensors: stored dtypes and bytes that are either mapped from a model file or owned.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use memmap2::Mmap;

/// Storage dtype of a weight tensor. The quantized types use llama.cpp's block layouts (little-endian),
/// described in [`crate::backend::quant`]; a row of a quantized tensor is a whole number of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// 32 elements in 34 bytes: `{f16 d; i8 q[32]}`, `x = d·q`.
    Q8_0,
    /// 32 elements in 18 bytes: `{f16 d; u8 qs[16]}`, `x = d·(q − 8)`, 4-bit `q`.
    Q4_0,
    /// 32 elements in 20 bytes: `{f16 d; f16 m; u8 qs[16]}`, `x = d·q + m`, 4-bit `q`.
    Q4_1,
    /// 256 elements in 144 bytes: `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`, 8 sub-blocks of 32
    /// with 6-bit scales and mins, `x = d·sc·q − dmin·m`.
    Q4K,
    /// 256 elements in 210 bytes: `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`, 16 sub-blocks of
    /// 16, 6-bit `q`, `x = d·sc·(q − 32)`.
    Q6K,
}

impl DType {
    /// Every dtype, for tests and tables.
    pub const ALL: [DType; 8] =
        [DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4K, DType::Q6K];

    /// Elements per block (1 for the float types).
    pub fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => 32,
            DType::Q4K | DType::Q6K => 256,
        }
    }

    /// Bytes per block (per element for the float types).
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q4K => 144,
            DType::Q6K => 210,
        }
    }

    /// Bytes taken by `n` elements; `None` on overflow or when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }

    /// Whether this is a block-quantized type.
    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// The dtype of a ggml type id (GGUF tensor info), `None` for types prism has no kernels for.
    pub fn from_ggml(type_id: u32) -> Option<DType> {
        Some(match type_id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            8 => DType::Q8_0,
            12 => DType::Q4K,
            14 => DType::Q6K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// Lower-case name (`f32`, `f16`, `bf16`, `q8_0`, `q4_0`, `q4_1`, `q4_k`, `q6_k`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q4K => "q4_k",
            DType::Q6K => "q6_k",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes of a tensor in host memory: a range of a memory-mapped file (zero-copy) or an owned buffer.
/// Cloning is cheap (reference counted).
#[derive(Clone)]
pub enum HostBytes {
    /// `range` of a mapped file; checked against the map's length when created.
    Mapped { map: Arc<Mmap>, range: Range<usize> },
    /// Bytes owned in memory.
    Owned(Arc<[u8]>),
}

impl HostBytes {
    /// A checked range of a mapped file; `None` if it runs past the end.
    pub fn mapped(map: Arc<Mmap>, range: Range<usize>) -> Option<Self> {
        (range.start <= range.end && range.end <= map.len()).then_some(HostBytes::Mapped { map, range })
    }
}

impl Deref for HostBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            HostBytes::Mapped { map, range } => &map[range.clone()],
            HostBytes::Owned(v) => v,
        }
    }
}

impl fmt::Debug for HostBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostBytes::Mapped { range, .. } => write!(f, "Mapped({range:?})"),
            HostBytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
        }
    }
}

/// A named tensor in host memory whose byte length matches its shape and dtype (checked at creation).
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// Name in the model file (for error messages).
    pub name: String,
    /// Stored dtype.
    pub dtype: DType,
    /// Shape, outermost first (`[rows, cols]` for a matrix).
    pub shape: Vec<usize>,
    /// Exactly `product(shape)` elements of `dtype`.
    pub bytes: HostBytes,
}

impl HostTensor {
    /// Checks that `bytes` holds exactly `shape` of `dtype`; `None` otherwise (or on overflow). A
    /// quantized tensor's rows (its last dimension) must be whole blocks.
    pub fn new(name: &str, dtype: DType, shape: Vec<usize>, bytes: HostBytes) -> Option<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let row = shape.last().copied().unwrap_or(1);
        if !row.is_multiple_of(dtype.block_elems()) {
            return None;
        }
        (dtype.bytes_for(n)? == bytes.len()).then(|| HostTensor {
            name: name.to_string(),
            dtype,
            shape,
            bytes,
        })
    }

    /// An owned f32 tensor (tests, synthetic weights).
    pub fn from_f32(name: &str, shape: Vec<usize>, data: &[f32]) -> Option<Self> {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(name, DType::F32, shape, HostBytes::Owned(bytes.into()))
    }

    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows and columns of a 2-D tensor (a 1-D tensor is one row).
    pub fn rows_cols(&self) -> Option<(usize, usize)> {
        match self.shape.as_slice() {
            [c] => Some((1, *c)),
            [r, c] => Some((*r, *c)),
            _ => None,
        }
    }

    /// All elements converted (dequantized) to f32 (small tensors: norms, biases, tests).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let b: &[u8] = &self.bytes;
        match self.dtype {
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q4K | DType::Q6K => {
                let mut out = vec![0f32; self.numel()];
                super::quant::dequantize(self.dtype, b, &mut out);
                out
            }
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => {
                b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            DType::BF16 => {
                b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
        }
    }
}

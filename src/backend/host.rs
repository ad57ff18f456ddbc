//! Host-side tensors: stored dtypes and bytes that are either mapped from a model file or owned.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use memmap2::Mmap;

/// Storage dtype of a weight tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Bytes taken by `n` elements, or `None` on overflow.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        n.checked_mul(self.size())
    }

    /// Lower-case name (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
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
    /// Checks that `bytes` holds exactly `shape` of `dtype`; `None` otherwise (or on overflow).
    pub fn new(name: &str, dtype: DType, shape: Vec<usize>, bytes: HostBytes) -> Option<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
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

    /// All elements converted to f32 (small tensors: norms, biases).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let b: &[u8] = &self.bytes;
        match self.dtype {
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

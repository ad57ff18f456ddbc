//! Weight matrices of the CPU backend: parts stacked by rows, read in place from their host bytes.

use crate::backend::check::{self, WeightShape};
use crate::backend::{BackendError, DType, HostBytes, HostTensor, Result};

/// Where a part's elements live: in the host bytes as given (mapped or owned, read in place), or in
/// an aligned copy when those bytes are not aligned for the element type (or the host is big-endian).
/// Quantized blocks are byte-addressed and always read in place.
enum Store {
    Host(HostBytes),
    F32(Vec<f32>),
    U16(Vec<u16>),
}

/// Elements of a part (or of a row range of it) in their stored dtype; 16-bit types as raw bits,
/// quantized types as their blocks.
#[derive(Clone, Copy)]
pub enum View<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
    /// Blocks of a quantized dtype.
    Q(DType, &'a [u8]),
}

impl<'a> View<'a> {
    /// Elements `start..start + len` (whole blocks for a quantized view).
    pub fn range(self, start: usize, len: usize) -> View<'a> {
        match self {
            View::F32(s) => View::F32(&s[start..][..len]),
            View::F16(s) => View::F16(&s[start..][..len]),
            View::BF16(s) => View::BF16(&s[start..][..len]),
            View::Q(dt, s) => {
                let (be, bb) = (dt.block_elems(), dt.block_bytes());
                View::Q(dt, &s[start / be * bb..][..len / be * bb])
            }
        }
    }
}

/// One part of a weight (e.g. `wq` of `wq|wk|wv`): `rows` rows starting at global row `row0`.
pub struct Part {
    store: Store,
    pub row0: usize,
    pub rows: usize,
}

/// A weight matrix `[rows, cols]` made of parts stacked by rows, with an optional bias.
pub struct CpuWeight {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub parts: Vec<Part>,
    pub bias: Option<Vec<f32>>,
}

fn oom(bytes: usize, what: &str) -> BackendError {
    BackendError::OutOfMemory { backend: "cpu".into(), bytes: bytes as u64, what: what.into() }
}

/// Copies `n` little-endian elements of `size` bytes out of `bytes` into an owned, aligned vector.
fn decode<T: Default + Clone>(
    bytes: &[u8],
    size: usize,
    what: &str,
    f: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>> {
    let n = bytes.len() / size;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom(bytes.len(), what))?;
    v.extend(bytes.chunks_exact(size).map(f));
    Ok(v)
}

impl Part {
    fn new(t: &HostTensor, row0: usize, rows: usize) -> Result<Part> {
        let b: &[u8] = &t.bytes;
        let in_place = t.dtype.is_quantized()
            || cfg!(target_endian = "little")
                && match t.dtype {
                    DType::F32 => bytemuck::try_cast_slice::<u8, f32>(b).is_ok(),
                    _ => bytemuck::try_cast_slice::<u8, u16>(b).is_ok(),
                };
        let store = if in_place {
            Store::Host(t.bytes.clone())
        } else if t.dtype == DType::F32 {
            Store::F32(decode(b, 4, &t.name, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))?)
        } else {
            Store::U16(decode(b, 2, &t.name, |c| u16::from_le_bytes([c[0], c[1]]))?)
        };
        Ok(Part { store, row0, rows })
    }

    /// All elements of the part.
    pub fn view(&self, dtype: DType) -> View<'_> {
        if let (true, Store::Host(b)) = (dtype.is_quantized(), &self.store) {
            return View::Q(dtype, b);
        }
        let (f, h): (&[f32], &[u16]) = match &self.store {
            // Alignment was checked when the part was made and the bytes never move.
            Store::Host(b) => (
                bytemuck::try_cast_slice(b).unwrap_or_default(),
                bytemuck::try_cast_slice(b).unwrap_or_default(),
            ),
            Store::F32(v) => (v, &[]),
            Store::U16(v) => (&[], v),
        };
        match dtype {
            DType::F32 => View::F32(f),
            DType::F16 => View::F16(h),
            DType::BF16 => View::BF16(h),
            _ => View::Q(dtype, &[]),
        }
    }
}

impl CpuWeight {
    /// Checks the parts (one dtype, one column count, 2-D) and the bias, and keeps the bytes in place.
    pub fn new(parts: &[HostTensor], bias: Option<&[f32]>) -> Result<CpuWeight> {
        let shape = check::weight_parts(parts, bias)?;
        let mut stored = Vec::new();
        let mut row0 = 0;
        for (p, &r) in parts.iter().zip(&shape.part_rows) {
            stored.push(Part::new(p, row0, r)?);
            row0 += r;
        }
        let bias = match bias {
            None => None,
            Some(b) => {
                let mut v = Vec::new();
                v.try_reserve_exact(b.len()).map_err(|_| oom(b.len() * 4, &shape.name))?;
                v.extend_from_slice(b);
                Some(v)
            }
        };
        let WeightShape { name, dtype, rows, cols, .. } = shape;
        Ok(CpuWeight { name, dtype, rows, cols, parts: stored, bias })
    }

    /// The part holding global row `r` and the row's index inside it.
    pub fn locate(&self, r: usize) -> Option<(&Part, usize)> {
        let i = self.parts.partition_point(|p| p.row0 + p.rows <= r);
        self.parts.get(i).map(|p| (p, r - p.row0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tensor(name: &str, dtype: DType, rows: usize, cols: usize, bytes: HostBytes) -> HostTensor {
        HostTensor::new(name, dtype, vec![rows, cols], bytes).unwrap()
    }

    #[test]
    fn aligned_parts_are_read_in_place_unaligned_are_copied() {
        let raw: Arc<[u8]> = (0u8..40).collect::<Vec<_>>().into();
        let owned = |r: std::ops::Range<usize>| HostBytes::Owned(raw[r].to_vec().into());
        let f16_at = tensor("a", DType::F16, 1, 3, owned(2..8));
        let w = CpuWeight::new(&[f16_at.clone(), f16_at.clone()], None).unwrap();
        let View::F16(v) = w.parts[0].view(DType::F16) else { panic!("dtype") };
        assert!(matches!(w.parts[0].store, Store::Host(_)), "aligned part is kept in place");
        assert_eq!(v.as_ptr().cast::<u8>(), f16_at.bytes.as_ptr(), "zero-copy");
        assert_eq!(v, [0x0302, 0x0504, 0x0706]);
        assert_eq!((w.rows, w.cols, w.parts[1].row0), (2, 3, 1));

        // An f32 part one byte into a (page-aligned) map is not aligned for f32: it is copied.
        let mut anon = memmap2::MmapOptions::new().len(40).map_anon().unwrap();
        anon.copy_from_slice(&raw);
        let map = Arc::new(anon.make_read_only().unwrap());
        let f32_t = tensor("b", DType::F32, 1, 3, HostBytes::mapped(map, 1..13).unwrap());
        let w = CpuWeight::new(&[f32_t], Some(&[1.0])).unwrap();
        assert!(matches!(w.parts[0].store, Store::F32(_)), "unaligned part is copied");
        let View::F32(v) = w.parts[0].view(DType::F32) else { panic!("dtype") };
        let want: Vec<f32> =
            raw[1..13].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(v, want.as_slice());
    }

    #[test]
    fn inconsistent_parts_name_the_tensor() {
        let t = |name: &str, dtype: DType, cols: usize| {
            tensor(
                name,
                dtype,
                2,
                cols,
                HostBytes::Owned(vec![0u8; dtype.bytes_for(2 * cols).unwrap()].into()),
            )
        };
        for (parts, bias, needle) in [
            (vec![t("wq", DType::F16, 4), t("wk", DType::F16, 5)], None, "wk"),
            (vec![t("wq", DType::F16, 4), t("wv", DType::BF16, 4)], None, "wv"),
            (vec![t("wq", DType::F32, 4)], Some(&[0.0f32; 3][..]), "wq"),
        ] {
            match CpuWeight::new(&parts, bias) {
                Err(BackendError::InvalidArgument { detail, .. }) => {
                    assert!(detail.contains(needle), "{detail}")
                }
                other => panic!("expected InvalidArgument, got {:?}", other.map(|w| w.name)),
            }
        }
    }
}

//! GGUF v2/v3 reader: metadata of every value type, the tensor table, alignment and data offsets, with
//! every count, length, offset and dimension checked against the file size before use.

use std::collections::HashMap;
use std::fmt;

use thiserror::Error;

/// A malformed GGUF file; the message says what and where.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("corrupt GGUF at byte {offset}: {detail}")]
pub struct GgufError {
    /// Byte offset where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Unsigned integers of any width.
    U64(u64),
    /// Signed integers of any width.
    I64(i64),
    /// f32 and f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// Array of values of one type.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer (non-negative signed values too).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// As a float (integers too).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
            Value::Array(a) => write!(f, "[{} values]", a.len()),
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Dimensions, innermost first as GGUF stores them (`[cols, rows]` for a matrix).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Absolute byte range of the data in the file (checked to lie inside it).
    pub range: std::ops::Range<usize>,
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: HashMap<String, Value>,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the tensor data section.
    pub data_offset: usize,
}

/// Bytes per block and elements per block of a ggml type, or `None` for a type prism does not know.
pub fn ggml_block(ggml_type: u32) -> Option<(usize, usize)> {
    Some(match ggml_type {
        0 => (4, 1),     // F32
        1 => (2, 1),     // F16
        2 => (18, 32),   // Q4_0
        3 => (20, 32),   // Q4_1
        6 => (22, 32),   // Q5_0
        7 => (24, 32),   // Q5_1
        8 => (34, 32),   // Q8_0
        10 => (84, 256), // Q2_K
        11 => (110, 256),
        12 => (144, 256), // Q4_K
        13 => (176, 256),
        14 => (210, 256), // Q6_K
        30 => (2, 1),     // BF16
        _ => return None,
    })
}

/// Name of a ggml type id, for messages.
pub fn ggml_type_name(ggml_type: u32) -> String {
    match ggml_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        30 => "BF16",
        _ => return format!("ggml type {ggml_type}"),
    }
    .to_string()
}

const MAGIC: &[u8; 4] = b"GGUF";
const MAX_DIMS: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, detail: impl Into<String>) -> Result<T, GgufError> {
        Err(GgufError { offset: self.pos as u64, detail: detail.into() })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return self.err(format!("{what}: needs {n} bytes, {} left in the file", self.remaining()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each taking at least `min_item_bytes`: refused if they could not fit.
    fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        let fits = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > fits {
            return self.err(format!("{what} = {n} cannot fit in the {} bytes left", self.remaining()));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.count(1, what)?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U64(self.array::<1>(what)?[0] as u64),
            1 => Value::I64(self.array::<1>(what)?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.array(what)?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.array(what)?) as i64),
            4 => Value::U64(self.u32(what)? as u64),
            5 => Value::I64(i32::from_le_bytes(self.array(what)?) as i64),
            6 => Value::F64(f32::from_le_bytes(self.array(what)?) as f64),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return self.err(format!("{what}: bool byte {b}")),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth > 0 {
                    return self.err(format!("{what}: nested arrays are not supported"));
                }
                let elem = self.u32(what)?;
                let min = value_min_size(elem)
                    .ok_or(())
                    .or_else(|_| self.err(format!("{what}: unknown array element type {elem}")))?;
                let n = self.count(min, what)?;
                // Grow with what is actually read, not with the count the file claims.
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => return self.err(format!("{what}: unknown value type {other}")),
        })
    }
}

/// Smallest encoding of a value of type `ty` (strings: their 8-byte length).
fn value_min_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl Gguf {
    /// Parses the header of a GGUF file held in `bytes` (usually a memory map).
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4, "magic")? != MAGIC {
            return Err(GgufError { offset: 0, detail: "not a GGUF file (bad magic)".into() });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return r.err(format!("GGUF version {version} is not supported (2 or 3)"));
        }
        // Each tensor info takes at least 8 (name length) + 4 + 4 + 8 bytes.
        let n_tensors = r.count(24, "tensor count")?;
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes.
        let n_kv = r.count(13, "metadata count")?;
        let mut metadata = HashMap::with_capacity(n_kv.min(1024));
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata type")?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a,
                _ => return r.err(format!("general.alignment {v} is not a power of two")),
            },
        };
        let mut infos = Vec::with_capacity(n_tensors.min(1024));
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor rank")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return r.err(format!("tensor `{name}`: rank {n_dims} is not in 1..={MAX_DIMS}"));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ggml_type = r.u32("tensor type")?;
            let offset = r.u64("tensor offset")?;
            infos.push((name, dims, ggml_type, offset));
        }
        let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
        // Vocabulary-only files end right after the metadata, before the padding.
        let data_offset = if infos.is_empty() { data_offset.min(bytes.len() as u64) } else { data_offset };
        if data_offset > bytes.len() as u64 {
            return r.err("the tensor data section starts past the end of the file");
        }
        let data_len = bytes.len() as u64 - data_offset;
        let mut tensors = Vec::with_capacity(infos.len());
        for (name, dims, ggml_type, offset) in infos {
            let fail =
                |d: String| Err(GgufError { offset: data_offset, detail: format!("tensor `{name}`: {d}") });
            let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let Some(numel) = numel else { return fail(format!("dimensions {dims:?} overflow")) };
            let Some((block_bytes, block_elems)) = ggml_block(ggml_type) else {
                return fail(format!("unknown ggml type {ggml_type}"));
            };
            if dims[0] % block_elems as u64 != 0 {
                return fail(format!(
                    "row length {} is not a multiple of the {} block of {block_elems}",
                    dims[0],
                    ggml_type_name(ggml_type)
                ));
            }
            let size = (numel / block_elems as u64).checked_mul(block_bytes as u64);
            let Some(size) = size else { return fail("size overflows".into()) };
            if offset % alignment != 0 {
                return fail(format!("offset {offset} is not aligned to {alignment}"));
            }
            match offset.checked_add(size) {
                Some(end) if end <= data_len => {}
                _ => {
                    return fail(format!(
                        "data [{offset}, +{size}) runs past the {data_len} bytes of tensor data"
                    ));
                }
            }
            let start = (data_offset + offset) as usize;
            tensors.push(TensorInfo { name, dims, ggml_type, range: start..start + size as usize });
        }
        Ok(Gguf { version, metadata, tensors, data_offset: data_offset as usize })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A metadata string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A metadata unsigned integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// A metadata number as f64.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny writer for hand-made files.
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    #[test]
    fn parses_metadata_and_a_tensor() {
        let mut b = header(1, 3);
        string(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "llama.block_count");
        b.extend(4u32.to_le_bytes());
        b.extend(5u32.to_le_bytes());
        string(&mut b, "tokenizer.ggml.scores");
        b.extend(9u32.to_le_bytes());
        b.extend(6u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(1.5f32.to_le_bytes());
        b.extend((-2.0f32).to_le_bytes());
        string(&mut b, "w");
        b.extend(2u32.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        let start = b.len();
        b.extend([0u8; 32]);
        let g = Gguf::parse(&b).unwrap();
        assert_eq!(g.get_str("general.architecture"), Some("llama"));
        assert_eq!(g.get_u64("llama.block_count"), Some(5));
        assert_eq!(g.get("tokenizer.ggml.scores").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(g.tensors[0].range, start..start + 32);
        // Every truncation is an error, never a panic.
        for cut in 0..b.len() - 1 {
            assert!(Gguf::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let b = header(u64::MAX, 0);
        assert!(Gguf::parse(&b).unwrap_err().detail.contains("tensor count"));
        let mut b = header(0, 1);
        string(&mut b, "k");
        b.extend(9u32.to_le_bytes());
        b.extend(10u32.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        assert!(Gguf::parse(&b).unwrap_err().detail.contains("cannot fit"));
    }
}

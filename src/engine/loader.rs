//! Weight loading: safetensors files (single or sharded) mapped into memory, every header value checked.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;
use thiserror::Error;

use crate::backend::{DType, HostBytes, HostTensor};

/// Errors of model loading; each names the file or tensor at fault.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// `config.json` or a similar JSON file is malformed or out of range.
    #[error("bad model config {path}: {detail}")]
    BadConfig { path: String, detail: String },
    /// The architecture is not one prism implements.
    #[error("unknown architecture `{name}` (supported: {supported})")]
    UnknownArchitecture { name: String, supported: &'static str },
    /// A weight file's header or layout is malformed.
    #[error("corrupt weight file {path}: {detail}")]
    Corrupt { path: String, detail: String },
    /// A tensor the model needs is not in the files.
    #[error("tensor `{name}` is missing from the model files")]
    MissingTensor { name: String },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, got: Vec<usize> },
    /// A tensor is stored in a dtype prism cannot use.
    #[error(
        "tensor `{name}` has unsupported dtype {dtype} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)"
    )]
    UnsupportedDType { name: String, dtype: String },
    /// No weight files were found in a directory.
    #[error("no model.safetensors or model.safetensors.index.json in {dir}")]
    NoWeights { dir: String },
}

/// Largest safetensors JSON header accepted (the format's own reference limit).
const MAX_HEADER: u64 = 100 << 20;
/// Most dimensions a tensor may have.
const MAX_RANK: usize = 8;

/// A tensor entry as found in a file: usable, or stored in a dtype we cannot use (reported on use).
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Ready(HostTensor),
    Unsupported { dtype: String },
}

/// All tensors of a model, by name, backed by memory-mapped files.
#[derive(Debug, Default)]
pub struct WeightSource {
    entries: HashMap<String, Entry>,
}

impl WeightSource {
    /// An empty source (tests build sources tensor by tensor).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor under its name.
    pub fn insert(&mut self, t: HostTensor) {
        self.entries.insert(t.name.clone(), Entry::Ready(t));
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.entries.keys().cloned().collect();
        n.sort();
        n
    }

    /// Records a tensor stored in a dtype prism cannot use; asking for it names the dtype.
    pub fn insert_unsupported(&mut self, name: &str, dtype: &str) {
        self.entries.insert(name.to_string(), Entry::Unsupported { dtype: dtype.to_string() });
    }

    /// Whether a tensor of that name exists (usable or not).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Parameter count and stored bytes of all usable tensors.
    pub fn totals(&self) -> (usize, usize) {
        self.entries.values().fold((0, 0), |(n, b), e| match e {
            Entry::Ready(t) => (n + t.numel(), b + t.bytes.len()),
            Entry::Unsupported { .. } => (n, b),
        })
    }

    /// The tensor called `name`, or an error saying it is missing or of an unsupported dtype.
    pub fn get(&self, name: &str) -> Result<&HostTensor, LoadError> {
        match self.entries.get(name) {
            Some(Entry::Ready(t)) => Ok(t),
            Some(Entry::Unsupported { dtype }) => {
                Err(LoadError::UnsupportedDType { name: name.to_string(), dtype: dtype.clone() })
            }
            None => Err(LoadError::MissingTensor { name: name.to_string() }),
        }
    }

    /// The tensor called `name`, checked to have exactly `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&HostTensor, LoadError> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(LoadError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        Ok(t)
    }

    /// Opens the weights of an HF directory: `model.safetensors`, or the shards listed by
    /// `model.safetensors.index.json`.
    pub fn open_hf_dir(dir: &Path) -> Result<WeightSource, LoadError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut src = WeightSource::new();
        if single.is_file() {
            src.add_safetensors(&single)?;
        } else if index.is_file() {
            for shard in shard_files(&index)? {
                src.add_safetensors(&shard)?;
            }
        } else {
            return Err(LoadError::NoWeights { dir: dir.display().to_string() });
        }
        Ok(src)
    }

    /// Maps one safetensors file and adds its tensors.
    pub fn add_safetensors(&mut self, path: &Path) -> Result<(), LoadError> {
        let io = |e| LoadError::Io { path: path.display().to_string(), source: e };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not being
        // truncated or rewritten while prism runs.
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
        for (name, entry) in parse_safetensors(&map, path)? {
            self.entries.insert(name, entry);
        }
        Ok(())
    }
}

/// Checks a whole safetensors file held in memory and returns its tensor names (the parser the
/// loader uses, exposed for the fuzz tests).
pub fn check_safetensors(bytes: &[u8]) -> Result<Vec<String>, LoadError> {
    let entries = parse_safetensors_bytes(bytes, Path::new("<memory>"), |r| {
        Some(HostBytes::Owned(Arc::from(bytes.get(r)?)))
    })?;
    Ok(entries.into_iter().map(|(name, _)| name).collect())
}

fn corrupt(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt { path: path.display().to_string(), detail: detail.into() }
}

/// The distinct shard files named by a `model.safetensors.index.json`, resolved beside it.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| LoadError::Io { path: index.display().to_string(), source: e })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| corrupt(index, format!("not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| corrupt(index, "no `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let name = file
            .as_str()
            .ok_or_else(|| corrupt(index, format!("weight_map entry `{tensor}` is not a string")))?;
        // Shards must sit beside the index: no absolute paths or parent hops.
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(corrupt(index, format!("shard name `{name}` is not a plain file name")));
        }
        let p = dir.join(name);
        if !files.contains(&p) {
            files.push(p);
        }
    }
    Ok(files)
}

/// Parses a safetensors header and checks every entry against the file size.
fn parse_safetensors(map: &Arc<Mmap>, path: &Path) -> Result<Vec<(String, Entry)>, LoadError> {
    parse_safetensors_bytes(map, path, |range| HostBytes::mapped(map.clone(), range))
}

/// Header parser over raw bytes; `slice` turns a checked byte range into tensor bytes. Public to the
/// crate for the fuzz/property tests.
pub(crate) fn parse_safetensors_bytes(
    bytes: &[u8],
    path: &Path,
    slice: impl Fn(std::ops::Range<usize>) -> Option<HostBytes>,
) -> Result<Vec<(String, Entry)>, LoadError> {
    let file_len = bytes.len() as u64;
    if file_len < 8 {
        return Err(corrupt(path, format!("{file_len} bytes is too short for a safetensors header")));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(corrupt(
            path,
            format!("header length {header_len} exceeds the file ({file_len} bytes) or {MAX_HEADER}"),
        ));
    }
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| corrupt(path, format!("header is not a JSON object: {e}")))?;
    let mut out = Vec::with_capacity(header.len());
    for (name, meta) in header {
        if name == "__metadata__" {
            continue;
        }
        let err = |d: String| corrupt(path, format!("tensor `{name}`: {d}"));
        let dtype_name =
            meta.get("dtype").and_then(Value::as_str).ok_or_else(|| err("no dtype".into()))?.to_string();
        let shape: Vec<usize> = meta
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| err("no shape".into()))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| err("shape has a non-integer dimension".into()))?;
        if shape.len() > MAX_RANK {
            return Err(err(format!("rank {} exceeds {MAX_RANK}", shape.len())));
        }
        let offsets = meta
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| err("data_offsets is not a pair of integers".into()))?;
        let (begin, end) = offsets;
        if begin > end || end > data_len as u64 {
            return Err(err(format!("data_offsets [{begin}, {end}] fall outside the {data_len} data bytes")));
        }
        let elem_size = match dtype_name.as_str() {
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "F64" | "I64" | "U64" => 8,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            other => return Err(err(format!("unknown dtype `{other}`"))),
        };
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
        let want = numel.checked_mul(elem_size).ok_or_else(|| err("size overflows".into()))?;
        if want != end - begin {
            return Err(err(format!(
                "shape {shape:?} of {dtype_name} needs {want} bytes but data_offsets span {}",
                end - begin
            )));
        }
        let dtype = match dtype_name.as_str() {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        };
        let entry = match dtype {
            None => Entry::Unsupported { dtype: dtype_name },
            Some(dtype) => {
                let range = data_start + begin as usize..data_start + end as usize;
                let bytes = slice(range).ok_or_else(|| err("range outside the file".into()))?;
                let t = HostTensor::new(&name, dtype, shape, bytes)
                    .ok_or_else(|| err("byte length does not match shape".into()))?;
                Entry::Ready(t)
            }
        };
        out.push((name, entry));
    }
    Ok(out)
}

//! Argument checks every backend shares: sizes, aliasing, weight parts and attention shapes, so each
//! backend refuses bad calls with the same `InvalidArgument` before any work starts.

use super::{AttnShape, BackendError, BufId, HostTensor, KvSpec, Result, StepBatch};
use crate::backend::DType;

/// An `InvalidArgument` of `op`.
pub fn invalid(op: &'static str, detail: impl Into<String>) -> BackendError {
    BackendError::InvalidArgument { op, detail: detail.into() }
}

/// `a · b`, or InvalidArgument on overflow.
pub fn mul(op: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| invalid(op, format!("size {a} × {b} overflows")))
}

/// Refuses one buffer as both input and output.
pub fn distinct(op: &'static str, a: BufId, b: BufId) -> Result<()> {
    if a == b {
        return Err(invalid(op, format!("buffer {} is both input and output", a.0)));
    }
    Ok(())
}

/// Shape of a weight made of stacked parts.
#[derive(Clone, Debug)]
pub struct WeightShape {
    /// Part names joined by `|`.
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    /// Rows of each part, in order.
    pub part_rows: Vec<usize>,
}

/// Checks weight parts (one dtype, one column count, 2-D, whole quantized blocks, bytes matching the
/// shape) and the bias length.
pub fn weight_parts(parts: &[HostTensor], bias: Option<&[f32]>) -> Result<WeightShape> {
    let op = "upload_weight";
    let first = parts.first().ok_or_else(|| invalid(op, "no parts given"))?;
    let name = parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("|");
    let (dtype, cols) = (first.dtype, first.rows_cols().map_or(0, |(_, c)| c));
    let mut part_rows = Vec::with_capacity(parts.len());
    for p in parts {
        let Some((r, c)) = p.rows_cols() else {
            return Err(invalid(op, format!("tensor {} has shape {:?}, not 2-D", p.name, p.shape)));
        };
        if p.dtype != dtype || c != cols {
            return Err(invalid(
                op,
                format!(
                    "tensor {} is {} [{r}, {c}] but {} is {dtype} [.., {cols}]",
                    p.name, p.dtype, first.name
                ),
            ));
        }
        if !c.is_multiple_of(dtype.block_elems()) {
            return Err(invalid(
                op,
                format!(
                    "tensor {} has rows of {c}, not whole {dtype} blocks of {}",
                    p.name,
                    dtype.block_elems()
                ),
            ));
        }
        if r.checked_mul(c).and_then(|n| dtype.bytes_for(n)) != Some(p.bytes.len()) {
            return Err(invalid(
                op,
                format!("tensor {} holds {} bytes, not {r}×{c} {dtype}", p.name, p.bytes.len()),
            ));
        }
        part_rows.push(r);
    }
    let rows: usize = part_rows.iter().sum();
    if let Some(b) = bias
        && b.len() != rows
    {
        return Err(invalid(op, format!("bias of {name} has {} elements, not {rows} rows", b.len())));
    }
    Ok(WeightShape { name, dtype, rows, cols, part_rows })
}

/// Checks a cache `spec` against `layer`, the attention `shape` and the `n` tokens of `step`.
pub fn attention_args(
    op: &'static str,
    spec: &KvSpec,
    layer: usize,
    shape: &AttnShape,
    n: usize,
    step: &StepBatch,
) -> Result<()> {
    if layer >= spec.layers {
        return Err(invalid(op, format!("layer {layer} >= {} layers", spec.layers)));
    }
    if shape.kv_heads != spec.kv_heads || shape.head_dim != spec.head_dim {
        return Err(invalid(
            op,
            format!(
                "shape has {} kv heads of {}, the cache {} of {}",
                shape.kv_heads, shape.head_dim, spec.kv_heads, spec.head_dim
            ),
        ));
    }
    if shape.heads == 0 || shape.kv_heads == 0 || !shape.heads.is_multiple_of(shape.kv_heads) {
        return Err(invalid(
            op,
            format!("{} heads is not a multiple of {} kv heads", shape.heads, shape.kv_heads),
        ));
    }
    if shape.head_dim == 0 || !shape.head_dim.is_multiple_of(2) {
        return Err(invalid(op, format!("head_dim {} is not even and positive", shape.head_dim)));
    }
    if shape.window == Some(0) {
        return Err(invalid(op, "sliding window of 0 positions"));
    }
    if n > step.n_tokens() {
        return Err(invalid(op, format!("{n} tokens but the step has {}", step.n_tokens())));
    }
    Ok(())
}

/// A backend's activation buffers as the shared checks see them: each buffer's length, element type
/// and the backend's own handle for it (a device address, a buffer index).
pub trait ActBuffers {
    type Handle: Copy;
    /// `(elements, holds u32, handle)` of buffer `id`, `None` if there is no such buffer.
    fn lookup(&self, id: BufId) -> Option<(usize, bool, Self::Handle)>;

    /// Buffer `id` (argument `name` of `op`), checked to hold at least `len` elements of the wanted type.
    fn checked(
        &self,
        op: &'static str,
        name: &str,
        id: BufId,
        len: usize,
        u32s: bool,
    ) -> Result<Self::Handle> {
        let (have, is_u32, h) =
            self.lookup(id).ok_or_else(|| invalid(op, format!("unknown buffer {}", id.0)))?;
        let kind = |u: bool| if u { "u32" } else { "f32" };
        if is_u32 != u32s {
            return Err(invalid(
                op,
                format!("{name} (buffer {}) is {}, not {}", id.0, kind(is_u32), kind(u32s)),
            ));
        }
        if have < len {
            return Err(invalid(op, format!("{name} (buffer {}) has {have} elements, needs {len}", id.0)));
        }
        Ok(h)
    }

    /// The f32 buffer `id`, checked to hold `len` elements.
    fn f32s(&self, op: &'static str, name: &str, id: BufId, len: usize) -> Result<Self::Handle> {
        self.checked(op, name, id, len, false)
    }
}

/// `rms_norm` arguments: `[x, weight, out]` and the element count `rows · dim`.
pub fn rms_norm_args<B: ActBuffers + ?Sized>(
    b: &B,
    x: BufId,
    weight: BufId,
    out: BufId,
    rows: usize,
    dim: usize,
) -> Result<([B::Handle; 3], usize)> {
    let op = "rms_norm";
    distinct(op, x, out)?;
    distinct(op, weight, out)?;
    let len = mul(op, rows, dim)?;
    Ok(([b.f32s(op, "x", x, len)?, b.f32s(op, "weight", weight, dim)?, b.f32s(op, "out", out, len)?], len))
}

/// `rope_store_kv` buffer arguments, after the cache was checked: `[qkv, inv_freq, q_out]` for the
/// step's first `n` tokens.
pub fn rope_store_kv_args<B: ActBuffers + ?Sized>(
    b: &B,
    qkv: BufId,
    inv_freq: BufId,
    q_out: BufId,
    shape: &AttnShape,
    n: usize,
) -> Result<[B::Handle; 3]> {
    let op = "rope_store_kv";
    Ok([
        b.f32s(op, "qkv", qkv, mul(op, n, shape.qkv_width())?)?,
        b.f32s(op, "inv_freq", inv_freq, shape.head_dim / 2)?,
        b.f32s(op, "q_out", q_out, mul(op, n, shape.q_width())?)?,
    ])
}

/// `rope_attention` arguments (the fused op): `[qkv, inv_freq, out]`.
pub fn rope_attention_args<B: ActBuffers + ?Sized>(
    b: &B,
    qkv: BufId,
    inv_freq: BufId,
    out: BufId,
    shape: &AttnShape,
    n: usize,
) -> Result<[B::Handle; 3]> {
    let op = "rope_attention";
    distinct(op, qkv, out)?;
    distinct(op, inv_freq, out)?;
    Ok([
        b.f32s(op, "qkv", qkv, mul(op, n, shape.qkv_width())?)?,
        b.f32s(op, "inv_freq", inv_freq, shape.head_dim / 2)?,
        b.f32s(op, "out", out, mul(op, n, shape.q_width())?)?,
    ])
}

/// `silu_mul` arguments: `[gate_up, out]` and the output element count `rows · ffn`.
pub fn silu_mul_args<B: ActBuffers + ?Sized>(
    b: &B,
    gate_up: BufId,
    out: BufId,
    rows: usize,
    ffn: usize,
) -> Result<([B::Handle; 2], usize)> {
    let op = "silu_mul";
    distinct(op, gate_up, out)?;
    let len = mul(op, rows, ffn)?;
    Ok(([b.f32s(op, "gate_up", gate_up, mul(op, len, 2)?)?, b.f32s(op, "out", out, len)?], len))
}

/// `add` arguments: `[src, dst]`.
pub fn add_args<B: ActBuffers + ?Sized>(b: &B, dst: BufId, src: BufId, len: usize) -> Result<[B::Handle; 2]> {
    let op = "add";
    distinct(op, src, dst)?;
    Ok([b.f32s(op, "src", src, len)?, b.f32s(op, "dst", dst, len)?])
}

/// `argmax` arguments: `[x, out]` (`out` a u32 buffer of `rows`).
pub fn argmax_args<B: ActBuffers + ?Sized>(
    b: &B,
    x: BufId,
    out: BufId,
    rows: usize,
    cols: usize,
) -> Result<[B::Handle; 2]> {
    let op = "argmax";
    distinct(op, x, out)?;
    Ok([b.f32s(op, "x", x, mul(op, rows, cols)?)?, b.checked(op, "out", out, rows, true)?])
}

/// `gather_rows` arguments for the step's output rows: `[src, dst]` and the output element count.
pub fn gather_rows_args<B: ActBuffers + ?Sized>(
    b: &B,
    step: &StepBatch,
    src: BufId,
    dst: BufId,
    cols: usize,
) -> Result<([B::Handle; 2], usize)> {
    let op = "gather_rows";
    distinct(op, src, dst)?;
    let src_rows = step.output_rows.iter().map(|&r| r as usize + 1).max().unwrap_or(0);
    let len = mul(op, step.output_rows.len(), cols)?;
    Ok(([b.f32s(op, "src", src, mul(op, src_rows, cols)?)?, b.f32s(op, "dst", dst, len)?], len))
}

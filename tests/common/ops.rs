//! Table-driven op tests over `&mut dyn Backend`: every op on seeded random inputs with odd sizes,
//! checked against scalar f64 references ([`check_all_ops`]) or against another backend
//! ([`compare_backends`]), plus argument errors that must be `InvalidArgument` ([`check_errors`]).

#![allow(dead_code)]

use half::{bf16, f16};
use prism::backend::{
    AttnShape, Backend, BackendError, BufId, DType, HostBytes, HostTensor, KvSpec, MatmulMode, StepBatch,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "op_errors.rs"]
mod op_errors;
#[path = "quant_ops.rs"]
mod quant_ops;
#[allow(unused_imports)]
pub use op_errors::check_errors;
pub use quant_ops::{quant_cases, random_quant};

type BResult<T> = Result<T, BackendError>;

/// Largest normalized mean squared error `Σ(a−b)²/Σb²` an op may show.
pub const MAX_NMSE: f64 = 1e-6;
/// Largest NMSE of a quantized-weight case against another backend ([`compare_backends`]): a GPU
/// backend may round activations or dequantized weights to 16 bits. The CPU backend, whose
/// activations stay f32, meets [`MAX_NMSE`] against the f64 reference.
pub const MAX_NMSE_QUANT: f64 = 1e-3;

/// One op test: builds its inputs on a backend, runs the op, reads the result back.
pub trait OpCase {
    fn name(&self) -> String;
    /// Runs the op on `b` and returns everything it produced, flattened.
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>>;
    /// The same outputs from a naive scalar reference with f64 accumulation.
    fn reference(&self) -> Vec<f64>;
    /// Integer outputs (argmax) must match exactly rather than by NMSE.
    fn exact(&self) -> bool {
        false
    }
    /// The weight dtype the case reads, if any (a backend may lack kernels for it).
    fn dtype(&self) -> Option<DType> {
        None
    }
    /// Whether the case reads quantized weights ([`MAX_NMSE_QUANT`] between backends).
    fn quantized(&self) -> bool {
        false
    }
}

/// `Σ(a−b)²/Σb²` (0 when both are all zero; infinite on a length mismatch or NaN).
pub fn nmse(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&a, &b) in got.iter().zip(want) {
        num += (a as f64 - b).powi(2);
        den += b * b;
    }
    let e = if den == 0.0 { num } else { num / den };
    if e.is_nan() { f64::INFINITY } else { e }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn rand_vec(r: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// `v` rounded to `dtype` (the values the backend will see) and its little-endian bytes; quantized
/// dtypes get random blocks instead ([`random_quant`]).
fn quantize(r: &mut ChaCha8Rng, v: &[f32], dtype: DType) -> (Vec<f32>, Vec<u8>) {
    match dtype {
        DType::F32 => (v.to_vec(), v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            (h.iter().map(|x| x.to_f32()).collect(), h.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            (h.iter().map(|x| x.to_f32()).collect(), h.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        _ => random_quant(r, dtype, v.len()),
    }
}

/// A weight of `parts` (rows each) × `cols`, random, rounded to `dtype`: host tensors + f32 values.
fn make_weight(
    r: &mut ChaCha8Rng,
    name: &str,
    dtype: DType,
    parts: &[usize],
    cols: usize,
) -> (Vec<HostTensor>, Vec<f32>) {
    let mut all = Vec::new();
    let mut tensors = Vec::new();
    for (i, &rows) in parts.iter().enumerate() {
        let v = rand_vec(r, rows * cols, -1.0, 1.0);
        let (vals, bytes) = quantize(r, &v, dtype);
        let t =
            HostTensor::new(&format!("{name}.{i}"), dtype, vec![rows, cols], HostBytes::Owned(bytes.into()));
        tensors.push(t.expect("tensor bytes match shape"));
        all.extend(vals);
    }
    (tensors, all)
}

/// A step of `n` tokens usable with any cache of ≥ 1 block: every token at position 0 of sequence 0.
fn flat_step(tokens: &[u32], output_rows: &[u32]) -> StepBatch {
    StepBatch {
        tokens: tokens.to_vec(),
        positions: vec![0; tokens.len()],
        token_seq: vec![0; tokens.len()],
        block_table_start: vec![0],
        block_table_len: vec![1],
        block_tables: vec![0],
        output_rows: output_rows.to_vec(),
    }
}

fn download(b: &mut dyn Backend, id: BufId, len: usize) -> BResult<Vec<f32>> {
    let mut v = vec![0f32; len];
    b.download(id, &mut v)?;
    Ok(v)
}

// ---- matmul ------------------------------------------------------------------------------------

/// An op folded into a matmul's input ([`Backend::norm_matmul`], [`Backend::silu_mul_matmul`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Fused {
    None,
    /// RMS norm with this weight (epsilon 1e-5).
    Norm(Vec<f32>),
    /// SwiGLU: x rows hold gate | up.
    SiluMul,
}

pub struct Matmul {
    fused: Fused,
    dtype: DType,
    parts: Vec<usize>,
    cols: usize,
    tokens: usize,
    mode: MatmulMode,
    tensors: Vec<HostTensor>,
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    x: Vec<f32>,
    out0: Vec<f32>,
}

impl Matmul {
    pub fn new(
        seed: u64,
        dtype: DType,
        parts: &[usize],
        cols: usize,
        tokens: usize,
        mode: MatmulMode,
        bias: bool,
    ) -> Self {
        let mut r = rng(seed);
        let (tensors, w) = make_weight(&mut r, "w", dtype, parts, cols);
        let rows: usize = parts.iter().sum();
        let bias = bias.then(|| rand_vec(&mut r, rows, -1.0, 1.0));
        let x = rand_vec(&mut r, tokens * cols, -1.0, 1.0);
        let out0 = rand_vec(&mut r, tokens * rows, -1.0, 1.0);
        let fused = Fused::None;
        Matmul { fused, dtype, parts: parts.to_vec(), cols, tokens, mode, tensors, w, bias, x, out0 }
    }

    /// As [`Matmul::new`] with `fused` folded into the input (`Fused::Norm`'s weight is drawn here).
    #[allow(clippy::too_many_arguments)]
    pub fn fused(
        seed: u64,
        dtype: DType,
        parts: &[usize],
        cols: usize,
        tokens: usize,
        mode: MatmulMode,
        bias: bool,
        silu: bool,
    ) -> Self {
        let mut m = Matmul::new(seed, dtype, parts, cols, tokens, mode, bias);
        let mut r = rng(seed ^ 0x5eed);
        if silu {
            m.x = rand_vec(&mut r, 2 * tokens * cols, -4.0, 4.0);
            m.fused = Fused::SiluMul;
        } else {
            m.x = rand_vec(&mut r, tokens * cols, -3.0, 3.0);
            m.fused = Fused::Norm(rand_vec(&mut r, cols, 0.5, 1.5));
        }
        m
    }

    /// The matrix input row by row, as the fused op defines it, in f64.
    fn input(&self) -> Vec<f64> {
        let c = self.cols;
        let mut v = Vec::with_capacity(self.tokens * c);
        for t in 0..self.tokens {
            match &self.fused {
                Fused::None => v.extend(self.x[t * c..][..c].iter().map(|&a| a as f64)),
                Fused::Norm(g) => {
                    let row = &self.x[t * c..][..c];
                    let ms = row.iter().map(|&a| a as f64 * a as f64).sum::<f64>() / c as f64;
                    let inv = 1.0 / (ms + 1e-5f32 as f64).sqrt();
                    v.extend(row.iter().zip(g).map(|(&a, &w)| w as f64 * a as f64 * inv));
                }
                Fused::SiluMul => {
                    let (g, u) = self.x[2 * t * c..][..2 * c].split_at(c);
                    v.extend(g.iter().zip(u).map(|(&g, &u)| g as f64 / (1.0 + (-g as f64).exp()) * u as f64));
                }
            }
        }
        v
    }
}

impl OpCase for Matmul {
    fn name(&self) -> String {
        let b = if self.bias.is_some() { "+bias" } else { "" };
        let op = match self.fused {
            Fused::None => "matmul",
            Fused::Norm(_) => "norm_matmul",
            Fused::SiluMul => "silu_mul_matmul",
        };
        format!(
            "{op} {} parts {:?} cols {} tokens {} {:?}{b}",
            self.dtype, self.parts, self.cols, self.tokens, self.mode
        )
    }
    fn quantized(&self) -> bool {
        self.dtype.is_quantized()
    }
    fn dtype(&self) -> Option<DType> {
        Some(self.dtype)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let w = b.upload_weight(&self.tensors, self.bias.as_deref())?;
        let x = b.upload(&self.x)?;
        let out = b.upload(&self.out0)?;
        let (n, c) = (self.tokens, self.cols);
        match &self.fused {
            Fused::None => b.matmul(w, x, out, n, self.mode)?,
            Fused::Norm(g) => {
                let (g, xn) = (b.upload(g)?, b.alloc(n * c)?);
                b.norm_matmul(x, g, 1e-5, xn, w, out, n, c, self.mode)?;
            }
            Fused::SiluMul => {
                let h = b.alloc(n * c)?;
                b.silu_mul_matmul(x, h, w, out, n, c, self.mode)?;
            }
        }
        b.submit()?;
        download(b, out, self.out0.len())
    }
    fn reference(&self) -> Vec<f64> {
        let rows: usize = self.parts.iter().sum();
        let mut out = vec![0f64; self.tokens * rows];
        let x = self.input();
        for t in 0..self.tokens {
            for j in 0..rows {
                let mut s: f64 =
                    (0..self.cols).map(|k| x[t * self.cols + k] * self.w[j * self.cols + k] as f64).sum();
                s += self.bias.as_ref().map_or(0.0, |b| b[j] as f64);
                if self.mode == MatmulMode::Accumulate {
                    s += self.out0[t * rows + j] as f64;
                }
                out[t * rows + j] = s;
            }
        }
        out
    }
}

// ---- embed -------------------------------------------------------------------------------------

pub struct Embed {
    dtype: DType,
    dim: usize,
    tensors: Vec<HostTensor>,
    table: Vec<f32>,
    tokens: Vec<u32>,
    n: usize,
}

impl OpCase for Embed {
    fn name(&self) -> String {
        format!("embed {} dim {} tokens {}/{}", self.dtype, self.dim, self.n, self.tokens.len())
    }
    fn quantized(&self) -> bool {
        self.dtype.is_quantized()
    }
    fn dtype(&self) -> Option<DType> {
        Some(self.dtype)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let t = b.upload_weight(&self.tensors, None)?;
        let out = b.alloc(self.n * self.dim)?;
        b.set_step(&flat_step(&self.tokens, &[]))?;
        b.embed(t, out, self.n)?;
        download(b, out, self.n * self.dim)
    }
    fn reference(&self) -> Vec<f64> {
        self.tokens[..self.n]
            .iter()
            .flat_map(|&t| self.table[t as usize * self.dim..][..self.dim].iter().map(|&v| v as f64))
            .collect()
    }
}

impl Embed {
    /// A table of `parts` rows × `dim` in `dtype` and 11 tokens (9 looked up) over all its rows.
    pub fn new(seed: u64, dtype: DType, parts: &[usize], dim: usize) -> Self {
        let mut r = rng(seed);
        let (tensors, table) = make_weight(&mut r, "embed", dtype, parts, dim);
        let vocab: usize = parts.iter().sum();
        let last = vocab as u32 - 1;
        let tokens: Vec<u32> = (0..7)
            .map(|_| r.random_range(0..vocab as u32))
            .chain([last, 0, parts[0] as u32 - 1, parts[0] as u32])
            .collect();
        Embed { dtype, dim, tensors, table, tokens, n: 9 }
    }
}

// ---- row-wise and element-wise -------------------------------------------------------------------

struct RmsNorm {
    rows: usize,
    dim: usize,
    x: Vec<f32>,
    w: Vec<f32>,
}

impl OpCase for RmsNorm {
    fn name(&self) -> String {
        format!("rms_norm rows {} dim {}", self.rows, self.dim)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let (x, w, out) = (b.upload(&self.x)?, b.upload(&self.w)?, b.alloc(self.x.len())?);
        b.rms_norm(x, w, out, self.rows, self.dim, 1e-5)?;
        download(b, out, self.x.len())
    }
    fn reference(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for row in self.x.chunks(self.dim) {
            let var = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / self.dim as f64;
            let inv = 1.0 / (var + 1e-5f32 as f64).sqrt();
            out.extend(row.iter().zip(&self.w).map(|(&v, &w)| w as f64 * (v as f64 * inv)));
        }
        out
    }
}

struct SiluMul {
    rows: usize,
    ffn: usize,
    gu: Vec<f32>,
}

impl OpCase for SiluMul {
    fn name(&self) -> String {
        format!("silu_mul rows {} ffn {}", self.rows, self.ffn)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let (g, out) = (b.upload(&self.gu)?, b.alloc(self.rows * self.ffn)?);
        b.silu_mul(g, out, self.rows, self.ffn)?;
        download(b, out, self.rows * self.ffn)
    }
    fn reference(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for row in self.gu.chunks(2 * self.ffn) {
            let (g, u) = row.split_at(self.ffn);
            out.extend(g.iter().zip(u).map(|(&g, &u)| g as f64 / (1.0 + (-g as f64).exp()) * u as f64));
        }
        out
    }
}

struct Add {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl OpCase for Add {
    fn name(&self) -> String {
        format!("add len {}", self.a.len())
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let (d, s) = (b.upload(&self.a)?, b.upload(&self.b)?);
        b.add(d, s, self.a.len())?;
        download(b, d, self.a.len())
    }
    fn reference(&self) -> Vec<f64> {
        self.a.iter().zip(&self.b).map(|(&a, &b)| a as f64 + b as f64).collect()
    }
}

/// `copy` of a range into the middle of another buffer, then `gather_rows` of the step's outputs.
struct CopyGather {
    src: Vec<f32>,
    dst: Vec<f32>,
    cols: usize,
    rows: Vec<u32>,
}

impl OpCase for CopyGather {
    fn name(&self) -> String {
        format!("copy + gather_rows cols {} rows {:?}", self.cols, self.rows)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let (s, d) = (b.upload(&self.src)?, b.upload(&self.dst)?);
        b.copy(s, 3, d, 5, 11)?;
        b.copy(d, 0, d, 20, 4)?;
        let mut out = download(b, d, self.dst.len())?;
        let tokens = vec![0u32; self.src.len() / self.cols];
        b.set_step(&flat_step(&tokens, &self.rows))?;
        let g = b.alloc(self.rows.len() * self.cols)?;
        b.gather_rows(s, g, self.cols)?;
        out.extend(download(b, g, self.rows.len() * self.cols)?);
        Ok(out)
    }
    fn reference(&self) -> Vec<f64> {
        let mut d = self.dst.clone();
        d[5..16].copy_from_slice(&self.src[3..14]);
        let head: Vec<f32> = d[..4].to_vec();
        d[20..24].copy_from_slice(&head);
        let mut out: Vec<f64> = d.iter().map(|&v| v as f64).collect();
        for &r in &self.rows {
            out.extend(self.src[r as usize * self.cols..][..self.cols].iter().map(|&v| v as f64));
        }
        out
    }
}

struct Argmax {
    rows: usize,
    cols: usize,
    x: Vec<f32>,
}

impl OpCase for Argmax {
    fn name(&self) -> String {
        format!("argmax rows {} cols {}", self.rows, self.cols)
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let (x, out) = (b.upload(&self.x)?, b.alloc_u32(self.rows)?);
        b.argmax(x, out, self.rows, self.cols)?;
        let mut v = vec![0u32; self.rows];
        b.download_u32(out, &mut v)?;
        Ok(v.into_iter().map(|i| i as f32).collect())
    }
    fn reference(&self) -> Vec<f64> {
        self.x
            .chunks(self.cols)
            .map(|row| {
                let mut best = 0;
                let mut val = f32::NEG_INFINITY;
                for (j, &v) in row.iter().enumerate() {
                    if v > val {
                        (best, val) = (j, v);
                    }
                }
                best as f64
            })
            .collect()
    }
    fn exact(&self) -> bool {
        true
    }
}

// ---- rope_store_kv + attention -------------------------------------------------------------------

/// Steps over several sequences with paged, non-contiguous block tables: a prefill of every sequence
/// (tokens interleaved), then a decode/chunk step at later positions. Each step runs `rope_store_kv`
/// then `attention` in `layer` 1 of 2; outputs are the rotated queries and the attention outputs of
/// every step. `fused`: the steps after the prefill are decode steps (one token per sequence) and run
/// as `rope_attention` (which a backend may fold into one kernel); outputs are the attention outputs.
struct Attention {
    shape: AttnShape,
    spec: KvSpec,
    steps: Vec<StepBatch>,
    qkv: Vec<Vec<f32>>,
    inv_freq: Vec<f32>,
    fused: bool,
}

impl Attention {
    /// Short prefills (lengths 7, 9, 1) with the tokens of the sequences interleaved.
    fn new(seed: u64, heads: usize, kv_heads: usize, head_dim: usize, window: Option<u32>) -> Self {
        let tables: [&[u32]; 3] = [&[5, 2, 11], &[0, 9, 3, 14], &[12, 1]];
        Self::build(seed, (heads, kv_heads, head_dim, window), 16, &tables, [7, 9, 1], true, false)
    }

    /// [`Attention::new`], [`Attention::long`] or [`Attention::chunks`]'s prefills, then three decode
    /// steps through `rope_attention`: all three sequences, sequence 1 alone, sequences 0 and 1.
    fn decode(
        seed: u64,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        window: Option<u32>,
        prefill: Prefill,
    ) -> Self {
        let mut a = match prefill {
            Prefill::Short => Self::new(seed, heads, kv_heads, head_dim, window),
            Prefill::Long => Self::long(seed, heads, kv_heads, head_dim, window),
            Prefill::Chunks => Self::chunks(seed, heads, kv_heads, head_dim, window),
        };
        let l = |s: usize| a.steps[0].token_seq.iter().filter(|&&t| t as usize == s).count() as u32;
        let (l0, l1, l2) = (l(0), l(1), l(2));
        let decode: [&[(u32, u32)]; 3] =
            [&[(1, l1), (0, l0), (2, l2)], &[(1, l1 + 1)], &[(0, l0 + 1), (1, l1 + 2)]];
        let mut r = rng(seed ^ 0x5eed);
        let first = a.steps[0].clone();
        a.steps.truncate(1);
        a.qkv.truncate(1);
        for toks in decode {
            let mut s = first.clone();
            s.positions = toks.iter().map(|&(_, p)| p).collect();
            s.token_seq = toks.iter().map(|&(q, _)| q).collect();
            s.tokens = vec![1; toks.len()];
            a.qkv.push(rand_vec(&mut r, toks.len() * a.shape.qkv_width(), -1.0, 1.0));
            a.steps.push(s);
        }
        a.fused = true;
        a
    }

    /// Long prefills (lengths 45, 23, 3), each sequence's tokens in one run (as the engine sends a
    /// prompt): the shape of a prefill kernel's tiles, with sequence boundaries inside tiles.
    fn long(seed: u64, heads: usize, kv_heads: usize, head_dim: usize, window: Option<u32>) -> Self {
        let tables: [&[u32]; 3] =
            [&[17, 3, 22, 8, 0, 13, 6, 20, 11, 1, 15, 9], &[4, 19, 12, 2, 23, 7, 16], &[10]];
        Self::build(seed, (heads, kv_heads, head_dim, window), 24, &tables, [45, 23, 3], false, false)
    }

    /// A prefill longer than attention kernels' chunks of positions (lengths 150, 23, 3, one
    /// sequence after the other), so that decode steps read several chunks.
    fn chunks(seed: u64, heads: usize, kv_heads: usize, head_dim: usize, window: Option<u32>) -> Self {
        // 40 + 7 + 1 blocks of 4 positions, scattered over a pool of 48.
        let pool: Vec<u32> = (0..48).map(|b| (b * 29 + 7) % 48).collect();
        let tables: [&[u32]; 3] = [&pool[..40], &pool[40..47], &pool[47..]];
        Self::build(seed, (heads, kv_heads, head_dim, window), 48, &tables, [150, 23, 3], false, false)
    }

    fn build(
        seed: u64,
        (heads, kv_heads, head_dim, window): (usize, usize, usize, Option<u32>),
        blocks: usize,
        tables: &[&[u32]; 3],
        lens: [u32; 3],
        interleave: bool,
        fused: bool,
    ) -> Self {
        let mut r = rng(seed);
        let shape = AttnShape { heads, kv_heads, head_dim, scale: 1.0 / (head_dim as f32).sqrt(), window };
        let spec = KvSpec { layers: 2, blocks, block_size: 4, kv_heads, head_dim };
        let mut block_tables = Vec::new();
        let (mut start, mut len) = (Vec::new(), Vec::new());
        for t in tables {
            start.push(block_tables.len() as u32);
            len.push(t.len() as u32);
            block_tables.extend_from_slice(t);
        }
        let step = |toks: &[(u32, u32)]| StepBatch {
            tokens: vec![1; toks.len()],
            positions: toks.iter().map(|&(_, p)| p).collect(),
            token_seq: toks.iter().map(|&(s, _)| s).collect(),
            block_table_start: start.clone(),
            block_table_len: len.clone(),
            block_tables: block_tables.clone(),
            output_rows: vec![],
        };
        // The prefill of every sequence (round-robin or one after the other); then a decode/chunk step
        // at the next positions (two tokens of sequence 1).
        let mut prefill = Vec::new();
        if interleave {
            for p in 0..lens.iter().max().copied().unwrap_or(0) {
                prefill.extend((0..3).filter(|&s| p < lens[s]).map(|s| (s as u32, p)));
            }
        } else {
            for (s, &l) in lens.iter().enumerate() {
                prefill.extend((0..l).map(|p| (s as u32, p)));
            }
        }
        let next = [(1, lens[1]), (0, lens[0]), (2, lens[2]), (1, lens[1] + 1)];
        let steps = vec![step(&prefill), step(&next)];
        let qkv =
            steps.iter().map(|s| rand_vec(&mut r, s.n_tokens() * shape.qkv_width(), -1.0, 1.0)).collect();
        let inv_freq =
            (0..head_dim / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / head_dim as f32)).collect();
        Attention { shape, spec, steps, qkv, inv_freq, fused }
    }
}

/// The prefill before [`Attention::decode`]'s steps.
#[derive(Clone, Copy)]
enum Prefill {
    Short,
    Long,
    Chunks,
}

/// A rotated key and its value, each `kv_width`.
type KeyValue = (Vec<f64>, Vec<f64>);

/// RoPE (rotate-half) of each head of `x` at `pos`, with the angle rounded to f32 as HF does.
fn rope_ref(x: &[f32], pos: u32, inv_freq: &[f32], hd: usize) -> Vec<f64> {
    let half = hd / 2;
    let mut out = vec![0f64; x.len()];
    for (h, o) in x.chunks(hd).zip(out.chunks_mut(hd)) {
        for i in 0..half {
            let a = (pos as f32 * inv_freq[i]) as f64;
            let (c, s) = (a.cos(), a.sin());
            o[i] = h[i] as f64 * c - h[i + half] as f64 * s;
            o[i + half] = h[i + half] as f64 * c + h[i] as f64 * s;
        }
    }
    out
}

impl OpCase for Attention {
    fn name(&self) -> String {
        let s = &self.shape;
        format!(
            "{} heads {} kv {} dim {} window {:?}",
            if self.fused { "rope_attention (decode)" } else { "rope_store_kv + attention" },
            s.heads,
            s.kv_heads,
            s.head_dim,
            s.window
        )
    }
    fn run(&self, b: &mut dyn Backend) -> BResult<Vec<f32>> {
        let kv = b.alloc_kv(self.spec)?;
        let inv = b.upload(&self.inv_freq)?;
        let mut res = Vec::new();
        for (step, qkv) in self.steps.iter().zip(&self.qkv) {
            let n = step.n_tokens();
            let qw = self.shape.q_width();
            b.set_step(step)?;
            let (x, q, out) = (b.upload(qkv)?, b.alloc(n * qw)?, b.alloc(n * qw)?);
            if self.fused && !res.is_empty() {
                b.rope_attention(x, inv, q, kv, 1, out, self.shape, n)?;
            } else {
                b.rope_store_kv(x, inv, q, kv, 1, self.shape, n)?;
                b.attention(q, kv, 1, out, self.shape, n)?;
                res.extend(download(b, q, n * qw)?);
            }
            res.extend(download(b, out, n * qw)?);
        }
        Ok(res)
    }
    fn reference(&self) -> Vec<f64> {
        let s = &self.shape;
        let (hd, qw, kw) = (s.head_dim, s.q_width(), s.kv_width());
        // history[seq][pos] = (rotated k, v), each kv_width
        let mut hist: Vec<Vec<Option<KeyValue>>> = vec![vec![None; 4 * self.spec.blocks]; 3];
        let mut res = Vec::new();
        for (step, qkv) in self.steps.iter().zip(&self.qkv) {
            let n = step.n_tokens();
            let mut qs = Vec::new();
            for i in 0..n {
                let row = &qkv[i * s.qkv_width()..][..s.qkv_width()];
                let p = step.positions[i];
                qs.push(rope_ref(&row[..qw], p, &self.inv_freq, hd));
                let k = rope_ref(&row[qw..qw + kw], p, &self.inv_freq, hd);
                let v = row[qw + kw..].iter().map(|&v| v as f64).collect();
                hist[step.token_seq[i] as usize][p as usize] = Some((k, v));
            }
            if !self.fused || res.is_empty() {
                res.extend(qs.iter().flatten());
            }
            for (i, q) in qs.iter().enumerate() {
                let (seq, p) = (step.token_seq[i] as usize, step.positions[i] as usize);
                let lo = s.window.map_or(0, |w| (p + 1).saturating_sub(w as usize));
                for h in 0..s.heads {
                    let kvh = h / (s.heads / s.kv_heads);
                    let qh = &q[h * hd..][..hd];
                    let entries: Vec<_> = (lo..=p).map(|j| hist[seq][j].as_ref().expect("stored")).collect();
                    let scores: Vec<f64> = entries
                        .iter()
                        .map(|(k, _)| (0..hd).map(|d| qh[d] * k[kvh * hd + d]).sum::<f64>() * s.scale as f64)
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        res.push(entries.iter().zip(&e).map(|((_, v), w)| w / sum * v[kvh * hd + d]).sum());
                    }
                }
            }
        }
        res
    }
}

// ---- the table -----------------------------------------------------------------------------------

/// Every op test case, each with its own seed (so two backends see the same inputs).
pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut v: Vec<Box<dyn OpCase>> = Vec::new();
    let mut seed = 100;
    let mut next = || {
        seed += 1;
        seed
    };
    let dtypes = [DType::F32, DType::F16, DType::BF16];
    let modes = [MatmulMode::Overwrite, MatmulMode::Accumulate];
    for (ci, cols) in [1, 7, 33, 257, 1000].into_iter().enumerate() {
        for (ri, rows) in [1, 3, 17].into_iter().enumerate() {
            for (ti, tokens) in [1, 2, 5, 13].into_iter().enumerate() {
                let dtype = dtypes[(ci + ri + ti) % 3];
                let mode = modes[(ri + ti) % 2];
                let bias = (ci + ti) % 2 == 0;
                v.push(Box::new(Matmul::new(next(), dtype, &[rows], cols, tokens, mode, bias)));
            }
        }
    }
    // Every dtype × mode with multi-part weights, on gemv and GEMM sizes, and blocks larger than one
    // task (rows > 64, tokens > 48, k > 1024).
    for dtype in dtypes {
        for mode in modes {
            for (parts, cols, tokens) in [
                (&[5, 3, 9][..], 33, 1),
                (&[5, 3, 9][..], 257, 3),
                (&[16, 7, 16][..], 100, 7),
                (&[70, 3, 40][..], 1000, 61),
                (&[130][..], 1500, 9),
            ] {
                v.push(Box::new(Matmul::new(
                    next(),
                    dtype,
                    parts,
                    cols,
                    tokens,
                    mode,
                    mode == MatmulMode::Accumulate,
                )));
            }
        }
    }
    // Norm and SwiGLU folded into the matmul: gemv sizes (where a backend fuses) and GEMM sizes.
    for (i, dtype) in dtypes.into_iter().enumerate() {
        for (j, (parts, cols, tokens)) in
            [(&[5, 3][..], 33, 1), (&[17][..], 258, 3), (&[40][..], 1000, 8), (&[9][..], 37, 11)]
                .into_iter()
                .enumerate()
        {
            let mode = modes[(i + j) % 2];
            let (bias, silu) = ((i + j) % 3 == 0, j % 2 == 1);
            v.push(Box::new(Matmul::fused(next(), dtype, parts, cols, tokens, mode, bias, silu)));
            v.push(Box::new(Matmul::fused(next(), dtype, parts, cols, tokens, mode, !bias, !silu)));
        }
    }
    // One-token gemvs at model widths: thousands of rows (several per GPU warp), rows longer than one
    // pass of a warp, a width that ends inside a pass.
    for (dtype, parts, cols, stage) in [
        (DType::F16, &[2000, 100][..], 2048, Some(false)),
        (DType::BF16, &[300][..], 4104, Some(true)),
        (DType::F16, &[64][..], 8192, Some(true)),
        (DType::F16, &[700][..], 1536, None),
        // Rows ending inside a unit of 32 (zero padding), read as vec4 and element by element.
        (DType::BF16, &[999][..], 2056, Some(false)),
        (DType::F16, &[77][..], 100, Some(true)),
        (DType::BF16, &[513][..], 4000, None),
        (DType::F16, &[129][..], 1001, Some(false)),
    ] {
        let mode = MatmulMode::Accumulate;
        v.push(match stage {
            None => Box::new(Matmul::new(next(), dtype, parts, cols, 1, mode, true)),
            Some(silu) => Box::new(Matmul::fused(next(), dtype, parts, cols, 1, mode, false, silu)),
        });
    }
    for dtype in dtypes {
        for dim in [1, 33, 257] {
            v.push(Box::new(Embed::new(next(), dtype, &[20, 17], dim)));
        }
    }
    v.extend(quant_cases(&mut next));
    for rows in [1, 3, 17] {
        for dim in [1, 7, 33, 257, 1000] {
            let mut r = rng(next());
            let x = rand_vec(&mut r, rows * dim, -3.0, 3.0);
            v.push(Box::new(RmsNorm { rows, dim, x, w: rand_vec(&mut r, dim, 0.5, 1.5) }));
            let gu = rand_vec(&mut r, rows * 2 * dim, -8.0, 8.0);
            v.push(Box::new(SiluMul { rows, ffn: dim, gu }));
        }
    }
    for len in [1, 7, 1000, 100_003] {
        let mut r = rng(next());
        v.push(Box::new(Add { a: rand_vec(&mut r, len, -1.0, 1.0), b: rand_vec(&mut r, len, -1.0, 1.0) }));
    }
    {
        let mut r = rng(next());
        let (cols, n) = (33, 6);
        let src = rand_vec(&mut r, n * cols, -1.0, 1.0);
        let dst = rand_vec(&mut r, 40, -1.0, 1.0);
        v.push(Box::new(CopyGather { src, dst, cols, rows: vec![3, 0, 5, 3] }));
    }
    for (rows, cols) in [(1, 1), (3, 257), (5, 1000)] {
        let mut r = rng(next());
        let mut x = rand_vec(&mut r, rows * cols, -1.0, 1.0);
        if cols > 10 {
            x[cols + 7] = 5.0; // a tie in row 1: the first index wins
            x[cols + 9] = 5.0;
            x[2 * cols + 1] = f32::NAN; // NaN never wins
            x[2 * cols + 2] = 4.0;
        }
        v.push(Box::new(Argmax { rows, cols, x }));
    }
    v.push(Box::new(Attention::new(next(), 4, 2, 16, None)));
    v.push(Box::new(Attention::new(next(), 6, 2, 12, Some(5))));
    v.push(Box::new(Attention::new(next(), 2, 2, 64, Some(3))));
    v.push(Box::new(Attention::new(next(), 3, 1, 34, None)));
    v.push(Box::new(Attention::long(next(), 8, 2, 64, None)));
    v.push(Box::new(Attention::long(next(), 6, 2, 128, Some(20))));
    v.push(Box::new(Attention::long(next(), 4, 4, 32, None)));
    v.push(Box::new(Attention::decode(next(), 4, 2, 16, None, Prefill::Short)));
    v.push(Box::new(Attention::decode(next(), 6, 2, 12, Some(5), Prefill::Short)));
    v.push(Box::new(Attention::decode(next(), 8, 2, 64, None, Prefill::Long)));
    v.push(Box::new(Attention::decode(next(), 6, 2, 128, Some(20), Prefill::Long)));
    // head_dim not a multiple of 4 (the scalar kernels), GQA groups of 3.
    v.push(Box::new(Attention::decode(next(), 3, 1, 34, None, Prefill::Short)));
    v.push(Box::new(Attention::decode(next(), 6, 2, 10, Some(6), Prefill::Long)));
    // Several chunks of positions; the window's first chunk starting mid-sequence.
    v.push(Box::new(Attention::decode(next(), 4, 1, 32, None, Prefill::Chunks)));
    v.push(Box::new(Attention::decode(next(), 4, 2, 18, Some(130), Prefill::Chunks)));
    v.push(Box::new(Attention::decode(next(), 2, 2, 256, Some(140), Prefill::Chunks)));
    v
}

/// Runs every case on `b` and checks it against the scalar reference; panics listing all failures.
pub fn check_all_ops(b: &mut dyn Backend) {
    check_cases(b, &cases(), MAX_NMSE);
}

/// Runs `cases` on `b` and checks them against the scalar reference, quantized cases to
/// `quant_max_nmse`, the others to [`MAX_NMSE`]; panics listing all failures.
pub fn check_cases(b: &mut dyn Backend, cases: &[Box<dyn OpCase>], quant_max_nmse: f64) {
    let mut failures = Vec::new();
    for c in cases {
        let want = c.reference();
        match c.run(b) {
            Err(e) => failures.push(format!("{}: error {e}", c.name())),
            Ok(got) if c.exact() => {
                if got.iter().zip(&want).any(|(&g, &w)| g as f64 != w) || got.len() != want.len() {
                    failures.push(format!("{}: got {got:?}, want {want:?}", c.name()));
                }
            }
            Ok(got) => {
                let e = nmse(&got, &want);
                if e > if c.quantized() { quant_max_nmse } else { MAX_NMSE } {
                    failures.push(format!("{}: nmse {e:e}", c.name()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} op cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs every case on `b` and on `reference` (the CPU backend) and compares them by NMSE.
pub fn compare_backends(b: &mut dyn Backend, reference: &mut dyn Backend) {
    compare_backends_where(b, reference, &|_| true);
}

/// As [`compare_backends`] for a backend with kernels for the dtypes `supported` accepts: cases of
/// other dtypes must fail with `UnsupportedDType`. Returns how many cases were compared.
pub fn compare_backends_where(
    b: &mut dyn Backend,
    reference: &mut dyn Backend,
    supported: &dyn Fn(DType) -> bool,
) -> usize {
    let mut failures = Vec::new();
    let cases = cases();
    let mut compared = 0;
    for c in &cases {
        if c.dtype().is_some_and(|d| !supported(d)) {
            if !matches!(c.run(b), Err(BackendError::UnsupportedDType { .. })) {
                failures.push(format!("{}: expected UnsupportedDType", c.name()));
            }
            continue;
        }
        compared += 1;
        match (c.run(b), c.run(reference)) {
            (Ok(got), Ok(want)) => {
                let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                let e = nmse(&got, &want);
                let max = if c.quantized() { MAX_NMSE_QUANT } else { MAX_NMSE };
                let bad = if c.exact() { e != 0.0 } else { e > max };
                if bad {
                    failures.push(format!("{}: nmse {e:e} against {}", c.name(), reference.info().backend));
                }
            }
            (g, w) => failures.push(format!("{}: errors {:?} / {:?}", c.name(), g.err(), w.err())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} op cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    compared
}

//! The backend contract: device buffers, weights, the KV cache and the op set the model is written against.
//!
//! The model is written once against [`Backend`]. A backend owns every buffer; the model only holds
//! copyable handles ([`BufId`], [`WeightId`], [`KvId`]). Buffers, weights and the KV cache are created at
//! load time and never again; ops never allocate and never block. Ops are *recorded* (a GPU backend puts
//! them in one command encoder / one stream) and run at the latest on [`Backend::submit`]; only the
//! `download_*` methods wait. The CPU backend simply runs each op when it is recorded.
//!
//! Per-step data — token ids, positions, which sequence each token belongs to, block tables of the paged
//! KV cache, the rows whose logits are wanted — lives in one [`StepBatch`] given to
//! [`Backend::set_step`] once per forward step, so kernel arguments stay static and a decode step can be
//! replayed (graphs). One step may hold many sequences (batched decode, chunked prefill).

mod check;
pub mod cpu;
pub mod hip;
mod host;
pub mod quant;
mod tuning;
pub mod wgpu;

use thiserror::Error;

pub use host::{DType, HostBytes, HostTensor};

/// Handle of an activation buffer owned by a backend (f32 or u32 elements, fixed length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufId(pub u32);

/// Handle of a weight matrix owned by a backend (stored in its own dtype, maybe quantized).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeightId(pub u32);

/// Handle of a paged KV cache owned by a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvId(pub u32);

/// Errors of the backend layer.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The backend cannot run on this machine (no runtime library, no device, ...).
    #[error("backend {backend} is not available: {reason}")]
    Unavailable { backend: String, reason: String },
    /// A weight was stored in a dtype this backend has no kernel for.
    #[error("backend {backend} does not support dtype {dtype} (tensor {tensor})")]
    UnsupportedDType { backend: String, dtype: String, tensor: String },
    /// The device (or host) could not hold an allocation.
    #[error("out of memory on {backend}: could not allocate {bytes} bytes for {what}")]
    OutOfMemory { backend: String, bytes: u64, what: String },
    /// An op or upload was given arguments that do not fit the buffers or each other.
    #[error("invalid argument to {op}: {detail}")]
    InvalidArgument { op: &'static str, detail: String },
    /// The device failed (lost device, launch failure, driver error).
    #[error("device error on {backend}: {detail}")]
    Device { backend: String, detail: String },
}

/// Result of backend calls.
pub type Result<T> = std::result::Result<T, BackendError>;

/// Whether a matmul overwrites its output or adds into it (`out += W·x`, for residual streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulMode {
    /// `out = x·Wᵀ (+ bias)`
    Overwrite,
    /// `out += x·Wᵀ (+ bias)`: o-proj and down-proj write straight into the residual.
    Accumulate,
}

/// Shape of a paged KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSpec {
    /// Transformer layers.
    pub layers: usize,
    /// Blocks in the pool shared by all sequences.
    pub blocks: usize,
    /// Token positions per block.
    pub block_size: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
}

/// Head layout of attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (GQA: `heads` is a multiple of it).
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Multiplier of q·k (usually `1/sqrt(head_dim)`).
    pub scale: f32,
    /// Sliding window in positions (Mistral), `None` for full causal attention.
    pub window: Option<u32>,
}

impl AttnShape {
    /// Width of the fused `q|k|v` row: `(heads + 2·kv_heads)·head_dim`.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
    /// Width of the query (and attention output) row: `heads·head_dim`.
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Width of one key or value row: `kv_heads·head_dim`.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Everything that changes from one forward step to the next, uploaded once per step.
///
/// A step holds `n_tokens` token rows from one or more sequences. Token `i` belongs to sequence
/// `token_seq[i]`, sits at position `positions[i]` of that sequence, and attends to positions
/// `0..=positions[i]` of it (or the last `window` of them). Sequence `s` keeps its keys and values in
/// the cache blocks `block_tables[block_table_start[s] ..][.. block_table_len[s]]`; position `p` lives in
/// block `p / block_size` of that list, at slot `p % block_size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepBatch {
    /// Token ids, `[n_tokens]`.
    pub tokens: Vec<u32>,
    /// Position of each token in its sequence, `[n_tokens]`.
    pub positions: Vec<u32>,
    /// Sequence (index into the block-table arrays) of each token, `[n_tokens]`.
    pub token_seq: Vec<u32>,
    /// Start of each sequence's block list in `block_tables`, `[n_seqs]`.
    pub block_table_start: Vec<u32>,
    /// Length of each sequence's block list, `[n_seqs]`.
    pub block_table_len: Vec<u32>,
    /// Concatenated block lists of all sequences.
    pub block_tables: Vec<u32>,
    /// Token rows whose hidden state goes on to the LM head (usually the last row of each sequence),
    /// `[n_outputs]`.
    pub output_rows: Vec<u32>,
}

impl StepBatch {
    /// One sequence: `tokens` at positions `start_pos..`, cache blocks `blocks`, logits of the last token.
    pub fn single(tokens: &[u32], start_pos: usize, blocks: &[u32]) -> Self {
        let n = tokens.len() as u32;
        StepBatch {
            tokens: tokens.to_vec(),
            positions: (0..n).map(|i| start_pos as u32 + i).collect(),
            token_seq: vec![0; tokens.len()],
            block_table_start: vec![0],
            block_table_len: vec![blocks.len() as u32],
            block_tables: blocks.to_vec(),
            output_rows: if n == 0 { vec![] } else { vec![n - 1] },
        }
    }

    /// Number of token rows in the step.
    /// Whether every token is the only one of its sequence (a decode step): then no token attends to
    /// a key another token of the step stores.
    pub fn one_token_per_seq(&self) -> bool {
        let mut seen = vec![false; self.block_table_start.len()];
        self.token_seq.iter().all(|&s| seen.get_mut(s as usize).is_some_and(|b| !std::mem::replace(b, true)))
    }

    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Number of rows that reach the LM head.
    pub fn n_outputs(&self) -> usize {
        self.output_rows.len()
    }

    /// Checks internal consistency against a cache of `kv` shape: lengths agree, every sequence index,
    /// block id and position is in range. Backends call it in `set_step`, so ops can index without checks.
    pub fn validate(&self, kv: Option<&KvSpec>) -> Result<()> {
        let bad = |detail: String| Err(BackendError::InvalidArgument { op: "set_step", detail });
        let n = self.tokens.len();
        if self.positions.len() != n || self.token_seq.len() != n {
            return bad(format!(
                "tokens {n}, positions {}, token_seq {} differ in length",
                self.positions.len(),
                self.token_seq.len()
            ));
        }
        let n_seqs = self.block_table_start.len();
        if self.block_table_len.len() != n_seqs {
            return bad("block_table_start and block_table_len differ in length".into());
        }
        for s in 0..n_seqs {
            let (start, len) = (self.block_table_start[s] as usize, self.block_table_len[s] as usize);
            if start.checked_add(len).is_none_or(|end| end > self.block_tables.len()) {
                return bad(format!("block table of sequence {s} runs past the block list"));
            }
        }
        if let Some(kv) = kv
            && let Some(b) = self.block_tables.iter().find(|&&b| b as usize >= kv.blocks)
        {
            return bad(format!("block id {b} >= {} blocks in the cache", kv.blocks));
        }
        for i in 0..n {
            let s = self.token_seq[i] as usize;
            if s >= n_seqs {
                return bad(format!("token {i} names sequence {s} of {n_seqs}"));
            }
            if let Some(kv) = kv {
                let cap = self.block_table_len[s] as usize * kv.block_size;
                if self.positions[i] as usize >= cap {
                    return bad(format!(
                        "token {i} at position {} is beyond the {cap} positions of its blocks",
                        self.positions[i]
                    ));
                }
            }
        }
        if let Some(r) = self.output_rows.iter().find(|&&r| r as usize >= n) {
            return bad(format!("output row {r} >= {n} tokens"));
        }
        Ok(())
    }
}

/// What a backend says about itself.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    /// Backend name as given to `--backend` (`cpu`, `wgpu`, `hip`, `cuda`).
    pub backend: String,
    /// Human-readable device description (CPU model and threads, GPU name, ...).
    pub device: String,
}

/// The op-level contract every backend implements. Sizes are in elements; every op checks that its
/// buffers are large enough and returns [`BackendError::InvalidArgument`] rather than panicking.
/// Activation buffers hold row-major `[rows, cols]` matrices of f32 unless said otherwise.
pub trait Backend: Send {
    /// Name and device of this backend.
    fn info(&self) -> BackendInfo;

    // ---- allocation (load time only) ---------------------------------------------------------------

    /// Allocates a zeroed f32 buffer of `len` elements.
    fn alloc(&mut self, len: usize) -> Result<BufId>;
    /// Allocates a zeroed u32 buffer of `len` elements (argmax results).
    fn alloc_u32(&mut self, len: usize) -> Result<BufId>;
    /// Allocates an f32 buffer holding `data` (norm weights, RoPE frequency tables).
    fn upload(&mut self, data: &[f32]) -> Result<BufId>;
    /// Creates a weight matrix of shape `[rows, cols]` (out × in, as torch `Linear`) from `parts`
    /// stacked by rows (e.g. `wq|wk|wv`), all of one dtype and `cols`. The backend keeps the stored dtype
    /// (zero-copy where it can) and dequantizes inside its kernels. `bias`, if any, has `rows` elements.
    fn upload_weight(&mut self, parts: &[HostTensor], bias: Option<&[f32]>) -> Result<WeightId>;
    /// Allocates a paged KV cache.
    fn alloc_kv(&mut self, spec: KvSpec) -> Result<KvId>;

    // ---- per step ----------------------------------------------------------------------------------

    /// Uploads the per-step data that `embed`, `rope_store_kv`, `attention` and `gather_rows` read.
    /// Validates it first ([`StepBatch::validate`]).
    fn set_step(&mut self, step: &StepBatch) -> Result<()>;

    // ---- ops (recorded; run at the latest on `submit`) ---------------------------------------------

    /// `out[i, :] = table[step.tokens[i], :]` as f32 for the `n` tokens of the step. `table` is
    /// `[vocab, dim]`; `out` is `[n, dim]`.
    fn embed(&mut self, table: WeightId, out: BufId, n: usize) -> Result<()>;
    /// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight` for `rows` rows of `dim`.
    fn rms_norm(
        &mut self,
        x: BufId,
        weight: BufId,
        out: BufId,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()>;
    /// `out[rows, w.rows] (+)= x[rows, w.cols] · Wᵀ + bias`. A backend uses a gemv for small `rows`
    /// and a tiled GEMM for large ones.
    fn matmul(&mut self, w: WeightId, x: BufId, out: BufId, rows: usize, mode: MatmulMode) -> Result<()>;
    /// For the `n` tokens of the step, reads fused rows `qkv[n, (heads + 2·kv_heads)·head_dim]`, applies
    /// rotary embedding (rotate-half layout, frequencies `inv_freq[head_dim/2]`, angle = position ·
    /// inv_freq) to q and k, writes the rotated queries to `q_out[n, heads·head_dim]`, and stores k and v
    /// into `layer` of the cache at each token's position.
    #[allow(clippy::too_many_arguments)]
    fn rope_store_kv(
        &mut self,
        qkv: BufId,
        inv_freq: BufId,
        q_out: BufId,
        kv: KvId,
        layer: usize,
        shape: AttnShape,
        n: usize,
    ) -> Result<()>;
    /// Causal attention of the `n` step tokens' queries `q[n, heads·head_dim]` over their sequences'
    /// cached keys and values in `layer` (positions `0..=pos`, or the last `window`), softmax in f32,
    /// into `out[n, heads·head_dim]`. GQA: query head `h` reads kv head `h / (heads / kv_heads)`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        q: BufId,
        kv: KvId,
        layer: usize,
        out: BufId,
        shape: AttnShape,
        n: usize,
    ) -> Result<()>;
    /// [`Backend::rope_store_kv`] then [`Backend::attention`] of the rotated queries: one op where the
    /// backend folds them into one kernel for this step ([`Backend::fused_rope_attention`]), else the two
    /// ops. `q[n, heads·head_dim]` is scratch space (its contents afterwards are unspecified).
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &mut self,
        qkv: BufId,
        inv_freq: BufId,
        q: BufId,
        kv: KvId,
        layer: usize,
        out: BufId,
        shape: AttnShape,
        n: usize,
    ) -> Result<()> {
        if !self.fused_rope_attention(qkv, inv_freq, kv, layer, out, shape, n)? {
            self.rope_store_kv(qkv, inv_freq, q, kv, layer, shape, n)?;
            self.attention(q, kv, layer, out, shape, n)?;
        }
        Ok(())
    }
    /// [`Backend::rope_attention`] as one fused op, recorded when the backend has one for this step;
    /// `Ok(false)` (the default) when it has not, and nothing was recorded.
    #[allow(clippy::too_many_arguments)]
    fn fused_rope_attention(
        &mut self,
        _qkv: BufId,
        _inv_freq: BufId,
        _kv: KvId,
        _layer: usize,
        _out: BufId,
        _shape: AttnShape,
        _n: usize,
    ) -> Result<bool> {
        Ok(false)
    }
    /// `out[r, j] = silu(gate_up[r, j]) · gate_up[r, ffn + j]` for `rows` rows; `gate_up` is
    /// `[rows, 2·ffn]` (the fused `w1|w3` output), `out` is `[rows, ffn]`.
    fn silu_mul(&mut self, gate_up: BufId, out: BufId, rows: usize, ffn: usize) -> Result<()>;
    /// `out[rows, w.rows] (+)= rms_norm(x)[rows, dim] · Wᵀ + bias`, the norm as [`Backend::rms_norm`]
    /// with `norm[dim]` and `eps`: one op where the backend folds the norm into the matrix product
    /// ([`Backend::fused_norm_matmul`]), else the two ops. `xn[rows, dim]` is scratch space (its
    /// contents afterwards are unspecified).
    #[allow(clippy::too_many_arguments)]
    fn norm_matmul(
        &mut self,
        x: BufId,
        norm: BufId,
        eps: f32,
        xn: BufId,
        w: WeightId,
        out: BufId,
        rows: usize,
        dim: usize,
        mode: MatmulMode,
    ) -> Result<()> {
        if !self.fused_norm_matmul(x, norm, eps, w, out, rows, dim, mode)? {
            self.rms_norm(x, norm, xn, rows, dim, eps)?;
            self.matmul(w, xn, out, rows, mode)?;
        }
        Ok(())
    }
    /// [`Backend::norm_matmul`] as one fused op, recorded when the backend has one for this shape;
    /// `Ok(false)` (the default) when it has not, and nothing was recorded.
    #[allow(clippy::too_many_arguments)]
    fn fused_norm_matmul(
        &mut self,
        _x: BufId,
        _norm: BufId,
        _eps: f32,
        _w: WeightId,
        _out: BufId,
        _rows: usize,
        _dim: usize,
        _mode: MatmulMode,
    ) -> Result<bool> {
        Ok(false)
    }
    /// `out[rows, w.rows] (+)= silu_mul(gate_up)[rows, ffn] · Wᵀ + bias`, as [`Backend::silu_mul`]
    /// then [`Backend::matmul`], or one fused op ([`Backend::fused_silu_mul_matmul`]); `h[rows, ffn]` is
    /// scratch space.
    #[allow(clippy::too_many_arguments)]
    fn silu_mul_matmul(
        &mut self,
        gate_up: BufId,
        h: BufId,
        w: WeightId,
        out: BufId,
        rows: usize,
        ffn: usize,
        mode: MatmulMode,
    ) -> Result<()> {
        if !self.fused_silu_mul_matmul(gate_up, w, out, rows, ffn, mode)? {
            self.silu_mul(gate_up, h, rows, ffn)?;
            self.matmul(w, h, out, rows, mode)?;
        }
        Ok(())
    }
    /// [`Backend::silu_mul_matmul`] as one fused op where the backend has one; `Ok(false)` otherwise.
    fn fused_silu_mul_matmul(
        &mut self,
        _gate_up: BufId,
        _w: WeightId,
        _out: BufId,
        _rows: usize,
        _ffn: usize,
        _mode: MatmulMode,
    ) -> Result<bool> {
        Ok(false)
    }
    /// `dst[..len] += src[..len]`.
    fn add(&mut self, dst: BufId, src: BufId, len: usize) -> Result<()>;
    /// `dst[i, :] = src[step.output_rows[i], :]` for each output row of the step; rows are `cols` wide.
    fn gather_rows(&mut self, src: BufId, dst: BufId, cols: usize) -> Result<()>;
    /// `dst[dst_off .. dst_off + len] = src[src_off .. src_off + len]` (f32 buffers).
    fn copy(&mut self, src: BufId, src_off: usize, dst: BufId, dst_off: usize, len: usize) -> Result<()>;
    /// `out[r] = argmax_j x[r, j]` (first index on ties) for `rows` rows of `cols`; `out` is a u32
    /// buffer.
    fn argmax(&mut self, x: BufId, out: BufId, rows: usize, cols: usize) -> Result<()>;

    // ---- submission and read-back ------------------------------------------------------------------

    /// Sends everything recorded so far to the device. Does not wait.
    fn submit(&mut self) -> Result<()>;
    /// Waits for the recorded work and copies `out.len()` f32 elements from the start of `buf`.
    fn download(&mut self, buf: BufId, out: &mut [f32]) -> Result<()>;
    /// Waits for the recorded work and copies `out.len()` u32 elements from the start of `buf`.
    fn download_u32(&mut self, buf: BufId, out: &mut [u32]) -> Result<()>;

    /// Time per kernel since the last report, where the backend was asked to profile
    /// (`PRISM_PROFILE=1`); `None` otherwise.
    fn profile_report(&mut self) -> Option<String> {
        None
    }
}

/// A backend selectable with `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The best available: a GPU backend when one works, else the CPU.
    Auto,
    /// The multi-threaded SIMD CPU backend (the reference).
    Cpu,
    /// WGSL compute shaders through wgpu (Vulkan, Metal, DX12).
    Wgpu,
    /// HIP + rocBLAS on AMD GPUs.
    Hip,
    /// The HIP kernels compiled for NVIDIA (CUDA + cuBLAS).
    Cuda,
}

impl BackendKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Hip => "hip",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Every concrete backend, in the order `auto` tries them.
    pub const CONCRETE: [BackendKind; 4] =
        [BackendKind::Cuda, BackendKind::Hip, BackendKind::Wgpu, BackendKind::Cpu];
}

/// Options that shape a backend instance.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackendOptions {
    /// Device index within the backend.
    pub device: usize,
    /// CPU threads (0 = all cores).
    pub threads: usize,
}

/// What `prism devices` prints for one backend.
#[derive(Clone, Debug)]
pub struct BackendReport {
    /// The backend.
    pub kind: BackendKind,
    /// Its devices, or why it cannot run here.
    pub devices: std::result::Result<Vec<String>, String>,
}

/// Probes every backend: its devices, or the reason it is unavailable.
pub fn probe_all(threads: usize) -> Vec<BackendReport> {
    BackendKind::CONCRETE
        .iter()
        .map(|&kind| BackendReport {
            kind,
            devices: match kind {
                BackendKind::Cpu => {
                    cpu::CpuBackend::new(threads).map(|b| vec![b.info().device]).map_err(|e| e.to_string())
                }
                BackendKind::Wgpu => self::wgpu::probe(),
                BackendKind::Hip | BackendKind::Cuda => hip::probe(kind),
                BackendKind::Auto => Err("auto is not a backend".into()),
            },
        })
        .collect()
}

/// Creates a backend; `Auto` takes the first concrete backend that starts (CUDA, HIP, a hardware
/// wgpu adapter, then the CPU).
pub fn create(kind: BackendKind, opts: BackendOptions) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Auto => {
            let mut reasons = Vec::new();
            for k in BackendKind::CONCRETE {
                // A software Vulkan device (lavapipe) is slower than the CPU backend: `auto` skips
                // it; `--backend wgpu` still takes it.
                if k == BackendKind::Wgpu && !self::wgpu::has_hardware_adapter(opts.device) {
                    reasons.push(format!("wgpu: device {} is not a hardware GPU", opts.device));
                    continue;
                }
                match create(k, opts) {
                    Ok(b) => return Ok(b),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            Err(BackendError::Unavailable { backend: "auto".into(), reason: reasons.join("; ") })
        }
        BackendKind::Cpu => {
            if opts.device != 0 {
                return Err(BackendError::Unavailable {
                    backend: "cpu".into(),
                    reason: format!("there is only device 0, not {}", opts.device),
                });
            }
            Ok(Box::new(cpu::CpuBackend::new(opts.threads)?))
        }
        BackendKind::Wgpu => Ok(Box::new(self::wgpu::WgpuBackend::new(opts.device)?)),
        BackendKind::Hip | BackendKind::Cuda => Ok(Box::new(hip::GpuBackend::new(kind, opts.device)?)),
    }
}

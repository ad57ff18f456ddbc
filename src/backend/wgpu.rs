//! wgpu backend: the portable GPU path. WGSL compute shaders (`shaders/`) on Vulkan, Metal or DX12.
//!
//! Ops are recorded as dispatches (pipeline, bind group, parameter slot, grid) and encoded into one
//! compute pass of one command encoder at `submit`; pipelines and bind groups are made once and reused.
//! Each dispatch's small parameters go in a 256-byte slot of one uniform buffer (a dynamic offset),
//! and the whole parameter block is written once per submit; the step data (`set_step`) is one
//! storage buffer written once per step. Weights stay in their stored format (see `wgpu/weights.rs`)
//! and are dequantized inside the kernels.

mod attention;
mod device;
pub mod kernels;
mod matmul;
mod profile;
mod record;
mod weights;

use std::collections::HashMap;

use self::device::Gpu;
use self::kernels::{Access, FUSED_INPUT_MAX_TOKENS, Kernel};
use self::weights::RowLayout;
use super::check::{self, ActBuffers, distinct, invalid, mul};
use super::tuning::knob;
use super::{
    AttnShape, Backend, BackendError, BackendInfo, BufId, DType, HostTensor, KvId, KvSpec, MatmulMode,
    Result, StepBatch, WeightId,
};

pub use self::device::{has_hardware_adapter, probe};

/// Bytes of one dispatch's parameter slot (the largest `min_uniform_buffer_offset_alignment`).
const SLOT: u64 = 256;
/// Parameter slots (a ring shared by the submitted parts).
const SLOTS: u64 = 4096;
/// Dispatches per submitted part: small enough that the GPU starts on the first layers of a step
/// while the host still records the rest, large enough that submits stay few.
const SUBMIT_EVERY: usize = 48;

/// Choices a test may make that a user never needs to.
#[derive(Clone, Copy, Debug)]
pub struct WgpuOptions {
    /// Cut weights into chunks of at most this many bytes even where the device binds more.
    pub max_chunk_bytes: u64,
    /// Use subgroup reductions where the device has them (else workgroup-memory reductions).
    pub subgroups: bool,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions { max_chunk_bytes: u64::MAX, subgroups: true }
    }
}

/// Element type of an activation buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    U32,
}

struct Act {
    gpu: u32,
    len: usize,
    elem: Elem,
}

/// Rows `row0 .. row0 + rows` of a weight in their own quant and scale buffers.
struct Chunk {
    row0: usize,
    rows: usize,
    q: u32,
    s: u32,
}

struct GpuWeight {
    name: String,
    dtype: DType,
    rows: usize,
    cols: usize,
    units: usize,
    chunks: Vec<Chunk>,
    bias: Option<u32>,
}

/// A paged KV cache: per layer, a key and a value buffer of `[blocks · block_size, kv_heads, head_dim]`.
struct GpuKv {
    spec: KvSpec,
    layers: Vec<(u32, u32)>,
}

/// What a matrix product reads: the activations, or an op folded into it.
#[derive(Clone, Copy)]
enum Input {
    Plain,
    /// RMS-normed activations: the norm weight's GPU buffer and epsilon.
    Norm(u32, f32),
    /// SwiGLU of gate | up rows.
    SiluMul,
}

/// One recorded dispatch.
struct Dispatch {
    pipeline: usize,
    bind_group: usize,
    slot: u32,
    grid: (u32, u32),
}

/// The wgpu backend.
pub struct WgpuBackend {
    gpu: Gpu,
    /// Every GPU buffer; the handles below index it.
    buffers: Vec<wgpu::Buffer>,
    acts: Vec<Act>,
    weights: Vec<GpuWeight>,
    kvs: Vec<GpuKv>,
    layouts: HashMap<&'static [(u32, Access)], (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: HashMap<Kernel, usize>,
    pipeline_list: Vec<wgpu::ComputePipeline>,
    pipeline_names: Vec<String>,
    /// Bind groups by (pipeline, buffers bound 1..).
    bind_groups: HashMap<(usize, [u32; 7]), usize>,
    bind_group_list: Vec<wgpu::BindGroup>,
    params: u32,
    /// Parameter slots of the dispatches recorded since the last submit.
    param_bytes: Vec<u8>,
    recorded: Vec<Dispatch>,
    step: StepBatch,
    step_kv: Option<KvSpec>,
    step_buf: u32,
    step_cap: u64,
    /// Bound where a kernel declares a binding this op has no buffer for (no bias, no scales).
    dummy: u32,
    staging: Option<(wgpu::Buffer, u64)>,
    /// Largest buffer bound at once (the device's binding and buffer limits).
    max_binding: u64,
    /// Largest weight chunk: `max_binding`, or a test's smaller limit.
    chunk_bytes: u64,
    /// GPU time per kernel when profiling (`PRISM_PROFILE=1`): timestamps around every dispatch.
    profiler: Option<profile::Profiler>,
    /// Scratch for argmax's (value, index) pairs: GPU buffer and its bytes.
    argmax_pairs: Option<(u32, u64)>,
    /// First parameter slot of the part being recorded (the slots are a ring).
    slot_base: u32,
    /// Dispatches per submitted part (`PRISM_WGPU_SUBMIT_EVERY`, default [`SUBMIT_EVERY`]).
    submit_every: usize,
    /// Host time spent encoding/submitting and waiting (`PRISM_PROFILE=host` or `1`).
    host: profile::HostTimes,
}

fn device_error(detail: impl Into<String>) -> BackendError {
    BackendError::Device { backend: "wgpu".into(), detail: detail.into() }
}

fn u32_of(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| invalid(op, format!("size {v} exceeds the 32-bit indices of the kernels")))
}

impl WgpuBackend {
    /// Opens adapter `device` (see `prism devices`: discrete GPUs first, CPU adapters last).
    pub fn new(device: usize) -> Result<WgpuBackend> {
        Self::with_options(device, WgpuOptions::default())
    }

    /// As [`WgpuBackend::new`], with [`WgpuOptions`] (for tests: smaller chunks, no subgroups).
    pub fn with_options(device: usize, opts: WgpuOptions) -> Result<WgpuBackend> {
        let max_binding = opts.max_chunk_bytes;
        let profile = std::env::var("PRISM_PROFILE").unwrap_or_default();
        let profiling = profile == "1";
        let mut gpu = device::open(device, profiling)?;
        gpu.subgroups &= opts.subgroups;
        let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size);
        let mut b = WgpuBackend {
            gpu,
            buffers: Vec::new(),
            acts: Vec::new(),
            weights: Vec::new(),
            kvs: Vec::new(),
            layouts: HashMap::new(),
            pipelines: HashMap::new(),
            pipeline_list: Vec::new(),
            pipeline_names: Vec::new(),
            bind_groups: HashMap::new(),
            bind_group_list: Vec::new(),
            params: 0,
            param_bytes: Vec::new(),
            recorded: Vec::new(),
            step: StepBatch::default(),
            step_kv: None,
            step_buf: 0,
            step_cap: 0,
            dummy: 0,
            staging: None,
            max_binding: limit & !15,
            chunk_bytes: (max_binding.min(limit) & !15).max(16),
            profiler: None,
            argmax_pairs: None,
            slot_base: 0,
            submit_every: knob("PRISM_WGPU_SUBMIT_EVERY", |&n| n > 0).unwrap_or(SUBMIT_EVERY),
            host: profile::HostTimes::new(profiling || profile == "host"),
        };
        if profiling {
            b.profiler = profile::Profiler::new(&b.gpu, 2048);
        }
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        b.params = b.create(SLOT * SLOTS, usage, "parameters")?;
        b.dummy = b.create(16, wgpu::BufferUsages::STORAGE, "placeholder")?;
        b.step_cap = 1 << 16;
        b.step_buf = b.create(b.step_cap, storage_usage(), "step data")?;
        Ok(b)
    }

    /// A new zeroed GPU buffer of `bytes` (rounded up to 16); OutOfMemory or Device errors as the
    /// driver reports them.
    fn create(&mut self, bytes: u64, usage: wgpu::BufferUsages, what: &str) -> Result<u32> {
        self.create_with(bytes, usage, what, None)
    }

    /// As [`Self::create`], with `data` at the start of the buffer before the GPU sees it.
    fn create_with(
        &mut self,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
        data: Option<&[u8]>,
    ) -> Result<u32> {
        let size = bytes.max(16).div_ceil(16) * 16;
        if size > self.gpu.limits.max_buffer_size {
            return Err(BackendError::OutOfMemory {
                backend: "wgpu".into(),
                bytes: size,
                what: format!(
                    "{what} (larger than the device's largest buffer, {} bytes)",
                    self.gpu.limits.max_buffer_size
                ),
            });
        }
        let scope = self.gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage,
            mapped_at_creation: data.is_some(),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(BackendError::OutOfMemory {
                backend: "wgpu".into(),
                bytes: size,
                what: format!("{what}: {e}"),
            });
        }
        self.check_errors()?;
        if let Some(d) = data {
            {
                let mut view = buf
                    .slice(..)
                    .get_mapped_range_mut()
                    .map_err(|e| device_error(format!("mapping {what} for upload: {e}")))?;
                view.slice(..d.len()).copy_from_slice(d);
            }
            buf.unmap();
        }
        let id = u32_of("alloc", self.buffers.len())?;
        self.buffers.push(buf);
        Ok(id)
    }

    /// Turns errors the device reported since the last call into a `BackendError`.
    fn check_errors(&self) -> Result<()> {
        if let Some(why) = self.gpu.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(device_error(format!("device lost ({why})")));
        }
        let first = self.gpu.errors.lock().ok().and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)));
        match first {
            None => Ok(()),
            Some(wgpu::Error::OutOfMemory { .. }) => Err(BackendError::OutOfMemory {
                backend: "wgpu".into(),
                bytes: 0,
                what: "device memory".into(),
            }),
            Some(e) => Err(device_error(e.to_string())),
        }
    }

    fn weight(&self, op: &'static str, id: WeightId) -> Result<&GpuWeight> {
        self.weights.get(id.0 as usize).ok_or_else(|| invalid(op, format!("unknown weight {}", id.0)))
    }

    fn alloc_elems(&mut self, len: usize, elem: Elem, data: Option<&[f32]>) -> Result<BufId> {
        let bytes = mul("alloc", len, 4)? as u64;
        if bytes > self.max_binding {
            return Err(BackendError::OutOfMemory {
                backend: "wgpu".into(),
                bytes,
                what: format!(
                    "a buffer of {len} elements (the device binds at most {} bytes)",
                    self.max_binding
                ),
            });
        }
        let gpu = self.create_with(bytes, storage_usage(), "activations", data.map(bytemuck::cast_slice))?;
        let id = u32_of("alloc", self.acts.len())?;
        self.acts.push(Act { gpu, len, elem });
        Ok(BufId(id))
    }

    /// Writes the step data: a header of counts and offsets, then the arrays (see `shaders/lib/step.wgsl`).
    fn write_step(&mut self, step: &StepBatch) -> Result<()> {
        let mut data: Vec<u32> = vec![0; 16];
        let put = |data: &mut Vec<u32>, at: usize, v: &[u32]| {
            data[at] = data.len() as u32;
            data.extend_from_slice(v);
        };
        data[0] = step.n_tokens() as u32;
        data[1] = step.block_table_start.len() as u32;
        data[2] = step.n_outputs() as u32;
        put(&mut data, 3, &step.tokens);
        put(&mut data, 4, &step.positions);
        put(&mut data, 5, &step.token_seq);
        put(&mut data, 6, &step.block_table_start);
        put(&mut data, 7, &step.block_table_len);
        put(&mut data, 8, &step.block_tables);
        put(&mut data, 9, &step.output_rows);
        let bytes = data.len() as u64 * 4;
        if bytes > self.step_cap {
            let cap = bytes.next_power_of_two();
            self.step_buf = self.create(cap, storage_usage(), "step data")?;
            self.step_cap = cap;
            // Bind groups naming the old buffer are never asked for again.
            self.bind_groups.clear();
        }
        self.gpu.queue.write_buffer(&self.buffers[self.step_buf as usize], 0, bytemuck::cast_slice(&data));
        Ok(())
    }

    /// The cache `kv` checked for `layer`, `shape` and the step's first `n` tokens.
    fn kv_for(
        &self,
        op: &'static str,
        kv: KvId,
        layer: usize,
        shape: &AttnShape,
        n: usize,
    ) -> Result<(KvSpec, u32, u32)> {
        let cache =
            self.kvs.get(kv.0 as usize).ok_or_else(|| invalid(op, format!("unknown kv cache {}", kv.0)))?;
        check::attention_args(op, &cache.spec, layer, shape, n, &self.step)?;
        if self.step_kv != Some(cache.spec) {
            self.step.validate(Some(&cache.spec))?;
        }
        if shape.head_dim > 256 {
            return Err(invalid(
                op,
                format!("head_dim {} > 256 is not supported by the wgpu kernels", shape.head_dim),
            ));
        }
        let (k, v) = cache.layers[layer];
        Ok((cache.spec, k, v))
    }
}

/// A tensor of a dtype without kernels, as f16 (every K-quant value is an f16 times a small integer
/// scale product, so f16 keeps it to within its rounding).
fn widen_to_f16(t: &HostTensor) -> Result<HostTensor> {
    let bytes: Vec<u8> = t.to_f32_vec().iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    HostTensor::new(&t.name, DType::F16, t.shape.clone(), super::HostBytes::Owned(bytes.into()))
        .ok_or_else(|| invalid("upload_weight", format!("tensor {} cannot be widened to f16", t.name)))
}

impl ActBuffers for WgpuBackend {
    type Handle = u32;
    fn lookup(&self, id: BufId) -> Option<(usize, bool, u32)> {
        self.acts.get(id.0 as usize).map(|a| (a.len, a.elem == Elem::U32, a.gpu))
    }
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC
}

impl Backend for WgpuBackend {
    fn info(&self) -> BackendInfo {
        let reduce = if self.gpu.subgroups { "subgroup" } else { "workgroup" };
        BackendInfo {
            backend: "wgpu".into(),
            device: format!("{} [{reduce} reductions]", self.gpu.description),
        }
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        self.alloc_elems(len, Elem::F32, None)
    }

    fn alloc_u32(&mut self, len: usize) -> Result<BufId> {
        self.alloc_elems(len, Elem::U32, None)
    }

    fn upload(&mut self, data: &[f32]) -> Result<BufId> {
        self.alloc_elems(data.len(), Elem::F32, Some(data))
    }

    fn upload_weight(&mut self, parts: &[HostTensor], bias: Option<&[f32]>) -> Result<WeightId> {
        let shape = check::weight_parts(parts, bias)?;
        if !kernels::supports(shape.dtype) {
            // K-quants (llama.cpp's q4_0/q4_1 files keep the output matrix in Q6_K) have no kernels
            // yet: they are widened to f16, exact for their values, at the cost of bandwidth.
            let widened: Vec<HostTensor> = parts.iter().map(widen_to_f16).collect::<Result<_>>()?;
            tracing::info!("wgpu: {} stored as f16 ({} has no kernel)", shape.name, shape.dtype);
            return self.upload_weight(&widened, bias);
        }
        let (dtype, cols) = (shape.dtype, shape.cols);
        let lay = RowLayout::new(dtype, cols);
        let per_chunk = lay.rows_per_chunk(self.chunk_bytes);
        let host_row = dtype.bytes_for(cols).unwrap_or(0);
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < shape.rows {
            let rows = per_chunk.min(shape.rows - row0);
            // The parts' rows row0 .. row0 + rows, in order.
            let mut pieces: Vec<(&[u8], usize, usize)> = Vec::new(); // (bytes, rows, chunk row)
            let mut start = 0;
            for (p, &pr) in parts.iter().zip(&shape.part_rows) {
                let (lo, hi) = (row0.max(start), (row0 + rows).min(start + pr));
                if lo < hi {
                    pieces.push((
                        &p.bytes[(lo - start) * host_row..(hi - start) * host_row],
                        hi - lo,
                        lo - row0,
                    ));
                }
                start += pr;
            }
            let what = format!("weight {}", shape.name);
            // Both arrays come from one pass over the rows (float formats have no scale array).
            let (mut qb, mut sb) = (vec![0u8; rows * lay.q_bytes], vec![0u8; rows * lay.s_bytes]);
            for &(src, n, at) in &pieces {
                weights::pack_rows(dtype, cols, src, n, at, &mut qb, &mut sb);
            }
            let q = self.create_with(qb.len() as u64, storage_usage(), &what, Some(&qb))?;
            let s = match sb.is_empty() {
                true => self.dummy,
                false => self.create_with(sb.len() as u64, storage_usage(), &what, Some(&sb))?,
            };
            chunks.push(Chunk { row0, rows, q, s });
            row0 += rows;
        }
        let bias = match bias {
            Some(b) => Some(self.create_with(
                b.len() as u64 * 4,
                storage_usage(),
                "bias",
                Some(bytemuck::cast_slice(b)),
            )?),
            None => None,
        };
        let id = u32_of("upload_weight", self.weights.len())?;
        self.weights.push(GpuWeight {
            name: shape.name,
            dtype,
            rows: shape.rows,
            cols,
            units: lay.units,
            chunks,
            bias,
        });
        Ok(WeightId(id))
    }

    fn alloc_kv(&mut self, spec: KvSpec) -> Result<KvId> {
        let op = "alloc_kv";
        if spec.block_size == 0 {
            return Err(invalid(op, "block_size is 0"));
        }
        let len = mul(op, mul(op, spec.blocks, spec.block_size)?, mul(op, spec.kv_heads, spec.head_dim)?)?;
        let bytes = mul(op, len, 4)? as u64;
        if bytes > self.max_binding {
            return Err(BackendError::OutOfMemory {
                backend: "wgpu".into(),
                bytes,
                what: format!(
                    "one layer of the KV cache (the device binds at most {} bytes)",
                    self.max_binding
                ),
            });
        }
        let mut layers = Vec::with_capacity(spec.layers);
        for _ in 0..spec.layers {
            let k = self.create(bytes, storage_usage(), "kv cache keys")?;
            let v = self.create(bytes, storage_usage(), "kv cache values")?;
            layers.push((k, v));
        }
        let id = u32_of(op, self.kvs.len())?;
        self.kvs.push(GpuKv { spec, layers });
        Ok(KvId(id))
    }

    fn set_step(&mut self, step: &StepBatch) -> Result<()> {
        let spec = match self.kvs.as_slice() {
            [one] => Some(one.spec),
            _ => None,
        };
        step.validate(spec.as_ref())?;
        // Ops recorded so far read the previous step's data: they go first.
        self.flush()?;
        self.write_step(step)?;
        self.step.clone_from(step);
        self.step_kv = spec;
        Ok(())
    }

    fn embed(&mut self, table: WeightId, out: BufId, n: usize) -> Result<()> {
        let op = "embed";
        let t = self.weight(op, table)?;
        let (rows, cols, units, dtype) = (t.rows, t.cols, t.units, t.dtype);
        let len = mul(op, n, cols)?;
        if n > self.step.n_tokens() {
            return Err(invalid(op, format!("{n} tokens but the step has {}", self.step.n_tokens())));
        }
        if let Some(&tok) = self.step.tokens[..n].iter().find(|&&tok| tok as usize >= rows) {
            return Err(invalid(op, format!("token {tok} >= {rows} rows of {}", t.name)));
        }
        let o = self.f32s(op, "out", out, len)?;
        let chunks: Vec<(usize, usize, u32, u32)> =
            t.chunks.iter().map(|c| (c.row0, c.rows, c.q, c.s)).collect();
        for (row0, crow, q, s) in chunks {
            let p = [crow, cols, units, row0, n].map(|v| v as u32);
            let groups = (n * units).div_ceil(64) as u64;
            self.dispatch(Kernel::Embed { dtype }, &[q, s, self.step_buf, o], &p, groups, true)?;
        }
        Ok(())
    }

    fn rms_norm(
        &mut self,
        x: BufId,
        weight: BufId,
        out: BufId,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<()> {
        let op = "rms_norm";
        let ([xb, wb, ob], len) = check::rms_norm_args(self, x, weight, out, rows, dim)?;
        if len == 0 {
            return Ok(());
        }
        let p = [u32_of(op, dim)?, eps.to_bits()];
        self.dispatch(Kernel::RmsNorm, &[xb, wb, ob], &p, rows as u64, true)
    }

    fn matmul(&mut self, w: WeightId, x: BufId, out: BufId, rows: usize, mode: MatmulMode) -> Result<()> {
        self.matmul_input(w, x, out, rows, mode, Input::Plain)
    }

    fn fused_norm_matmul(
        &mut self,
        x: BufId,
        norm: BufId,
        eps: f32,
        w: WeightId,
        out: BufId,
        rows: usize,
        dim: usize,
        mode: MatmulMode,
    ) -> Result<bool> {
        if rows > FUSED_INPUT_MAX_TOKENS {
            return Ok(false);
        }
        let cols = self.weight("norm_matmul", w)?.cols;
        if cols != dim {
            return Err(invalid("norm_matmul", format!("dim {dim} but the weight has {cols} columns")));
        }
        let nb = self.f32s("norm_matmul", "norm", norm, dim)?;
        self.matmul_input(w, x, out, rows, mode, Input::Norm(nb, eps))?;
        Ok(true)
    }

    fn fused_silu_mul_matmul(
        &mut self,
        gate_up: BufId,
        w: WeightId,
        out: BufId,
        rows: usize,
        ffn: usize,
        mode: MatmulMode,
    ) -> Result<bool> {
        if rows > FUSED_INPUT_MAX_TOKENS {
            return Ok(false);
        }
        let cols = self.weight("silu_mul_matmul", w)?.cols;
        if cols != ffn {
            return Err(invalid("silu_mul_matmul", format!("ffn {ffn} but the weight has {cols} columns")));
        }
        self.matmul_input(w, gate_up, out, rows, mode, Input::SiluMul)?;
        Ok(true)
    }

    fn rope_store_kv(
        &mut self,
        qkv: BufId,
        inv_freq: BufId,
        q_out: BufId,
        kv: KvId,
        layer: usize,
        shape: AttnShape,
        n: usize,
    ) -> Result<()> {
        let op = "rope_store_kv";
        distinct(op, qkv, q_out)?;
        distinct(op, inv_freq, q_out)?;
        let (spec, k, v) = self.kv_for(op, kv, layer, &shape, n)?;
        let [qb, fb, ob] = check::rope_store_kv_args(self, qkv, inv_freq, q_out, &shape, n)?;
        let elems = (shape.heads + shape.kv_heads) * shape.head_dim / 2 + shape.kv_width();
        let per_token = elems.div_ceil(kernels::ROPE_WG as usize);
        let p = [shape.heads, shape.kv_heads, shape.head_dim, spec.block_size, per_token].map(|v| v as u32);
        let groups = mul(op, n, per_token)? as u64;
        self.dispatch(Kernel::RopeStoreKv, &[qb, fb, self.step_buf, ob, k, v], &p, groups, true)
    }

    fn attention(
        &mut self,
        q: BufId,
        kv: KvId,
        layer: usize,
        out: BufId,
        shape: AttnShape,
        n: usize,
    ) -> Result<()> {
        let op = "attention";
        distinct(op, q, out)?;
        let (spec, k, v) = self.kv_for(op, kv, layer, &shape, n)?;
        let ql = mul(op, n, shape.q_width())?;
        let qb = self.f32s(op, "q", q, ql)?;
        let ob = self.f32s(op, "out", out, ql)?;
        let p = attention::attention_params(op, &shape, spec.block_size)?;
        let groups = mul(op, n, shape.heads)? as u64;
        let k_attn = attention::attention_kernel(shape.head_dim, false);
        self.dispatch(k_attn, &[qb, k, v, self.step_buf, ob], &p, groups, true)
    }

    fn fused_rope_attention(
        &mut self,
        qkv: BufId,
        inv_freq: BufId,
        kv: KvId,
        layer: usize,
        out: BufId,
        shape: AttnShape,
        n: usize,
    ) -> Result<bool> {
        self.record_rope_attention(qkv, inv_freq, kv, layer, out, shape, n)
    }

    fn silu_mul(&mut self, gate_up: BufId, out: BufId, rows: usize, ffn: usize) -> Result<()> {
        let op = "silu_mul";
        let ([gb, ob], len) = check::silu_mul_args(self, gate_up, out, rows, ffn)?;
        let p = [u32_of(op, rows)?, u32_of(op, ffn)?];
        self.dispatch(Kernel::SiluMul, &[gb, ob], &p, len.div_ceil(256) as u64, true)
    }

    fn add(&mut self, dst: BufId, src: BufId, len: usize) -> Result<()> {
        let op = "add";
        let [sb, db] = check::add_args(self, dst, src, len)?;
        self.dispatch(Kernel::Add, &[sb, db], &[u32_of(op, len)?], len.div_ceil(256) as u64, true)
    }

    fn gather_rows(&mut self, src: BufId, dst: BufId, cols: usize) -> Result<()> {
        let op = "gather_rows";
        let ([sb, db], len) = check::gather_rows_args(self, &self.step, src, dst, cols)?;
        let n = self.step.output_rows.len();
        let p = [u32_of(op, cols)?, n as u32];
        self.dispatch(Kernel::GatherRows, &[sb, db, self.step_buf], &p, len.div_ceil(256) as u64, true)
    }

    fn copy(&mut self, src: BufId, src_off: usize, dst: BufId, dst_off: usize, len: usize) -> Result<()> {
        let op = "copy";
        let end = |off: usize| off.checked_add(len).ok_or_else(|| invalid(op, "offset + len overflows"));
        let (se, de) = (end(src_off)?, end(dst_off)?);
        let sb = self.f32s(op, "src", src, se)?;
        let db = self.f32s(op, "dst", dst, de)?;
        let p = [u32_of(op, src_off)?, u32_of(op, dst_off)?, u32_of(op, len)?];
        let groups = len.div_ceil(256) as u64;
        if src == dst {
            if src_off < de && dst_off < se && len > 0 {
                return Err(invalid(op, format!("ranges overlap in buffer {}", src.0)));
            }
            return self.dispatch(Kernel::CopyWithin, &[db], &p, groups, true);
        }
        self.dispatch(Kernel::Copy, &[sb, db], &p, groups, true)
    }

    fn argmax(&mut self, x: BufId, out: BufId, rows: usize, cols: usize) -> Result<()> {
        let op = "argmax";
        let [xb, ob] = check::argmax_args(self, x, out, rows, cols)?;
        if rows == 0 {
            return Ok(());
        }
        // Pass 1 gives each workgroup at least 1024 columns, at most 64 pairs per row.
        let parts = cols.div_ceil(1024).clamp(1, 64);
        let span = cols.div_ceil(parts);
        let pair_bytes = mul(op, mul(op, rows, parts)?, 8)? as u64;
        if self.argmax_pairs.is_none_or(|(_, cap)| cap < pair_bytes) {
            let buf = self.create(pair_bytes, storage_usage(), "argmax pairs")?;
            self.argmax_pairs = Some((buf, pair_bytes));
        }
        let pairs = self.argmax_pairs.map_or(self.dummy, |(b, _)| b);
        let p = [u32_of(op, cols)?, parts as u32, span as u32];
        let groups = mul(op, rows, parts)? as u64;
        self.dispatch(Kernel::ArgmaxPartial, &[xb, pairs], &p, groups, true)?;
        self.dispatch(Kernel::Argmax, &[ob, pairs], &p, rows as u64, true)
    }

    fn submit(&mut self) -> Result<()> {
        self.flush()
    }

    fn profile_report(&mut self) -> Option<String> {
        let gpu = self.profiler.as_mut().map(|p| p.report());
        let host = self.host.report();
        match (gpu, host) {
            (None, None) => None,
            (g, h) => Some(format!("{}{}", h.unwrap_or_default(), g.unwrap_or_default())),
        }
    }

    fn download(&mut self, buf: BufId, out: &mut [f32]) -> Result<()> {
        let b = self.f32s("download", "buf", buf, out.len())?;
        let bytes = self.read_back(b, out.len() as u64 * 4)?;
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }

    fn download_u32(&mut self, buf: BufId, out: &mut [u32]) -> Result<()> {
        let b = self.checked("download_u32", "buf", buf, out.len(), true)?;
        let bytes = self.read_back(b, out.len() as u64 * 4)?;
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }
}

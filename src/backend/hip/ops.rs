//! The op set of the HIP/CUDA backend: argument checks (as the CPU backend makes them), then recorded
//! kernel launches, copies and BLAS GEMMs.

use super::api::{self, DevPtr, GemmType};
use super::{Args, BLOCK, Cmd, DBuf, DKv, DWeight, GpuBackend, MAX_GEMV_TOKENS, Scratch, weights};
use crate::backend::check::{self, ActBuffers, distinct, invalid, mul};
use crate::backend::tuning::knob;
use crate::backend::{
    AttnShape, Backend, BackendError, BackendInfo, BufId, DType, HostTensor, KvId, KvSpec, MatmulMode,
    Result, StepBatch, WeightId,
};

/// Kernel-name suffix of a stored layout.
fn layout_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::Q8_0 => "q8_0",
        DType::Q4_0 => "q4_0",
        _ => "q4_1",
    }
}

/// Query heads per kv head and `group · head_dim` the attention kernel holds (hip/attention.hip).
const MAX_GROUP: usize = 16;
const MAX_QROW: usize = 2048;
/// Threads (= positions per chunk) of the attention kernel.
const ATTN_BLOCK: u32 = 128;
/// (token, kv head) pairs from which decode attention runs as one split each.
const ATTN_SPLIT_MAX_PAIRS: usize = 128;
/// Most splits of one (token, kv head) pair (hip/attention.hip's MAX_SPLITS).
const ATTN_MAX_SPLITS: usize = 32;
/// Blocks decode attention aims at (split across the (token, kv head) pairs, up to 32 splits each);
/// `PRISM_ATTN_BLOCKS` overrides it (tuning runs).
fn decode_blocks() -> usize {
    static BLOCKS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BLOCKS.get_or_init(|| knob("PRISM_ATTN_BLOCKS", |&v| v >= 1).unwrap_or(264))
}
/// Splits per pair of decode attention over `pairs` (token, kv head) pairs.
fn decode_split_count(pairs: usize) -> usize {
    if pairs >= ATTN_SPLIT_MAX_PAIRS { 1 } else { (decode_blocks() / pairs.max(1)).clamp(1, ATTN_MAX_SPLITS) }
}
/// Threads of the flash prefill kernel (hip/attention_prefill.hip), and the average run of tokens of
/// one sequence from which a step goes to it.
const PREFILL_BLOCK: u32 = 128;
const PREFILL_MIN_RUN: usize = 8;
/// Columns per block of argmax (hip/argmax.hip).
const ARGMAX_CHUNK: usize = 1024;
/// Most rows of one argmax (the grid's y extent).
const ARGMAX_MAX_ROWS: usize = 65535;

impl GpuBackend {
    fn buf(&self, op: &'static str, id: BufId) -> Result<&DBuf> {
        self.bufs.get(id.0 as usize).ok_or_else(|| invalid(op, format!("unknown buffer {}", id.0)))
    }

    fn weight(&self, op: &'static str, id: WeightId) -> Result<&DWeight> {
        self.weights.get(id.0 as usize).ok_or_else(|| invalid(op, format!("unknown weight {}", id.0)))
    }

    fn push_buf(&mut self, len: usize, u32: bool) -> Result<BufId> {
        let id = u32::try_from(self.bufs.len()).map_err(|_| invalid("alloc", "too many buffers"))?;
        let bytes = len.checked_mul(4).ok_or_else(|| invalid("alloc", "size overflows"))?;
        let ptr = self.raw_alloc(bytes, "buffer")?;
        self.bufs.push(DBuf { ptr, len, u32 });
        Ok(BufId(id))
    }

    /// Whether the attention kernel holds `shape`'s query heads per kv head.
    fn check_group(&self, op: &'static str, shape: &AttnShape) -> Result<()> {
        let group = shape.heads / shape.kv_heads;
        if group > MAX_GROUP || group * shape.head_dim > MAX_QROW {
            return Err(BackendError::InvalidArgument {
                op,
                detail: format!(
                    "{} query heads per kv head of {} dims: the {} attention kernel holds at most {MAX_GROUP} \
                     heads and {MAX_QROW} values per kv head",
                    group,
                    shape.head_dim,
                    self.kind.name()
                ),
            });
        }
        Ok(())
    }

    /// Records decode attention (flash-decoding: few (token, kv head) pairs get their positions split
    /// across many blocks, whose partials [n · heads, nsplit, head_dim + 2] f32 go to scratch and are
    /// merged by attention_combine). `rope`: `q` is the step's fused q|k|v rows and the kernel is
    /// attention_rope with these RoPE frequencies; else `q` holds the rotated queries.
    #[allow(clippy::too_many_arguments)]
    fn record_decode_attention(
        &mut self,
        op: &'static str,
        q: DevPtr,
        rope: Option<DevPtr>,
        (kc, vc): (DevPtr, DevPtr),
        out: DevPtr,
        shape: &AttnShape,
        block_size: usize,
        n: usize,
    ) -> Result<()> {
        let pairs = n * shape.kv_heads;
        let nsplit = decode_split_count(pairs);
        let part = if nsplit > 1 {
            let floats = mul(op, mul(op, n * shape.heads, nsplit)?, shape.head_dim + 2)?;
            self.scratch(Scratch::Attn, 4 * floats)?
        } else {
            0
        };
        let sd = &self.step_dev;
        let args = rope.map_or_else(|| Args::new().p(q), |f| Args::new().p(q).p(f));
        let args = args
            .p(kc)
            .p(vc)
            .p(out)
            .p(part)
            .p(sd.positions())
            .p(sd.token_seq())
            .p(sd.table_start())
            .p(sd.tables())
            .i(shape.heads)
            .i(shape.kv_heads)
            .i(shape.head_dim)
            .i(block_size)
            .f(shape.scale)
            .i(shape.window.map_or(0, |w| w as usize))
            .i(nsplit);
        let kernel = if rope.is_some() { "attention_rope" } else { "attention" };
        self.launch("attention", kernel, [pairs as u32, nsplit as u32, 1], ATTN_BLOCK, args)?;
        if nsplit > 1 {
            let args = Args::new().p(part).p(out).i(shape.head_dim).i(nsplit);
            let block = (shape.head_dim as u32).next_multiple_of(32);
            self.launch("attention", "attention_combine", [(n * shape.heads) as u32, 1, 1], block, args)?;
        }
        Ok(())
    }

    /// The cache `kv` checked against `layer`, `shape` and the step (as the CPU backend checks them).
    fn kv_for(&self, op: &'static str, kv: KvId, layer: usize, shape: &AttnShape, n: usize) -> Result<&DKv> {
        let cache =
            self.kvs.get(kv.0 as usize).ok_or_else(|| invalid(op, format!("unknown kv cache {}", kv.0)))?;
        let spec = cache.spec;
        check::attention_args(op, &spec, layer, shape, n, &self.step)?;
        if self.step_kv != Some(spec) {
            self.step.validate(Some(&spec))?;
        }
        Ok(cache)
    }

    /// `out[rows, w.rows] (+)= x · Wᵀ` through the BLAS: f16 weights as they are, f32 weights in f32,
    /// others dequantized to a scratch first (f16; bf16 to f32, since bf16 activations lose too much).
    fn gemm(&mut self, wi: usize, x: u64, out: u64, rows: usize, mode: MatmulMode) -> Result<()> {
        let op = "matmul";
        let w = &self.weights[wi];
        let (wr, wc, layout, (data, sc, mn), bias) =
            (w.rows, w.cols, w.layout, (w.data, w.scales, w.mins), w.bias);
        let n_w = mul(op, wr, wc)?;
        let (ty, a) = match layout {
            DType::F16 => (GemmType::F16, data),
            DType::F32 => (GemmType::F32, data),
            DType::BF16 => {
                let s = self.scratch(Scratch::Weight, mul(op, n_w, 4)?)?;
                let args = Args::new().p(data).p(sc).p(mn).p(s).p(n_w as u64);
                self.launch("gemm_prep", "dequant_bf16_f32", [Self::blocks_for(n_w), 1, 1], BLOCK, args)?;
                (GemmType::F32, s)
            }
            q => {
                let s = self.scratch(Scratch::Weight, mul(op, n_w, 2)?)?;
                let args = Args::new().p(data).p(sc).p(mn).p(s).p(n_w as u64);
                let name = format!("dequant_{}_f16", layout_name(q));
                self.launch("gemm_prep", &name, [Self::blocks_for(n_w), 1, 1], BLOCK, args)?;
                (GemmType::F16, s)
            }
        };
        let b = if ty == GemmType::F16 {
            let n_x = mul(op, rows, wc)?;
            let s = self.scratch(Scratch::Act, mul(op, n_x, 2)?)?;
            let args = Args::new().p(x).p(s).p(n_x as u64);
            self.launch("gemm_prep", "f32_to_f16_rows", [Self::blocks_for(n_x), 1, 1], BLOCK, args)?;
            s
        } else {
            x
        };
        let beta = if mode == MatmulMode::Accumulate { 1.0 } else { 0.0 };
        self.pending.push(Cmd::Gemm { ty, m: wr, n: rows, k: wc, a, b, c: out, beta });
        if bias != 0 {
            let n_o = rows * wr;
            let args = Args::new().p(out).p(bias).i(wr).p(n_o as u64);
            self.launch("gemm_prep", "add_bias", [Self::blocks_for(n_o), 1, 1], BLOCK, args)?;
        }
        Ok(())
    }
}

impl GpuBackend {
    /// Tokens per block of the flash prefill kernel (hip/attention_prefill.hip) when it serves this
    /// step: head dims it holds (32, 64, 128) and runs of one sequence long enough (on average at least
    /// PREFILL_MIN_RUN tokens) for its tiles to share keys; otherwise `None` (the split-K kernel).
    fn prefill_tile(&self, shape: &AttnShape, n: usize) -> Option<usize> {
        if !matches!(shape.head_dim, 32 | 64 | 128) {
            return None;
        }
        let rows = PREFILL_BLOCK as usize / (shape.head_dim / 32);
        let group = shape.heads / shape.kv_heads;
        let seqs = &self.step.token_seq[..n];
        let runs = 1 + seqs.windows(2).filter(|w| w[0] != w[1]).count();
        (group <= rows && n >= PREFILL_MIN_RUN * runs).then_some(rows / group)
    }

    /// Records the flash prefill kernel over `n` tokens (arguments checked by `attention`).
    #[allow(clippy::too_many_arguments)]
    fn attention_prefill(
        &mut self,
        q: u64,
        (kc, vc): (u64, u64),
        out: u64,
        shape: &AttnShape,
        block_size: usize,
        n: usize,
        tokens_per_block: usize,
    ) -> Result<()> {
        let sd = &self.step_dev;
        let args = Args::new()
            .p(q)
            .p(kc)
            .p(vc)
            .p(out)
            .p(sd.positions())
            .p(sd.token_seq())
            .p(sd.table_start())
            .p(sd.tables())
            .i(n)
            .i(shape.heads)
            .i(shape.kv_heads)
            .i(shape.head_dim)
            .i(block_size)
            .f(shape.scale)
            .i(shape.window.map_or(0, |w| w as usize));
        let grid = [n.div_ceil(tokens_per_block) as u32, shape.kv_heads as u32, 1];
        self.launch("attention_prefill", "attention_prefill", grid, PREFILL_BLOCK, args)
    }
}

/// The input stage a one-token gemv builds in shared memory (hip/gemv_t1.hip `_x`, `_norm`, `_silu`;
/// hip/gemv.hip `_norm_t1`, `_silu_t1`).
#[derive(Clone, Copy)]
enum Fused {
    /// x as it is.
    Plain,
    /// rms_norm of x with the norm weight (device pointer) and eps.
    Norm(u64, f32),
    /// silu(gate) · up of x = gate|up.
    SiluMul,
}

/// Longest input row the fused gemv kernels hold in shared memory (ROW_MAXC in hip/input_row.h).
const MAX_FUSED_COLS: usize = 8192;
/// Most blocks of a fused gemv where the runtime cannot say how many fit at once: about one wave on an
/// H100 (7 blocks of 32 KiB shared memory on each of 132 SMs), so that each block builds the input row
/// once and then takes many weight rows.
const MAX_FUSED_BLOCKS: usize = 896;

/// Whether hip/gemv_t1.hip has a one-token kernel for rows of `cols` of `layout` (16-byte units of whole
/// weights, the input row in shared memory).
fn has_t1(layout: DType, cols: usize) -> bool {
    cols <= MAX_FUSED_COLS
        && match layout {
            DType::F16 | DType::BF16 => cols.is_multiple_of(8),
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => true,
            _ => false,
        }
}

impl GpuBackend {
    /// Whether norm_matmul / silu_mul_matmul of `rows` rows of `cols` take the fused gemv.
    fn fuses(&self, w: WeightId, rows: usize, cols: usize) -> bool {
        rows == 1
            && (1..=MAX_FUSED_COLS).contains(&cols)
            && self.weights.get(w.0 as usize).is_some_and(|wt| wt.cols == cols && wt.rows > 0)
    }

    /// Blocks of a one-token gemv kernel `f` over `rows` weight rows (a warp each): at most as many as fit
    /// on the device at once, so that each block builds its input row once and takes rows by grid stride.
    fn t1_grid(&mut self, f: usize, rows: usize) -> u32 {
        let wave = match self.resident.get(&f) {
            Some(&n) => n as usize,
            None => {
                let n = match self.rt.occupancy(f as api::Handle, BLOCK) {
                    Ok(per_mp) if self.multiprocessors > 0 => (per_mp * self.multiprocessors) as usize,
                    _ => MAX_FUSED_BLOCKS,
                };
                self.resident.insert(f, n as u32);
                n
            }
        };
        rows.div_ceil((BLOCK / self.warp) as usize).clamp(1, wave) as u32
    }

    /// `out[1, w.rows] (+)= pre(x) · Wᵀ + bias` in one kernel; `x` is `[cols]` (plain, norm) or `[2·cols]`
    /// (SwiGLU). hip/gemv_t1.hip where it has the layout and width, else hip/gemv.hip.
    fn gemv_one(
        &mut self,
        op: &'static str,
        w: WeightId,
        x: BufId,
        out: BufId,
        mode: MatmulMode,
        pre: Fused,
    ) -> Result<()> {
        distinct(op, x, out)?;
        let wt = self.weight(op, w)?;
        let (wr, wc, layout, ptrs, bias) =
            (wt.rows, wt.cols, wt.layout, (wt.data, wt.scales, wt.mins), wt.bias);
        let (xl, stage, (norm, eps)) = match pre {
            Fused::Plain => (wc, "x", (0, 0.0)),
            Fused::Norm(nb, eps) => (wc, "norm", (nb, eps)),
            Fused::SiluMul => (mul(op, 2, wc)?, "silu", (0, 0.0)),
        };
        let xp = self.f32s(op, "x", x, xl)?;
        let o = self.f32s(op, "out", out, wr)?;
        let acc = usize::from(mode == MatmulMode::Accumulate);
        let args =
            Args::new().p(ptrs.0).p(ptrs.1).p(ptrs.2).p(bias).p(xp).p(o).i(wr).i(wc).i(acc).p(norm).f(eps);
        let (file, name) = if has_t1(layout, wc) {
            ("gemv_t1", format!("gemv_t1_{}_{stage}", layout_name(layout)))
        } else {
            ("gemv", format!("gemv_{}_{stage}_t1", layout_name(layout)))
        };
        let f = self.func(file, &name)?;
        let grid = if file == "gemv_t1" {
            self.t1_grid(f, wr)
        } else {
            wr.div_ceil((BLOCK / self.warp) as usize).min(MAX_FUSED_BLOCKS) as u32
        };
        self.pending.push(Cmd::Launch { f, grid: [grid, 1, 1], block: BLOCK, args });
        Ok(())
    }
}

impl ActBuffers for GpuBackend {
    type Handle = u64;
    fn lookup(&self, id: BufId) -> Option<(usize, bool, u64)> {
        self.bufs.get(id.0 as usize).map(|b| (b.len, b.u32, b.ptr))
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo { backend: self.kind.name().into(), device: self.device.clone() }
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        self.push_buf(len, false)
    }

    fn alloc_u32(&mut self, len: usize) -> Result<BufId> {
        self.push_buf(len, true)
    }

    fn upload(&mut self, data: &[f32]) -> Result<BufId> {
        let id = self.push_buf(data.len(), false)?;
        let ptr = self.bufs[id.0 as usize].ptr;
        if !data.is_empty() {
            self.current()?;
            self.rt.htod(ptr, bytemuck::cast_slice(data), self.stream).map_err(|e| self.dev_err(e))?;
            self.rt.sync(self.stream).map_err(|e| self.dev_err(e))?;
        }
        Ok(id)
    }

    fn upload_weight(&mut self, parts: &[HostTensor], bias: Option<&[f32]>) -> Result<WeightId> {
        let hw = weights::prepare(parts, bias)?;
        let id =
            u32::try_from(self.weights.len()).map_err(|_| invalid("upload_weight", "too many weights"))?;
        let what = format!("weight {}", hw.name);
        let data = self.alloc_from(&hw.data, &what)?;
        let scales = if hw.scales.is_empty() { 0 } else { self.alloc_from(&hw.scales, &what)? };
        let mins = if hw.mins.is_empty() { 0 } else { self.alloc_from(&hw.mins, &what)? };
        let bias = match &hw.bias {
            Some(b) => self.alloc_from(bytemuck::cast_slice(b), &what)?,
            None => 0,
        };
        self.weights.push(DWeight {
            name: hw.name,
            layout: hw.layout,
            rows: hw.rows,
            cols: hw.cols,
            data,
            scales,
            mins,
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
        let bytes = mul(op, len, 4)?;
        let mut layers = Vec::with_capacity(spec.layers);
        for _ in 0..spec.layers {
            layers.push((self.raw_alloc(bytes, "kv cache keys")?, self.raw_alloc(bytes, "kv cache values")?));
        }
        let id = u32::try_from(self.kvs.len()).map_err(|_| invalid(op, "too many caches"))?;
        self.kvs.push(DKv { spec, layers });
        Ok(KvId(id))
    }

    fn set_step(&mut self, step: &StepBatch) -> Result<()> {
        let spec = match self.kvs.as_slice() {
            [one] => Some(one.spec),
            _ => None,
        };
        step.validate(spec.as_ref())?;
        self.upload_step(step)?;
        self.step.clone_from(step);
        self.step_kv = spec;
        Ok(())
    }

    fn embed(&mut self, table: WeightId, out: BufId, n: usize) -> Result<()> {
        let op = "embed";
        let t = self.weight(op, table)?;
        let (rows, cols, layout, ptrs) = (t.rows, t.cols, t.layout, (t.data, t.scales, t.mins));
        let len = mul(op, n, cols)?;
        if n > self.step.n_tokens() {
            return Err(invalid(op, format!("{n} tokens but the step has {}", self.step.n_tokens())));
        }
        if let Some(&tok) = self.step.tokens[..n].iter().find(|&&tok| tok as usize >= rows) {
            return Err(invalid(op, format!("token {tok} >= {rows} rows of {}", t.name)));
        }
        let o = self.f32s(op, "out", out, len)?;
        if n == 0 || cols == 0 {
            return Ok(());
        }
        let args = Args::new().p(ptrs.0).p(ptrs.1).p(ptrs.2).p(self.step_dev.tokens()).p(o).i(cols);
        self.launch("embed", &format!("embed_{}", layout_name(layout)), [n as u32, 1, 1], BLOCK, args)
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
        let ([xp, wp, o], len) = check::rms_norm_args(self, x, weight, out, rows, dim)?;
        if len == 0 {
            return Ok(());
        }
        let args = Args::new().p(xp).p(wp).p(o).i(dim).f(eps);
        let block = if dim >= 1024 { 1024 } else { BLOCK };
        self.launch("rms_norm", "rms_norm", [rows as u32, 1, 1], block, args)
    }

    fn matmul(&mut self, w: WeightId, x: BufId, out: BufId, rows: usize, mode: MatmulMode) -> Result<()> {
        let op = "matmul";
        distinct(op, x, out)?;
        let wt = self.weight(op, w)?;
        let (wr, wc, layout, ptrs, bias) =
            (wt.rows, wt.cols, wt.layout, (wt.data, wt.scales, wt.mins), wt.bias);
        let (xl, ol) = (mul(op, rows, wc)?, mul(op, rows, wr)?);
        let xp = self.f32s(op, "x", x, xl)?;
        let o = self.f32s(op, "out", out, ol)?;
        if rows == 0 || wr == 0 {
            return Ok(());
        }
        if wc == 0 {
            if mode == MatmulMode::Overwrite {
                self.pending.push(Cmd::Zero { dst: o, bytes: ol * 4 });
            }
            if bias != 0 {
                let args = Args::new().p(o).p(bias).i(wr).p(ol as u64);
                self.launch("gemm_prep", "add_bias", [Self::blocks_for(ol), 1, 1], BLOCK, args)?;
            }
            return Ok(());
        }
        if rows > MAX_GEMV_TOKENS {
            return self.gemm(w.0 as usize, xp, o, rows, mode);
        }
        if rows == 1 && has_t1(layout, wc) {
            return self.gemv_one(op, w, x, out, mode, Fused::Plain);
        }
        let per_block = (BLOCK / self.warp) as usize;
        let acc = usize::from(mode == MatmulMode::Accumulate);
        let name = format!("gemv_{}{}", layout_name(layout), if rows == 1 { "_t1" } else { "" });
        let grid = wr.div_ceil(per_block).min(1 << 20) as u32;
        let args = Args::new().p(ptrs.0).p(ptrs.1).p(ptrs.2).p(bias).p(xp).p(o).i(wr).i(wc).i(rows).i(acc);
        self.launch("gemv", &name, [grid, 1, 1], BLOCK, args)
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
        if !self.fuses(w, rows, dim) {
            return Ok(false);
        }
        let nb = self.f32s("norm_matmul", "norm", norm, dim)?;
        self.gemv_one("norm_matmul", w, x, out, mode, Fused::Norm(nb, eps))?;
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
        if !self.fuses(w, rows, ffn) {
            return Ok(false);
        }
        self.gemv_one("silu_mul_matmul", w, gate_up, out, mode, Fused::SiluMul)?;
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
        let cache = self.kv_for(op, kv, layer, &shape, n)?;
        let (spec, (kc, vc)) = (cache.spec, cache.layers[layer]);
        let [xp, fp, qp] = check::rope_store_kv_args(self, qkv, inv_freq, q_out, &shape, n)?;
        if n == 0 {
            return Ok(());
        }
        let sd = &self.step_dev;
        let args = Args::new()
            .p(xp)
            .p(fp)
            .p(qp)
            .p(kc)
            .p(vc)
            .p(sd.positions())
            .p(sd.token_seq())
            .p(sd.table_start())
            .p(sd.tables())
            .i(shape.heads)
            .i(shape.kv_heads)
            .i(shape.head_dim)
            .i(spec.block_size);
        // (query + key heads) · head_dim / 2 rotated pairs and kv_width values per token.
        let items = (shape.heads + shape.kv_heads) * (shape.head_dim / 2) + shape.kv_width();
        let per_token = items.div_ceil(BLOCK as usize).min(65535) as u32;
        self.launch("rope_store_kv", "rope_store_kv", [n as u32, per_token, 1], BLOCK, args)
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
        let cache = self.kv_for(op, kv, layer, &shape, n)?;
        let (spec, (kc, vc)) = (cache.spec, cache.layers[layer]);
        let ql = mul(op, n, shape.q_width())?;
        let qp = self.f32s(op, "q", q, ql)?;
        let o = self.f32s(op, "out", out, ql)?;
        self.check_group(op, &shape)?;
        if n == 0 {
            return Ok(());
        }
        if let Some(tokens_per_block) = self.prefill_tile(&shape, n) {
            return self.attention_prefill(qp, (kc, vc), o, &shape, spec.block_size, n, tokens_per_block);
        }
        self.record_decode_attention(op, qp, None, (kc, vc), o, &shape, spec.block_size, n)
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
        // One kernel only where no token of the step needs another one's key: one token per sequence.
        if n == 0 || !self.step.one_token_per_seq() || self.prefill_tile(&shape, n).is_some() {
            return Ok(false);
        }
        // By default folded where the attention grid does not fill the GPU (135M: 96 blocks on 132
        // multiprocessors, +1.5-7 % tg128); with a fuller grid (1B: 256 blocks) its blocks waiting on the
        // qkv gemv measured 3-4 % slower on quantized weights (benches/RESULTS.md). `PRISM_FUSED_ATTN=0|1`
        // forces it (A/B runs).
        static FORCED: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| knob("PRISM_FUSED_ATTN", |v: &u32| *v <= 1).map(|v| v == 1));
        let pairs = n * shape.kv_heads;
        let blocks = pairs * decode_split_count(pairs);
        if !forced.unwrap_or(self.multiprocessors > 0 && blocks < self.multiprocessors as usize) {
            return Ok(false);
        }
        let op = "rope_attention";
        let cache = self.kv_for(op, kv, layer, &shape, n)?;
        let (spec, kv_ptrs) = (cache.spec, cache.layers[layer]);
        let [xp, fp, o] = check::rope_attention_args(self, qkv, inv_freq, out, &shape, n)?;
        self.check_group(op, &shape)?;
        self.record_decode_attention(op, xp, Some(fp), kv_ptrs, o, &shape, spec.block_size, n)?;
        Ok(true)
    }

    fn silu_mul(&mut self, gate_up: BufId, out: BufId, rows: usize, ffn: usize) -> Result<()> {
        let ([gp, o], len) = check::silu_mul_args(self, gate_up, out, rows, ffn)?;
        if len == 0 {
            return Ok(());
        }
        let args = Args::new().p(gp).p(o).i(rows).i(ffn);
        self.launch("silu_mul", "silu_mul", [Self::blocks_for(len), 1, 1], BLOCK, args)
    }

    fn add(&mut self, dst: BufId, src: BufId, len: usize) -> Result<()> {
        let [sp, dp] = check::add_args(self, dst, src, len)?;
        if len == 0 {
            return Ok(());
        }
        let args = Args::new().p(dp).p(sp).p(len as u64);
        self.launch("add", "add", [Self::blocks_for(len), 1, 1], BLOCK, args)
    }

    fn gather_rows(&mut self, src: BufId, dst: BufId, cols: usize) -> Result<()> {
        let ([sp, dp], _) = check::gather_rows_args(self, &self.step, src, dst, cols)?;
        let n_out = self.step.output_rows.len();
        if n_out == 0 || cols == 0 {
            return Ok(());
        }
        let args = Args::new().p(sp).p(dp).p(self.step_dev.output_rows()).i(cols);
        self.launch("gather_rows", "gather_rows", [n_out as u32, 1, 1], BLOCK, args)
    }

    fn copy(&mut self, src: BufId, src_off: usize, dst: BufId, dst_off: usize, len: usize) -> Result<()> {
        let op = "copy";
        let end = |off: usize| off.checked_add(len).ok_or_else(|| invalid(op, "offset + len overflows"));
        let (se, de) = (end(src_off)?, end(dst_off)?);
        let sp = self.f32s(op, "src", src, se)?;
        let dp = self.f32s(op, "dst", dst, de)?;
        if src == dst && src_off < de && dst_off < se && len > 0 {
            return Err(invalid(op, format!("ranges overlap in buffer {}", src.0)));
        }
        if len > 0 {
            self.pending.push(Cmd::Copy {
                dst: dp + 4 * dst_off as u64,
                src: sp + 4 * src_off as u64,
                bytes: 4 * len,
            });
        }
        Ok(())
    }

    fn argmax(&mut self, x: BufId, out: BufId, rows: usize, cols: usize) -> Result<()> {
        let [xp, o] = check::argmax_args(self, x, out, rows, cols)?;
        if rows == 0 {
            return Ok(());
        }
        if cols == 0 {
            self.pending.push(Cmd::Zero { dst: o, bytes: rows * 4 });
            return Ok(());
        }
        if rows > ARGMAX_MAX_ROWS {
            return Err(invalid("argmax", format!("{rows} rows: at most {ARGMAX_MAX_ROWS} per launch")));
        }
        // Blocks per row of ARGMAX_CHUNK columns each; scratch: counters [ARGMAX_MAX_ROWS] u32 (at a
        // fixed place: they stay zeroed between launches), then the partial values [rows, blocks] f32
        // and indices [rows, blocks] u32.
        let blocks = cols.div_ceil(ARGMAX_CHUNK).min(1024);
        let chunk = cols.div_ceil(blocks);
        let parts = mul("argmax", rows, blocks)?;
        let s = self.scratch(Scratch::Argmax, 4 * (ARGMAX_MAX_ROWS + 2 * parts))?;
        let (pv, pi) = (s + 4 * ARGMAX_MAX_ROWS as u64, s + 4 * (ARGMAX_MAX_ROWS + parts) as u64);
        let args = Args::new().p(xp).p(o).p(pv).p(pi).p(s).i(cols).i(chunk);
        self.launch("argmax", "argmax", [blocks as u32, rows as u32, 1], BLOCK, args)
    }

    fn submit(&mut self) -> Result<()> {
        self.flush()
    }

    fn download(&mut self, buf: BufId, out: &mut [f32]) -> Result<()> {
        let p = self.f32s("download", "buf", buf, out.len())?;
        if out.is_empty() {
            return self.flush();
        }
        self.read_back(p, bytemuck::cast_slice_mut(out))
    }

    fn download_u32(&mut self, buf: BufId, out: &mut [u32]) -> Result<()> {
        let b = self.buf("download_u32", buf)?;
        if !b.u32 {
            return Err(invalid("download_u32", format!("buffer {} is f32, not u32", buf.0)));
        }
        if b.len < out.len() {
            return Err(invalid(
                "download_u32",
                format!("buffer {} has {} elements, needs {}", buf.0, b.len, out.len()),
            ));
        }
        let p = b.ptr;
        if out.is_empty() {
            return self.flush();
        }
        self.read_back(p, bytemuck::cast_slice_mut(out))
    }
}

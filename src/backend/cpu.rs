//! CPU backend: the reference implementation and fallback — multi-threaded (own rayon pool), SIMD
//! kernels picked at run time (AVX-512F, AVX2+FMA, NEON, scalar), weights read in place.
//!
//! Every op runs when it is recorded; `submit` has nothing to do. Buffers live in a `Vec` indexed by
//! [`BufId`]; an op takes its output buffer out of the `Vec` (`std::mem::take`) while it reads the
//! inputs, so no two views of one buffer exist. All arguments are checked before any work starts.

mod attn;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod kernels;
mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
mod ops;
mod qkernels;
mod scalar;
mod simd;
mod weights;

use rayon::{ThreadPool, ThreadPoolBuilder};

use self::simd::{Kernels, Level};
use self::weights::CpuWeight;
use super::check::{self, distinct, invalid, mul};
use super::{
    AttnShape, Backend, BackendError, BackendInfo, BufId, HostTensor, KvId, KvSpec, MatmulMode, Result,
    StepBatch, WeightId,
};

/// An activation buffer.
enum Buf {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

/// A paged KV cache: per layer, keys and values `[blocks, block_size, kv_heads, head_dim]`.
struct KvCache {
    spec: KvSpec,
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The CPU backend.
pub struct CpuBackend {
    pool: ThreadPool,
    threads: usize,
    /// `info().device`: CPU model, threads, SIMD level.
    device: String,
    kern: &'static Kernels,
    bufs: Vec<Buf>,
    weights: Vec<CpuWeight>,
    kvs: Vec<KvCache>,
    step: StepBatch,
    /// The cache shape `step` was validated against.
    step_kv: Option<KvSpec>,
    /// Matmul tiles and activation sums (grow to the largest matmul).
    mm: matmul::Scratch,
    /// Rotated keys of one `rope_store_kv`.
    k_tmp: Vec<f32>,
}

/// The SIMD level the CPU backend uses on this machine: `avx512f`, `avx2+fma`, `neon` or `scalar`.
pub fn simd_level() -> &'static str {
    Level::detect().name()
}

fn oom(bytes: usize, what: impl Into<String>) -> BackendError {
    BackendError::OutOfMemory { backend: "cpu".into(), bytes: bytes as u64, what: what.into() }
}

/// A zeroed vector of `len` elements, or OutOfMemory.
fn zeroed<T: Clone + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| oom(len * size_of::<T>(), what))?;
    v.resize(len, T::default());
    Ok(v)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

impl CpuBackend {
    /// A backend running on `threads` threads (0: one per core) with the best SIMD level detected.
    pub fn new(threads: usize) -> Result<CpuBackend> {
        Self::build(threads, Kernels::best())
    }

    /// As [`CpuBackend::new`] with the kernels of one SIMD level (`avx512f`, `avx2+fma`, `neon`,
    /// `scalar`); Unavailable when this CPU cannot run it. For tests and comparisons.
    pub fn with_simd(threads: usize, level: &str) -> Result<CpuBackend> {
        let lv =
            [Level::Avx512, Level::Avx2, Level::Neon, Level::Scalar].into_iter().find(|l| l.name() == level);
        let kern = lv.and_then(Kernels::for_level).ok_or_else(|| BackendError::Unavailable {
            backend: "cpu".into(),
            reason: format!("SIMD level {level} is not supported on this CPU"),
        })?;
        Self::build(threads, kern)
    }

    fn build(threads: usize, kern: &'static Kernels) -> Result<CpuBackend> {
        // The calling thread (the engine's) joins the pool as worker 0, so an op runs on it directly
        // instead of being handed to another thread and waited for: that handoff cost more than the
        // op itself in decode. A thread can belong to one pool only; later backends on the same
        // thread get an ordinary pool.
        let builder = |own_thread: bool| {
            let b = ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("prism-cpu-{i}"));
            if own_thread { b.use_current_thread() } else { b }.build()
        };
        let pool = builder(true).or_else(|_| builder(false)).map_err(|e| BackendError::Unavailable {
            backend: "cpu".into(),
            reason: format!("cannot start {threads} threads: {e}"),
        })?;
        let threads = pool.current_num_threads();
        Ok(CpuBackend {
            device: format!("{} ({threads} threads, {})", cpu_model(), kern.level.name()),
            threads,
            pool,
            kern,
            bufs: Vec::new(),
            weights: Vec::new(),
            kvs: Vec::new(),
            step: StepBatch::default(),
            step_kv: None,
            mm: matmul::Scratch::default(),
            k_tmp: Vec::new(),
        })
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn push(&mut self, b: Buf) -> Result<BufId> {
        let id = u32::try_from(self.bufs.len()).map_err(|_| invalid("alloc", "too many buffers"))?;
        self.bufs.push(b);
        Ok(BufId(id))
    }

    fn buf(&self, op: &'static str, id: BufId) -> Result<&Buf> {
        self.bufs.get(id.0 as usize).ok_or_else(|| invalid(op, format!("unknown buffer {}", id.0)))
    }

    /// The f32 buffer `id` (argument `name` of `op`), checked to hold at least `len` elements.
    fn f32s(&self, op: &'static str, name: &str, id: BufId, len: usize) -> Result<&[f32]> {
        match self.buf(op, id)? {
            Buf::F32(v) if v.len() >= len => Ok(v),
            Buf::F32(v) => {
                Err(invalid(op, format!("{name} (buffer {}) has {} elements, needs {len}", id.0, v.len())))
            }
            Buf::U32(_) => Err(invalid(op, format!("{name} (buffer {}) is u32, not f32", id.0))),
        }
    }

    /// Runs `f` with the f32 buffer `out` taken out of the table (checked to hold `len`), then puts
    /// it back whatever `f` returns.
    fn with_out<R>(
        &mut self,
        op: &'static str,
        out: BufId,
        len: usize,
        f: impl FnOnce(&mut Self, &mut [f32]) -> Result<R>,
    ) -> Result<R> {
        self.f32s(op, "out", out, len)?;
        let mut v = match &mut self.bufs[out.0 as usize] {
            Buf::F32(v) => std::mem::take(v),
            Buf::U32(_) => return Err(invalid(op, "out is u32")),
        };
        let r = f(self, &mut v);
        self.bufs[out.0 as usize] = Buf::F32(v);
        r
    }

    fn weight(&self, op: &'static str, id: WeightId) -> Result<&CpuWeight> {
        self.weights.get(id.0 as usize).ok_or_else(|| invalid(op, format!("unknown weight {}", id.0)))
    }

    /// The cache `kv` with `layer` checked, after making sure the step was validated against it.
    fn kv_for(
        &self,
        op: &'static str,
        kv: KvId,
        layer: usize,
        shape: &AttnShape,
        n: usize,
    ) -> Result<KvSpec> {
        let cache =
            self.kvs.get(kv.0 as usize).ok_or_else(|| invalid(op, format!("unknown kv cache {}", kv.0)))?;
        let spec = cache.spec;
        check::attention_args(op, &spec, layer, shape, n, &self.step)?;
        if self.step_kv != Some(spec) {
            self.step.validate(Some(&spec))?;
        }
        Ok(spec)
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo { backend: "cpu".into(), device: self.device.clone() }
    }

    fn alloc(&mut self, len: usize) -> Result<BufId> {
        let v = zeroed(len, "f32 buffer")?;
        self.push(Buf::F32(v))
    }

    fn alloc_u32(&mut self, len: usize) -> Result<BufId> {
        let v = zeroed(len, "u32 buffer")?;
        self.push(Buf::U32(v))
    }

    fn upload(&mut self, data: &[f32]) -> Result<BufId> {
        let mut v = Vec::new();
        v.try_reserve_exact(data.len()).map_err(|_| oom(data.len() * 4, "f32 buffer"))?;
        v.extend_from_slice(data);
        self.push(Buf::F32(v))
    }

    fn upload_weight(&mut self, parts: &[HostTensor], bias: Option<&[f32]>) -> Result<WeightId> {
        let w = CpuWeight::new(parts, bias)?;
        let id =
            u32::try_from(self.weights.len()).map_err(|_| invalid("upload_weight", "too many weights"))?;
        self.weights.push(w);
        Ok(WeightId(id))
    }

    fn alloc_kv(&mut self, spec: KvSpec) -> Result<KvId> {
        let op = "alloc_kv";
        let len = mul(op, mul(op, spec.blocks, spec.block_size)?, mul(op, spec.kv_heads, spec.head_dim)?)?;
        if spec.block_size == 0 {
            return Err(invalid(op, "block_size is 0"));
        }
        let mut layers = Vec::new();
        layers.try_reserve_exact(spec.layers).map_err(|_| oom(spec.layers, "kv cache layers"))?;
        for _ in 0..spec.layers {
            layers.push((zeroed(len, "kv cache keys")?, zeroed(len, "kv cache values")?));
        }
        let id = u32::try_from(self.kvs.len()).map_err(|_| invalid(op, "too many caches"))?;
        self.kvs.push(KvCache { spec, layers });
        Ok(KvId(id))
    }

    fn set_step(&mut self, step: &StepBatch) -> Result<()> {
        // The step names no cache: with exactly one (the usual case) it is checked against it here;
        // with several, `rope_store_kv`/`attention` check it against the cache they are given.
        let spec = match self.kvs.as_slice() {
            [one] => Some(one.spec),
            _ => None,
        };
        step.validate(spec.as_ref())?;
        self.step.clone_from(step);
        self.step_kv = spec;
        Ok(())
    }

    fn embed(&mut self, table: WeightId, out: BufId, n: usize) -> Result<()> {
        let op = "embed";
        let t = self.weight(op, table)?;
        let len = mul(op, n, t.cols)?;
        if n > self.step.n_tokens() {
            return Err(invalid(op, format!("{n} tokens but the step has {}", self.step.n_tokens())));
        }
        if let Some(&tok) = self.step.tokens[..n].iter().find(|&&tok| tok as usize >= t.rows) {
            return Err(invalid(op, format!("token {tok} >= {} rows of {}", t.rows, t.name)));
        }
        self.with_out(op, out, len, |s, o| {
            let t = &s.weights[table.0 as usize];
            s.pool.install(|| ops::embed(s.kern, t, &s.step.tokens[..n], o));
            Ok(())
        })
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
        distinct(op, x, out)?;
        distinct(op, weight, out)?;
        let len = mul(op, rows, dim)?;
        self.f32s(op, "x", x, len)?;
        self.f32s(op, "weight", weight, dim)?;
        if len == 0 {
            return self.f32s(op, "out", out, 0).map(|_| ());
        }
        self.with_out(op, out, len, |s, o| {
            let (xs, ws) = (s.f32s(op, "x", x, len)?, s.f32s(op, "weight", weight, dim)?);
            s.pool.install(|| ops::rms_norm(s.kern, xs, ws, o, rows, dim, eps));
            Ok(())
        })
    }

    fn matmul(&mut self, w: WeightId, x: BufId, out: BufId, rows: usize, mode: MatmulMode) -> Result<()> {
        let op = "matmul";
        distinct(op, x, out)?;
        let wt = self.weight(op, w)?;
        let (xl, ol) = (mul(op, rows, wt.cols)?, mul(op, rows, wt.rows)?);
        self.f32s(op, "x", x, xl)?;
        let mut mm = std::mem::take(&mut self.mm);
        let r = self.with_out(op, out, ol, |s, o| {
            let (wt, xs) = (&s.weights[w.0 as usize], s.f32s(op, "x", x, xl)?);
            s.pool.install(|| matmul::matmul(s.kern, s.threads, wt, xs, rows, o, mode, &mut mm))
        });
        self.mm = mm;
        r
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
        let spec = self.kv_for(op, kv, layer, &shape, n)?;
        let (ql, kl) = (mul(op, n, shape.q_width())?, mul(op, n, shape.kv_width())?);
        let qkv_len = mul(op, n, shape.qkv_width())?;
        self.f32s(op, "qkv", qkv, qkv_len)?;
        self.f32s(op, "inv_freq", inv_freq, shape.head_dim / 2)?;
        if self.k_tmp.len() < kl {
            let more = kl - self.k_tmp.len();
            self.k_tmp.try_reserve_exact(more).map_err(|_| oom(kl * 4, "rotated keys"))?;
            self.k_tmp.resize(kl, 0.0);
        }
        let (mut kc, mut vc) = std::mem::take(&mut self.kvs[kv.0 as usize].layers[layer]);
        let mut k_tmp = std::mem::take(&mut self.k_tmp);
        let r = self.with_out(op, q_out, ql, |s, q| {
            let (qkv_s, f) = (s.f32s(op, "qkv", qkv, qkv_len)?, s.f32s(op, "inv_freq", inv_freq, 0)?);
            let layer_kv = attn::LayerKv { k: &mut kc, v: &mut vc };
            s.pool.install(|| {
                attn::rope_store_kv(&s.step, &spec, &shape, n, qkv_s, f, q, layer_kv, &mut k_tmp)
            });
            Ok(())
        });
        self.kvs[kv.0 as usize].layers[layer] = (kc, vc);
        self.k_tmp = k_tmp;
        r
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
        let spec = self.kv_for(op, kv, layer, &shape, n)?;
        let ql = mul(op, n, shape.q_width())?;
        self.f32s(op, "q", q, ql)?;
        self.with_out(op, out, ql, |s, o| {
            let qs = s.f32s(op, "q", q, ql)?;
            let (kc, vc) = &s.kvs[kv.0 as usize].layers[layer];
            s.pool.install(|| attn::attention(s.kern, &s.step, &spec, &shape, n, qs, kc, vc, o));
            Ok(())
        })
    }

    fn silu_mul(&mut self, gate_up: BufId, out: BufId, rows: usize, ffn: usize) -> Result<()> {
        let op = "silu_mul";
        distinct(op, gate_up, out)?;
        let len = mul(op, rows, ffn)?;
        let gl = mul(op, len, 2)?;
        self.f32s(op, "gate_up", gate_up, gl)?;
        if len == 0 {
            return self.f32s(op, "out", out, 0).map(|_| ());
        }
        self.with_out(op, out, len, |s, o| {
            let g = s.f32s(op, "gate_up", gate_up, gl)?;
            s.pool.install(|| ops::silu_mul(g, o, rows, ffn));
            Ok(())
        })
    }

    fn add(&mut self, dst: BufId, src: BufId, len: usize) -> Result<()> {
        let op = "add";
        distinct(op, src, dst)?;
        self.f32s(op, "src", src, len)?;
        self.with_out(op, dst, len, |s, d| {
            let sr = s.f32s(op, "src", src, len)?;
            s.pool.install(|| ops::add(&mut d[..len], &sr[..len]));
            Ok(())
        })
    }

    fn gather_rows(&mut self, src: BufId, dst: BufId, cols: usize) -> Result<()> {
        let op = "gather_rows";
        distinct(op, src, dst)?;
        let rows = &self.step.output_rows;
        let src_rows = rows.iter().map(|&r| r as usize + 1).max().unwrap_or(0);
        let (sl, dl) = (mul(op, src_rows, cols)?, mul(op, rows.len(), cols)?);
        self.f32s(op, "src", src, sl)?;
        self.with_out(op, dst, dl, |s, d| {
            let sr = s.f32s(op, "src", src, sl)?;
            for (i, &r) in s.step.output_rows.iter().enumerate() {
                d[i * cols..][..cols].copy_from_slice(&sr[r as usize * cols..][..cols]);
            }
            Ok(())
        })
    }

    fn copy(&mut self, src: BufId, src_off: usize, dst: BufId, dst_off: usize, len: usize) -> Result<()> {
        let op = "copy";
        let end = |off: usize| off.checked_add(len).ok_or_else(|| invalid(op, "offset + len overflows"));
        let (se, de) = (end(src_off)?, end(dst_off)?);
        self.f32s(op, "src", src, se)?;
        if src == dst {
            if src_off < de && dst_off < se && len > 0 {
                return Err(invalid(op, format!("ranges overlap in buffer {}", src.0)));
            }
            return self.with_out(op, dst, se.max(de), |_, d| {
                d.copy_within(src_off..se, dst_off);
                Ok(())
            });
        }
        self.with_out(op, dst, de, |s, d| {
            d[dst_off..de].copy_from_slice(&s.f32s(op, "src", src, se)?[src_off..se]);
            Ok(())
        })
    }

    fn argmax(&mut self, x: BufId, out: BufId, rows: usize, cols: usize) -> Result<()> {
        let op = "argmax";
        distinct(op, x, out)?;
        let len = mul(op, rows, cols)?;
        self.f32s(op, "x", x, len)?;
        match self.buf(op, out)? {
            Buf::U32(v) if v.len() >= rows => {}
            Buf::U32(v) => {
                return Err(invalid(
                    op,
                    format!("out (buffer {}) has {} elements, needs {rows}", out.0, v.len()),
                ));
            }
            Buf::F32(_) => return Err(invalid(op, format!("out (buffer {}) is f32, not u32", out.0))),
        }
        let mut o = std::mem::replace(&mut self.bufs[out.0 as usize], Buf::U32(Vec::new()));
        if let (Buf::U32(ov), Ok(xs)) = (&mut o, self.f32s(op, "x", x, len)) {
            self.pool.install(|| ops::argmax(xs, ov, rows, cols));
        }
        self.bufs[out.0 as usize] = o;
        Ok(())
    }

    fn submit(&mut self) -> Result<()> {
        Ok(())
    }

    fn download(&mut self, buf: BufId, out: &mut [f32]) -> Result<()> {
        let v = self.f32s("download", "buf", buf, out.len())?;
        out.copy_from_slice(&v[..out.len()]);
        Ok(())
    }

    fn download_u32(&mut self, buf: BufId, out: &mut [u32]) -> Result<()> {
        match self.buf("download_u32", buf)? {
            Buf::U32(v) if v.len() >= out.len() => {
                out.copy_from_slice(&v[..out.len()]);
                Ok(())
            }
            Buf::U32(v) => Err(invalid(
                "download_u32",
                format!("buffer {} has {} elements, needs {}", buf.0, v.len(), out.len()),
            )),
            Buf::F32(_) => Err(invalid("download_u32", format!("buffer {} is f32, not u32", buf.0))),
        }
    }
}

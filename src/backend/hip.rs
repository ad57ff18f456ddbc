//! The HIP backend and its CUDA twin: one implementation over two vendor runtimes. `api` holds the only
//! vendor-specific Rust (symbol tables of the HIP runtime / CUDA driver, hiprtc / NVRTC, rocBLAS /
//! cuBLAS, opened at run time); memory, the stream, the kernel cache, launches, op scheduling and graph
//! replay here are shared, so what the H100 proves for CUDA holds for the HIP path up to that table.
//!
//! Ops are recorded as [`Cmd`]s and sent on `submit`/`download`. A sequence of launches sent twice in a
//! row unchanged (a decode step: every per-step value lives in the step buffer, so kernel arguments
//! repeat) is captured into a graph on its second sending and replayed from then on.

pub mod api;
pub mod kernels;
mod ops;
mod weights;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use self::api::{Blas, DevPtr, GemmType, Handle, Rtc, Runtime, Vendor};
use super::tuning::knob;
use super::{BackendError, BackendKind, DType, KvSpec, Result, StepBatch};

/// Threads per block of the element-wise and gemv kernels.
const BLOCK: u32 = 256;
/// Most tokens a gemv serves (more go to the BLAS GEMM).
const MAX_GEMV_TOKENS: usize = 8;
/// Graphs kept for replay.
const MAX_GRAPHS: usize = 8;

/// Kernel arguments by value (pointers, ints, floats), each in a 64-bit slot; the runtime reads as
/// many bytes of each slot as the parameter has (little-endian).
#[derive(Clone, Copy, PartialEq, Debug)]
struct Args {
    v: [u64; 20],
    n: usize,
}

impl Args {
    fn new() -> Args {
        Args { v: [0; 20], n: 0 }
    }
    fn p(mut self, x: DevPtr) -> Args {
        self.v[self.n] = x;
        self.n += 1;
        self
    }
    fn i(self, x: usize) -> Args {
        self.p(x as u32 as u64)
    }
    fn f(self, x: f32) -> Args {
        self.p(x.to_bits() as u64)
    }
}

/// One recorded device command.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Cmd {
    Launch { f: usize, grid: [u32; 3], block: u32, args: Args },
    Copy { dst: DevPtr, src: DevPtr, bytes: usize },
    Zero { dst: DevPtr, bytes: usize },
    Gemm { ty: GemmType, m: usize, n: usize, k: usize, a: DevPtr, b: DevPtr, c: DevPtr, beta: f32 },
}

/// A device buffer of f32 or u32 elements.
struct DBuf {
    ptr: DevPtr,
    len: usize,
    u32: bool,
}

/// A weight on the device (see `weights`): data, f16 scales and mins of quantized layouts, bias.
struct DWeight {
    name: String,
    layout: DType,
    rows: usize,
    cols: usize,
    data: DevPtr,
    scales: DevPtr,
    mins: DevPtr,
    bias: DevPtr,
}

/// A paged KV cache: per layer, keys and values `[blocks, block_size, kv_heads, head_dim]` f32.
struct DKv {
    spec: KvSpec,
    layers: Vec<(DevPtr, DevPtr)>,
}

/// The step buffer: u32 sections at fixed offsets while the capacities hold, so that kernel arguments
/// (pointers into it) stay the same from step to step.
#[derive(Default)]
struct StepDev {
    ptr: DevPtr,
    cap_tokens: usize,
    cap_seqs: usize,
    cap_table: usize,
}

impl StepDev {
    fn words(&self) -> usize {
        4 * self.cap_tokens + 2 * self.cap_seqs + self.cap_table
    }
    fn tokens(&self) -> DevPtr {
        self.ptr
    }
    fn positions(&self) -> DevPtr {
        self.ptr + 4 * self.cap_tokens as u64
    }
    fn token_seq(&self) -> DevPtr {
        self.ptr + 8 * self.cap_tokens as u64
    }
    fn output_rows(&self) -> DevPtr {
        self.ptr + 12 * self.cap_tokens as u64
    }
    fn table_start(&self) -> DevPtr {
        self.ptr + 16 * self.cap_tokens as u64
    }
    fn tables(&self) -> DevPtr {
        self.ptr + 16 * self.cap_tokens as u64 + 8 * self.cap_seqs as u64
    }
}

/// Scratch areas that grow to the largest use: f16 activations and dequantized weights of GEMMs, the
/// split-K partial results of decode attention, and argmax's per-row counters and block partials (the
/// counters start zeroed and the kernel leaves them zeroed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scratch {
    Act = 0,
    Weight = 1,
    Attn = 2,
    Argmax = 3,
}

/// The HIP (AMD) or CUDA (NVIDIA) backend.
pub struct GpuBackend {
    kind: BackendKind,
    rt: Arc<Runtime>,
    rtc: Rtc,
    blas: Option<Blas>,
    dev: i32,
    ctx: Handle,
    stream: Handle,
    arch: String,
    device: String,
    /// Threads per warp/wavefront the kernels are compiled for (grid sizing only).
    warp: u32,
    /// Multiprocessors of the device (0 where the runtime does not say), and the blocks of BLOCK threads
    /// of each kernel (by function index) that fit on the device at once (grid sizing only).
    multiprocessors: u32,
    resident: HashMap<usize, u32>,
    modules: HashMap<&'static str, Handle>,
    funcs: HashMap<String, Handle>,
    bufs: Vec<DBuf>,
    weights: Vec<DWeight>,
    kvs: Vec<DKv>,
    step: StepBatch,
    step_kv: Option<KvSpec>,
    step_dev: StepDev,
    scratch: [(DevPtr, usize); 4],
    pending: Vec<Cmd>,
    /// The last command list sent without a graph, and the graphs captured (with their use order).
    last_sent: Vec<Cmd>,
    graphs: Vec<(Vec<Cmd>, Handle, u64)>,
    graph_clock: u64,
    graphs_on: bool,
    /// Whether kernels launch overlapping the kernel before them (programmatic dependent launch, NVIDIA
    /// sm_90 and later; every kernel waits for its predecessor's results with `grid_dep_wait`).
    overlap: bool,
    /// Every device allocation, freed on drop.
    allocs: Vec<DevPtr>,
}

// SAFETY: the raw handles belong to this backend alone; every runtime call first makes its context
// current on the calling thread.
unsafe impl Send for GpuBackend {}

fn vendor_of(kind: BackendKind) -> Vendor {
    if kind == BackendKind::Hip { Vendor::Amd } else { Vendor::Nvidia }
}

/// Whether kernels compiled for `arch` wait for the kernel before them (compat.h's `grid_dep_wait` is
/// an instruction from sm_90 on), so that they may be launched overlapping it.
fn overlap_arch(arch: &str) -> bool {
    arch.strip_prefix("sm_")
        .and_then(|v| v.trim_end_matches(|c: char| c.is_alphabetic()).parse::<u32>().ok())
        .is_some_and(|v| v >= 90)
}

fn gib(b: usize) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// The devices of the `kind` runtime (`hip` or `cuda`) with name, architecture and memory, or why the
/// backend cannot run here.
pub fn probe(kind: BackendKind) -> std::result::Result<Vec<String>, String> {
    let vendor = vendor_of(kind);
    let rt = Runtime::open(vendor)?;
    let n = rt.device_count()?;
    if n == 0 {
        return Err(format!("the runtime ({}) loaded but sees no GPU", rt.path.display()));
    }
    let compiler = match Rtc::open(vendor) {
        Ok(r) => format!("compiler {} {}", r.path.display(), r.version),
        Err(e) => format!("cannot compile kernels: {e}"),
    };
    let mut out = Vec::new();
    for i in 0..n {
        let dev = rt.device(i)?;
        let mut ctx = std::ptr::null_mut();
        let free = rt.activate(dev, &mut ctx).and_then(|_| rt.mem_info()).map(|(f, _)| f);
        out.push(format!(
            "{} ({}), {:.1} GiB total, {} free; {compiler}",
            rt.device_name(dev)?,
            rt.device_arch(dev)?,
            gib(rt.device_total_mem(dev)?),
            free.map_or_else(|e| format!("? ({e})"), |f| format!("{:.1} GiB", gib(f))),
        ));
    }
    Ok(out)
}

impl GpuBackend {
    /// Opens device `device` of the `kind` runtime (`Hip` or `Cuda`) with its compiler and BLAS.
    pub fn new(kind: BackendKind, device: usize) -> Result<GpuBackend> {
        let vendor = vendor_of(kind);
        let name = kind.name();
        let unavailable = |reason: String| BackendError::Unavailable { backend: name.into(), reason };
        let rt = Arc::new(Runtime::open(vendor).map_err(unavailable)?);
        let n = rt.device_count().map_err(unavailable)?;
        if device >= n {
            return Err(unavailable(format!("device {device} requested, {n} found")));
        }
        let dev = rt.device(device).map_err(unavailable)?;
        let mut ctx = std::ptr::null_mut();
        rt.activate(dev, &mut ctx).map_err(unavailable)?;
        let rtc = Rtc::open(vendor).map_err(unavailable)?;
        let arch = rt.device_arch(dev).map_err(unavailable)?;
        let stream = rt.stream().map_err(unavailable)?;
        let blas = Blas::open(vendor, stream).map_err(unavailable)?;
        let warp = if vendor == Vendor::Amd && arch.starts_with("gfx9") { 64 } else { 32 };
        let device_desc = format!(
            "{} ({arch}, {:.1} GiB, {} {})",
            rt.device_name(dev).map_err(unavailable)?,
            gib(rt.device_total_mem(dev).unwrap_or(0)),
            if vendor == Vendor::Nvidia { "driver" } else { "runtime" },
            rt.version()
        );
        let graphs_on = rt.has_graphs();
        let multiprocessors = rt.multiprocessors(dev).unwrap_or(0);
        // `PRISM_PDL=0` turns the overlap off (A/B runs).
        let overlap =
            rt.has_overlap() && overlap_arch(&arch) && knob("PRISM_PDL", |v: &u32| *v <= 1).unwrap_or(1) == 1;
        Ok(GpuBackend {
            kind,
            rt,
            rtc,
            blas: Some(blas),
            dev,
            ctx,
            stream,
            arch,
            device: device_desc,
            warp,
            multiprocessors,
            resident: HashMap::new(),
            modules: HashMap::new(),
            funcs: HashMap::new(),
            bufs: Vec::new(),
            weights: Vec::new(),
            kvs: Vec::new(),
            step: StepBatch::default(),
            step_kv: None,
            step_dev: StepDev::default(),
            scratch: [(0, 0); 4],
            pending: Vec::new(),
            last_sent: Vec::new(),
            graphs: Vec::new(),
            graph_clock: 0,
            graphs_on,
            overlap,
            allocs: Vec::new(),
        })
    }

    /// The compiler target of the device (`sm_90`, `gfx90a`, ...).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Turns graph capture and replay on or off (on by default where the runtime has graphs).
    pub fn set_graphs(&mut self, on: bool) {
        self.graphs_on = on && self.rt.has_graphs();
    }

    fn dev_err(&self, detail: String) -> BackendError {
        BackendError::Device { backend: self.kind.name().into(), detail }
    }

    fn current(&mut self) -> Result<()> {
        let mut ctx = self.ctx;
        let r = self.rt.activate(self.dev, &mut ctx);
        self.ctx = ctx;
        r.map_err(|e| self.dev_err(e))
    }

    /// A zeroed device allocation of `bytes`, freed on drop.
    fn raw_alloc(&mut self, bytes: usize, what: &str) -> Result<DevPtr> {
        self.current()?;
        let p = self.rt.alloc(bytes).map_err(|e| BackendError::OutOfMemory {
            backend: self.kind.name().into(),
            bytes: bytes as u64,
            what: format!("{what} ({e})"),
        })?;
        self.allocs.push(p);
        self.rt.zero(p, bytes.max(1), self.stream).map_err(|e| self.dev_err(e))?;
        Ok(p)
    }

    /// Copies `bytes` to a new device allocation.
    fn alloc_from(&mut self, bytes: &[u8], what: &str) -> Result<DevPtr> {
        let p = self.raw_alloc(bytes.len(), what)?;
        if !bytes.is_empty() {
            self.rt.htod(p, bytes, self.stream).map_err(|e| self.dev_err(e))?;
            self.rt.sync(self.stream).map_err(|e| self.dev_err(e))?;
        }
        Ok(p)
    }

    /// Frees `p` once the device is done with everything sent so far.
    fn release(&mut self, p: DevPtr) -> Result<()> {
        if p == 0 {
            return Ok(());
        }
        self.flush()?;
        self.rt.sync(self.stream).map_err(|e| self.dev_err(e))?;
        self.allocs.retain(|&a| a != p);
        self.rt.free(p);
        Ok(())
    }

    /// Scratch area `which` of at least `bytes`. Growing it drops the graphs (they hold the old address).
    fn scratch(&mut self, which: Scratch, bytes: usize) -> Result<DevPtr> {
        let (p, have) = self.scratch[which as usize];
        if have >= bytes {
            return Ok(p);
        }
        self.release(p)?;
        self.drop_graphs();
        let size = bytes.max(have * 2).next_multiple_of(1 << 20);
        let p = self.raw_alloc(size, "scratch")?;
        self.scratch[which as usize] = (p, size);
        Ok(p)
    }

    /// The kernel `name` of file `file`, compiled (or taken from the cache) and loaded on first use.
    fn func(&mut self, file: &'static str, name: &str) -> Result<usize> {
        if let Some(&f) = self.funcs.get(name) {
            return Ok(f as usize);
        }
        self.current()?;
        let module = match self.modules.get(file) {
            Some(&m) => m,
            None => {
                let src =
                    kernels::source(file).ok_or_else(|| self.dev_err(format!("no kernel file {file}")))?;
                let code =
                    kernels::code_object(&self.rtc, src, &self.arch).map_err(|log| self.dev_err(log))?;
                let m = self.rt.load_module(&code).map_err(|e| self.dev_err(e))?;
                self.modules.insert(file, m);
                m
            }
        };
        let f = self.rt.function(module, name).map_err(|e| self.dev_err(e))?;
        self.funcs.insert(name.to_string(), f);
        Ok(f as usize)
    }

    /// Records a launch of `file`'s kernel `name`.
    fn launch(
        &mut self,
        file: &'static str,
        name: &str,
        grid: [u32; 3],
        block: u32,
        args: Args,
    ) -> Result<()> {
        let f = self.func(file, name)?;
        self.pending.push(Cmd::Launch { f, grid, block, args });
        Ok(())
    }

    /// Blocks for a grid-stride loop over `n` elements.
    fn blocks_for(n: usize) -> u32 {
        n.div_ceil(BLOCK as usize).clamp(1, 8192) as u32
    }

    fn exec(&self, c: &Cmd) -> api::ApiResult<()> {
        match *c {
            Cmd::Launch { f, grid, block, mut args } => {
                let mut params: Vec<*mut c_void> =
                    args.v[..args.n].iter_mut().map(|v| (v as *mut u64).cast()).collect();
                self.rt.launch(f as Handle, grid, block, self.stream, &mut params, self.overlap)
            }
            Cmd::Copy { dst, src, bytes } => self.rt.dtod(dst, src, bytes, self.stream),
            Cmd::Zero { dst, bytes } => self.rt.zero(dst, bytes, self.stream),
            Cmd::Gemm { ty, m, n, k, a, b, c, beta } => {
                self.blas.as_ref().ok_or("no BLAS")?.gemm_tn(ty, m, n, k, a, b, c, beta)
            }
        }
    }

    fn drop_graphs(&mut self) {
        for (_, g, _) in self.graphs.drain(..) {
            self.rt.graph_free(g);
        }
        self.last_sent.clear();
    }

    /// Sends the recorded commands: as a graph already captured for the same list, by capturing one
    /// when the list repeats the previous one, or one by one.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.current()?;
        let cmds = std::mem::take(&mut self.pending);
        let graphable =
            self.graphs_on && cmds.len() >= 4 && !cmds.iter().any(|c| matches!(c, Cmd::Gemm { .. }));
        self.graph_clock += 1;
        if graphable {
            if let Some(g) = self.graphs.iter_mut().find(|g| g.0 == cmds) {
                g.2 = self.graph_clock;
                let exec = g.1;
                return self.rt.graph_launch(exec, self.stream).map_err(|e| self.dev_err(e));
            }
            if cmds == self.last_sent {
                match self.capture(&cmds) {
                    Ok(exec) => {
                        if self.graphs.len() >= MAX_GRAPHS {
                            let oldest =
                                (0..self.graphs.len()).min_by_key(|&i| self.graphs[i].2).expect("some");
                            let (_, g, _) = self.graphs.swap_remove(oldest);
                            self.rt.graph_free(g);
                        }
                        tracing::debug!(commands = cmds.len(), "captured a graph");
                        self.graphs.push((cmds, exec, self.graph_clock));
                        return self.rt.graph_launch(exec, self.stream).map_err(|e| self.dev_err(e));
                    }
                    Err(e) => {
                        tracing::warn!("graph capture failed, sending commands one by one from now on: {e}");
                        self.graphs_on = false;
                    }
                }
            }
        }
        for c in &cmds {
            self.exec(c).map_err(|e| self.dev_err(e))?;
        }
        if graphable {
            self.last_sent = cmds;
        }
        Ok(())
    }

    fn capture(&self, cmds: &[Cmd]) -> api::ApiResult<Handle> {
        self.rt.begin_capture(self.stream)?;
        let r = cmds.iter().try_for_each(|c| self.exec(c));
        let g = self.rt.end_capture(self.stream);
        r?;
        g
    }

    /// Uploads the step to the step buffer (growing it first if needed).
    fn upload_step(&mut self, step: &StepBatch) -> Result<()> {
        let need =
            (step.n_tokens().max(1), step.block_table_start.len().max(1), step.block_tables.len().max(1));
        let (ct, cs, cb) = (self.step_dev.cap_tokens, self.step_dev.cap_seqs, self.step_dev.cap_table);
        if need.0 > ct || need.1 > cs || need.2 > cb {
            let old = self.step_dev.ptr;
            self.release(old)?;
            self.drop_graphs();
            let (t, s, b) = (
                need.0.max(ct).next_power_of_two().max(8),
                need.1.max(cs).next_power_of_two().max(4),
                need.2.max(cb).next_power_of_two().max(64),
            );
            let mut nsd = StepDev { ptr: 0, cap_tokens: t, cap_seqs: s, cap_table: b };
            nsd.ptr = self.raw_alloc(nsd.words() * 4, "step buffer")?;
            self.step_dev = nsd;
        }
        let sd = &self.step_dev;
        let mut host = vec![0u32; sd.words()];
        let (ct, cs) = (sd.cap_tokens, sd.cap_seqs);
        host[..step.n_tokens()].copy_from_slice(&step.tokens);
        host[ct..][..step.n_tokens()].copy_from_slice(&step.positions);
        host[2 * ct..][..step.n_tokens()].copy_from_slice(&step.token_seq);
        host[3 * ct..][..step.output_rows.len()].copy_from_slice(&step.output_rows);
        host[4 * ct..][..step.block_table_start.len()].copy_from_slice(&step.block_table_start);
        host[4 * ct + cs..][..step.block_table_len.len()].copy_from_slice(&step.block_table_len);
        host[4 * ct + 2 * cs..][..step.block_tables.len()].copy_from_slice(&step.block_tables);
        self.flush()?;
        let ptr = self.step_dev.ptr;
        self.rt.htod(ptr, bytemuck::cast_slice(&host), self.stream).map_err(|e| self.dev_err(e))
    }

    /// Waits for everything sent and copies `out.len()` bytes of `ptr` back.
    fn read_back(&mut self, ptr: DevPtr, out: &mut [u8]) -> Result<()> {
        self.flush()?;
        self.rt.dtoh(out, ptr, self.stream).map_err(|e| self.dev_err(e))
    }
}

impl Drop for GpuBackend {
    fn drop(&mut self) {
        if self.current().is_err() {
            return;
        }
        let _ = self.rt.sync(self.stream);
        self.drop_graphs();
        for p in std::mem::take(&mut self.allocs) {
            self.rt.free(p);
        }
    }
}

//! The vendor runtimes, opened at run time: one table of runtime functions (HIP runtime or CUDA driver),
//! one of the run-time compiler (hiprtc or NVRTC) and one GEMM (rocBLAS or cuBLAS). Their C signatures
//! agree (HIP mirrors the CUDA driver API), so everything above this file is vendor-neutral; only the
//! symbol names, a few enum values and context handling differ here.

use std::ffi::{CStr, c_char, c_void};
use std::path::{Path, PathBuf};

use libloading::Library;

/// An opaque runtime handle (stream, module, function, context, graph).
pub type Handle = *mut c_void;
/// A device address.
pub type DevPtr = u64;
type Res = i32;

/// Which vendor stack a table talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// AMD: HIP runtime, hiprtc, rocBLAS.
    Amd,
    /// NVIDIA: CUDA driver, NVRTC, cuBLAS.
    Nvidia,
}

impl Vendor {
    /// The vendor whose compiler handles `arch` (`gfx…` AMD, `sm_…` NVIDIA).
    pub fn of_arch(arch: &str) -> Option<Vendor> {
        if arch.starts_with("gfx") {
            Some(Vendor::Amd)
        } else if arch.starts_with("sm_") {
            Some(Vendor::Nvidia)
        } else {
            None
        }
    }
}

// ---- finding libraries -------------------------------------------------------------------------------

/// Directories matching `pattern`, where a path segment may hold one `*`.
fn glob_dirs(pattern: &str) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/")];
    for seg in pattern.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for base in &out {
            match seg.split_once('*') {
                None => next.push(base.join(seg)),
                Some((pre, post)) => {
                    let Ok(rd) = std::fs::read_dir(base) else { continue };
                    let mut found: Vec<PathBuf> = rd
                        .flatten()
                        .filter(|e| {
                            let n = e.file_name();
                            let n = n.to_string_lossy();
                            n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
                        })
                        .map(|e| e.path())
                        .collect();
                    found.sort();
                    next.extend(found);
                }
            }
        }
        out = next;
    }
    out.into_iter().filter(|p| p.is_dir()).collect()
}

/// Where vendor libraries are looked for, in order: `LD_LIBRARY_PATH`, ROCm, CUDA toolkits, the
/// distribution's library directories, and the lib dirs of NVIDIA's pip wheels in common Python prefixes.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = std::env::var("VIRTUAL_ENV").unwrap_or_default();
    let mut patterns: Vec<String> = [
        "/opt/rocm/lib",
        "/opt/rocm*/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/*/lib",
        "/usr/local/cuda*/lib64",
        "/usr/local/cuda*/targets/*/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let prefixes = [
        format!("{venv}/lib/python3*"),
        format!("{home}/.local/lib/python3*"),
        format!("{home}/.pyenv/versions/*/lib/python3*"),
        "/usr/local/lib/python3*".to_string(),
        "/usr/lib/python3*".to_string(),
        "/opt/*/.venv/lib/python3*".to_string(),
    ];
    for p in prefixes.iter().filter(|p| !p.starts_with("/lib")) {
        for pkg in ["cuda_nvrtc", "cublas", "cu13", "cu12"] {
            patterns.push(format!("{p}/site-packages/nvidia/{pkg}/lib"));
            patterns.push(format!("{p}/dist-packages/nvidia/{pkg}/lib"));
        }
    }
    for p in patterns {
        dirs.extend(glob_dirs(&p));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Opens a library for the rest of the process. Vendor runtimes are never closed: some (ROCm's, with
/// LLVM inside) abort when opened a second time after being closed.
fn load(path: impl AsRef<std::ffi::OsStr>) -> Result<&'static Library, libloading::Error> {
    // SAFETY: loading a vendor library runs its initializers; these are the vendors' own runtimes.
    unsafe { Library::new(path) }.map(|l| &*Box::leak(Box::new(l)))
}

/// Opens the first library whose file name is `stem` or `stem.<version>` (newest version first in each
/// directory), trying plain `stem` through the system loader first. Errors say what was looked for.
fn open_lib(stem: &str) -> Result<(&'static Library, PathBuf), String> {
    if let Ok(lib) = load(stem) {
        return Ok((lib, PathBuf::from(stem)));
    }
    for dir in search_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == stem || n.strip_prefix(stem).is_some_and(|v| v.starts_with('.')))
            .collect();
        names.sort_by(|a, b| b.len().cmp(&a.len()).then(b.cmp(a)));
        for n in names {
            let path = dir.join(&n);
            if let Ok(lib) = load(&path) {
                return Ok((lib, path));
            }
        }
    }
    Err(format!(
        "{stem} not found (searched LD_LIBRARY_PATH, /opt/rocm, /usr/local/cuda*, system and pip dirs)"
    ))
}

/// The first of `stems` that opens.
fn open_any(stems: &[&str]) -> Result<(&'static Library, PathBuf), String> {
    let mut errs = Vec::new();
    for s in stems {
        match open_lib(s) {
            Ok(l) => return Ok(l),
            Err(e) => errs.push(e),
        }
    }
    Err(errs.join("; "))
}

/// A C function pointer read from a library.
fn sym<T: Copy>(lib: &Library, name: &str) -> Result<T, String> {
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    // SAFETY: the caller names the symbol with its C signature `T`.
    unsafe { lib.get::<T>(&n).map(|s| *s).map_err(|e| format!("symbol {name}: {e}")) }
}

/// `CUlaunchConfig` of the CUDA driver API.
#[repr(C)]
pub(crate) struct LaunchConfig {
    grid: [u32; 3],
    block: [u32; 3],
    shared_bytes: u32,
    stream: Handle,
    attrs: *mut LaunchAttr,
    n_attrs: u32,
}

/// `CUlaunchAttribute`: an id and a 64-byte value union (8-byte aligned).
#[repr(C, align(8))]
struct LaunchAttr {
    id: u32,
    _pad: u32,
    value: [u8; 64],
}

/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`: the kernel may overlap the previous one.
const LAUNCH_ATTR_PROGRAMMATIC_SERIALIZATION: u32 = 6;

fn opt_sym<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    sym(lib, name).ok()
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the runtimes return NUL-terminated static strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

// ---- the runtime -------------------------------------------------------------------------------------

type FnI32Out = unsafe extern "C" fn(*mut i32) -> Res;

/// The HIP runtime or the CUDA driver.
pub struct Runtime {
    pub vendor: Vendor,
    pub path: PathBuf,
    device_count: FnI32Out,
    device_get: unsafe extern "C" fn(*mut i32, i32) -> Res,
    device_name: unsafe extern "C" fn(*mut c_char, i32, i32) -> Res,
    device_total_mem: unsafe extern "C" fn(*mut usize, i32) -> Res,
    device_attr: unsafe extern "C" fn(*mut i32, i32, i32) -> Res,
    mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> Res,
    mem_alloc: unsafe extern "C" fn(*mut DevPtr, usize) -> Res,
    mem_free: unsafe extern "C" fn(DevPtr) -> Res,
    htod: unsafe extern "C" fn(DevPtr, *const c_void, usize, Handle) -> Res,
    dtoh: unsafe extern "C" fn(*mut c_void, DevPtr, usize, Handle) -> Res,
    dtod: unsafe extern "C" fn(DevPtr, DevPtr, usize, Handle) -> Res,
    memset8: unsafe extern "C" fn(DevPtr, u32, usize, Handle) -> Res,
    stream_create: unsafe extern "C" fn(*mut Handle, u32) -> Res,
    stream_sync: unsafe extern "C" fn(Handle) -> Res,
    module_load: unsafe extern "C" fn(*mut Handle, *const c_void) -> Res,
    module_fn: unsafe extern "C" fn(*mut Handle, Handle, *const c_char) -> Res,
    #[allow(clippy::type_complexity)]
    launch: unsafe extern "C" fn(
        Handle,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        Handle,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> Res,
    driver_version: FnI32Out,
    // NVIDIA: contexts; AMD: a current device per thread.
    ctx_retain: Option<unsafe extern "C" fn(*mut Handle, i32) -> Res>,
    ctx_set: Option<unsafe extern "C" fn(Handle) -> Res>,
    set_device: Option<unsafe extern "C" fn(i32) -> Res>,
    cu_error: Option<unsafe extern "C" fn(Res, *mut *const c_char) -> Res>,
    hip_error: Option<unsafe extern "C" fn(Res) -> *const c_char>,
    hip_props: Option<unsafe extern "C" fn(*mut u8, i32) -> Res>,
    // Graphs (stream capture); absent in old runtimes.
    capture_begin: Option<unsafe extern "C" fn(Handle, i32) -> Res>,
    capture_end: Option<unsafe extern "C" fn(Handle, *mut Handle) -> Res>,
    graph_instantiate: Option<unsafe extern "C" fn(*mut Handle, Handle, u64) -> Res>,
    graph_launch: Option<unsafe extern "C" fn(Handle, Handle) -> Res>,
    graph_exec_destroy: Option<unsafe extern "C" fn(Handle) -> Res>,
    graph_destroy: Option<unsafe extern "C" fn(Handle) -> Res>,
    // Resident blocks of a kernel per multiprocessor (grid sizing only).
    occupancy: Option<unsafe extern "C" fn(*mut i32, Handle, i32, usize) -> Res>,
    // NVIDIA: launches with attributes (programmatic dependent launch).
    launch_ex:
        Option<unsafe extern "C" fn(*const LaunchConfig, Handle, *mut *mut c_void, *mut *mut c_void) -> Res>,
    _lib: &'static Library,
}

// SAFETY: the table holds C function pointers and the library that keeps them valid; the runtimes
// are thread-safe.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

/// A runtime call's failure: the function and the runtime's message.
pub type ApiResult<T> = std::result::Result<T, String>;

impl Runtime {
    /// Opens and initializes the runtime of `vendor`.
    pub(crate) fn open(vendor: Vendor) -> ApiResult<Runtime> {
        let (lib, path) = match vendor {
            Vendor::Nvidia => open_any(&["libcuda.so.1", "libcuda.so"])
                .map_err(|e| format!("the CUDA driver is not installed ({e})"))?,
            Vendor::Amd => open_any(&["libamdhip64.so"])
                .map_err(|e| format!("the HIP runtime is not installed ({e})"))?,
        };
        let n = |cu: &str, hip: &str| if vendor == Vendor::Nvidia { cu.to_string() } else { hip.to_string() };
        let l = lib;
        let init: unsafe extern "C" fn(u32) -> Res = sym(l, &n("cuInit", "hipInit"))?;
        let rt = Runtime {
            vendor,
            path,
            device_count: sym(l, &n("cuDeviceGetCount", "hipGetDeviceCount"))?,
            device_get: sym(l, &n("cuDeviceGet", "hipDeviceGet"))?,
            device_name: sym(l, &n("cuDeviceGetName", "hipDeviceGetName"))?,
            device_total_mem: sym(l, &n("cuDeviceTotalMem_v2", "hipDeviceTotalMem"))?,
            device_attr: sym(l, &n("cuDeviceGetAttribute", "hipDeviceGetAttribute"))?,
            mem_get_info: sym(l, &n("cuMemGetInfo_v2", "hipMemGetInfo"))?,
            mem_alloc: sym(l, &n("cuMemAlloc_v2", "hipMalloc"))?,
            mem_free: sym(l, &n("cuMemFree_v2", "hipFree"))?,
            htod: sym(l, &n("cuMemcpyHtoDAsync_v2", "hipMemcpyHtoDAsync"))?,
            dtoh: sym(l, &n("cuMemcpyDtoHAsync_v2", "hipMemcpyDtoHAsync"))?,
            dtod: sym(l, &n("cuMemcpyDtoDAsync_v2", "hipMemcpyDtoDAsync"))?,
            memset8: sym(l, &n("cuMemsetD8Async", "hipMemsetD8Async"))?,
            stream_create: sym(l, &n("cuStreamCreate", "hipStreamCreateWithFlags"))?,
            stream_sync: sym(l, &n("cuStreamSynchronize", "hipStreamSynchronize"))?,
            module_load: sym(l, &n("cuModuleLoadData", "hipModuleLoadData"))?,
            module_fn: sym(l, &n("cuModuleGetFunction", "hipModuleGetFunction"))?,
            launch: sym(l, &n("cuLaunchKernel", "hipModuleLaunchKernel"))?,
            driver_version: sym(l, &n("cuDriverGetVersion", "hipRuntimeGetVersion"))?,
            ctx_retain: opt_sym(l, "cuDevicePrimaryCtxRetain"),
            ctx_set: opt_sym(l, "cuCtxSetCurrent"),
            set_device: opt_sym(l, "hipSetDevice"),
            cu_error: opt_sym(l, "cuGetErrorString"),
            hip_error: opt_sym(l, "hipGetErrorString"),
            hip_props: opt_sym(l, "hipGetDeviceProperties"),
            capture_begin: opt_sym(l, &n("cuStreamBeginCapture_v2", "hipStreamBeginCapture")),
            capture_end: opt_sym(l, &n("cuStreamEndCapture", "hipStreamEndCapture")),
            graph_instantiate: opt_sym(l, &n("cuGraphInstantiateWithFlags", "hipGraphInstantiateWithFlags")),
            graph_launch: opt_sym(l, &n("cuGraphLaunch", "hipGraphLaunch")),
            graph_exec_destroy: opt_sym(l, &n("cuGraphExecDestroy", "hipGraphExecDestroy")),
            graph_destroy: opt_sym(l, &n("cuGraphDestroy", "hipGraphDestroy")),
            occupancy: opt_sym(
                l,
                &n(
                    "cuOccupancyMaxActiveBlocksPerMultiprocessor",
                    "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor",
                ),
            ),
            launch_ex: if vendor == Vendor::Nvidia { opt_sym(l, "cuLaunchKernelEx") } else { None },
            _lib: lib,
        };
        // SAFETY: plain C call.
        rt.check("init", unsafe { init(0) })
            .map_err(|e| format!("{} loaded, but found no usable GPU: {e}", rt.path.display()))?;
        Ok(rt)
    }

    /// `Ok` for success, else the call's name and the runtime's message.
    pub(crate) fn check(&self, what: &str, r: Res) -> ApiResult<()> {
        if r == 0 {
            return Ok(());
        }
        let mut msg = String::new();
        if let Some(f) = self.cu_error {
            let mut p: *const c_char = std::ptr::null();
            // SAFETY: cuGetErrorString writes a static string pointer.
            unsafe { f(r, &mut p) };
            msg = cstr(p);
        } else if let Some(f) = self.hip_error {
            // SAFETY: hipGetErrorString returns a static string.
            msg = cstr(unsafe { f(r) });
        }
        Err(format!("{what} failed with error {r} ({msg})"))
    }

    /// Number of devices.
    pub(crate) fn device_count(&self) -> ApiResult<usize> {
        let mut n = 0;
        // SAFETY: writes one int.
        self.check("device count", unsafe { (self.device_count)(&mut n) })?;
        Ok(n.max(0) as usize)
    }

    /// Device handle of ordinal `i`.
    pub(crate) fn device(&self, i: usize) -> ApiResult<i32> {
        let mut d = 0;
        // SAFETY: writes one int.
        self.check("device get", unsafe { (self.device_get)(&mut d, i as i32) })?;
        Ok(d)
    }

    /// Marketing name of a device.
    pub(crate) fn device_name(&self, dev: i32) -> ApiResult<String> {
        let mut buf = [0 as c_char; 256];
        // SAFETY: the buffer length is passed.
        self.check("device name", unsafe { (self.device_name)(buf.as_mut_ptr(), 256, dev) })?;
        Ok(cstr(buf.as_ptr()))
    }

    /// Total memory of a device in bytes.
    pub(crate) fn device_total_mem(&self, dev: i32) -> ApiResult<usize> {
        let mut b = 0usize;
        // SAFETY: writes one size_t.
        self.check("device memory", unsafe { (self.device_total_mem)(&mut b, dev) })?;
        Ok(b)
    }

    /// The compiler target of a device: `sm_XY` (compute capability) or `gfx…` (from the properties).
    pub(crate) fn device_arch(&self, dev: i32) -> ApiResult<String> {
        match self.vendor {
            Vendor::Nvidia => {
                let (mut major, mut minor) = (0, 0);
                // SAFETY: attributes 75/76 are CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR.
                unsafe {
                    self.check("device attribute", (self.device_attr)(&mut major, 75, dev))?;
                    self.check("device attribute", (self.device_attr)(&mut minor, 76, dev))?;
                }
                Ok(format!("sm_{major}{minor}"))
            }
            Vendor::Amd => {
                // hipDeviceProp_t's layout differs between ROCm releases; its gcnArchName field is the
                // one string in it that starts with "gfx", so it is found by content, in an oversized
                // buffer.
                let f = self.hip_props.ok_or("hipGetDeviceProperties is missing")?;
                let mut buf = vec![0u8; 16384];
                // SAFETY: the buffer is larger than any release's struct.
                self.check("device properties", unsafe { f(buf.as_mut_ptr(), dev) })?;
                let at =
                    buf.windows(3).position(|w| w == b"gfx").ok_or("no gfx architecture in properties")?;
                let name: String = buf[at..]
                    .iter()
                    .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_')
                    .map(|&c| c as char)
                    .collect();
                Ok(name)
            }
        }
    }

    /// Multiprocessors (NVIDIA SMs, AMD compute units) of a device.
    pub(crate) fn multiprocessors(&self, dev: i32) -> ApiResult<u32> {
        // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT / hipDeviceAttributeMultiprocessorCount (ROCm 5+).
        let attr = if self.vendor == Vendor::Nvidia { 16 } else { 63 };
        let mut n = 0;
        // SAFETY: writes one int.
        self.check("device attribute", unsafe { (self.device_attr)(&mut n, attr, dev) })?;
        u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| format!("{n} multiprocessors"))
    }

    /// How many blocks of `block` threads of kernel `f` fit on one multiprocessor at once.
    pub(crate) fn occupancy(&self, f: Handle, block: u32) -> ApiResult<u32> {
        let q = self.occupancy.ok_or("no occupancy query")?;
        let mut n = 0;
        // SAFETY: a loaded kernel; writes one int.
        self.check("occupancy", unsafe { q(&mut n, f, block as i32, 0) })?;
        u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| format!("{n} blocks per multiprocessor"))
    }

    /// The driver (CUDA) or runtime (HIP) version number.
    pub(crate) fn version(&self) -> i32 {
        let mut v = 0;
        // SAFETY: writes one int.
        unsafe { (self.driver_version)(&mut v) };
        v
    }

    /// Makes device `dev` current on this thread; returns the context to keep (NVIDIA).
    pub(crate) fn activate(&self, dev: i32, ctx: &mut Handle) -> ApiResult<()> {
        match (self.ctx_retain, self.ctx_set, self.set_device) {
            (Some(retain), Some(set), _) => {
                if ctx.is_null() {
                    // SAFETY: writes one handle.
                    self.check("primary context", unsafe { retain(ctx, dev) })?;
                }
                // SAFETY: a retained context.
                self.check("set context", unsafe { set(*ctx) })
            }
            // SAFETY: plain C call.
            (_, _, Some(setdev)) => self.check("set device", unsafe { setdev(dev) }),
            _ => Err("no way to select a device in this runtime".into()),
        }
    }

    /// Free and total memory of the current device.
    pub(crate) fn mem_info(&self) -> ApiResult<(usize, usize)> {
        let (mut free, mut total) = (0, 0);
        // SAFETY: writes two size_t.
        self.check("memory info", unsafe { (self.mem_get_info)(&mut free, &mut total) })?;
        Ok((free, total))
    }

    pub(crate) fn alloc(&self, bytes: usize) -> ApiResult<DevPtr> {
        let mut p = 0;
        // SAFETY: writes one pointer.
        self.check("alloc", unsafe { (self.mem_alloc)(&mut p, bytes.max(1)) })?;
        Ok(p)
    }

    pub(crate) fn free(&self, p: DevPtr) {
        // SAFETY: `p` came from `alloc` and is freed once (by its owner).
        unsafe { (self.mem_free)(p) };
    }

    /// Copies host bytes to the device (ordered on `stream`; the source may be reused on return).
    pub(crate) fn htod(&self, dst: DevPtr, src: &[u8], stream: Handle) -> ApiResult<()> {
        // SAFETY: the caller checked that `dst` holds `src.len()` bytes.
        self.check("copy to device", unsafe { (self.htod)(dst, src.as_ptr().cast(), src.len(), stream) })
    }

    /// Copies device bytes to the host and waits for it.
    pub(crate) fn dtoh(&self, dst: &mut [u8], src: DevPtr, stream: Handle) -> ApiResult<()> {
        // SAFETY: the caller checked that `src` holds `dst.len()` bytes.
        unsafe {
            self.check("copy to host", (self.dtoh)(dst.as_mut_ptr().cast(), src, dst.len(), stream))?;
        }
        self.sync(stream)
    }

    pub(crate) fn dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize, stream: Handle) -> ApiResult<()> {
        // SAFETY: the caller checked both ranges.
        self.check("device copy", unsafe { (self.dtod)(dst, src, bytes, stream) })
    }

    pub(crate) fn zero(&self, dst: DevPtr, bytes: usize, stream: Handle) -> ApiResult<()> {
        // SAFETY: the caller checked the range.
        self.check("memset", unsafe { (self.memset8)(dst, 0, bytes, stream) })
    }

    pub(crate) fn stream(&self) -> ApiResult<Handle> {
        let mut s = std::ptr::null_mut();
        // SAFETY: writes one handle; flag 1 = non-blocking (does not sync with the legacy stream).
        self.check("stream create", unsafe { (self.stream_create)(&mut s, 1) })?;
        Ok(s)
    }

    pub(crate) fn sync(&self, stream: Handle) -> ApiResult<()> {
        // SAFETY: a stream of this runtime.
        self.check("stream synchronize", unsafe { (self.stream_sync)(stream) })
    }

    /// Loads a code object (cubin / hsaco) and returns its module.
    pub(crate) fn load_module(&self, image: &[u8]) -> ApiResult<Handle> {
        let mut m = std::ptr::null_mut();
        // SAFETY: the image is a complete code object produced by the matching compiler.
        self.check("module load", unsafe { (self.module_load)(&mut m, image.as_ptr().cast()) })?;
        Ok(m)
    }

    pub(crate) fn function(&self, module: Handle, name: &str) -> ApiResult<Handle> {
        let mut f = std::ptr::null_mut();
        let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a loaded module and a NUL-terminated name.
        self.check(&format!("kernel {name}"), unsafe { (self.module_fn)(&mut f, module, c.as_ptr()) })?;
        Ok(f)
    }

    /// Whether launches can let a kernel start while the one before it finishes ([`Runtime::launch`]'s
    /// `overlap`).
    pub(crate) fn has_overlap(&self) -> bool {
        self.launch_ex.is_some()
    }

    /// Launches `f` with `params` (pointers to each argument's value). With `overlap` (where
    /// [`Runtime::has_overlap`]), the kernel may start while the kernel before it on the stream is still
    /// running: it must wait for that kernel's results itself (`grid_dep_wait` in compat.h) before it
    /// reads them or writes anything.
    pub(crate) fn launch(
        &self,
        f: Handle,
        grid: [u32; 3],
        block: u32,
        stream: Handle,
        params: &mut [*mut c_void],
        overlap: bool,
    ) -> ApiResult<()> {
        if let (true, Some(ex)) = (overlap, self.launch_ex) {
            let mut attr = LaunchAttr { id: LAUNCH_ATTR_PROGRAMMATIC_SERIALIZATION, _pad: 0, value: [0; 64] };
            attr.value[..4].copy_from_slice(&1i32.to_ne_bytes());
            let cfg = LaunchConfig {
                grid,
                block: [block, 1, 1],
                shared_bytes: 0,
                stream,
                attrs: &mut attr,
                n_attrs: 1,
            };
            // SAFETY: a valid config whose attribute outlives the call; `params` as below.
            let r = unsafe { ex(&cfg, f, params.as_mut_ptr(), std::ptr::null_mut()) };
            return self.check("kernel launch", r);
        }
        // SAFETY: `params` matches the kernel's signature (built by the typed launch helpers).
        let r = unsafe {
            (self.launch)(
                f,
                grid[0],
                grid[1],
                grid[2],
                block,
                1,
                1,
                0,
                stream,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        self.check("kernel launch", r)
    }

    /// Whether stream capture into graphs is available.
    pub(crate) fn has_graphs(&self) -> bool {
        self.capture_begin.is_some()
            && self.capture_end.is_some()
            && self.graph_instantiate.is_some()
            && self.graph_launch.is_some()
    }

    pub(crate) fn begin_capture(&self, stream: Handle) -> ApiResult<()> {
        let f = self.capture_begin.ok_or("no graphs")?;
        // SAFETY: mode 2 = relaxed (thread-local capture does not restrict other threads' calls).
        self.check("begin capture", unsafe { f(stream, 2) })
    }

    /// Ends capture and instantiates the graph.
    pub(crate) fn end_capture(&self, stream: Handle) -> ApiResult<Handle> {
        let (end, inst) = (self.capture_end.ok_or("no graphs")?, self.graph_instantiate.ok_or("no graphs")?);
        let mut g = std::ptr::null_mut();
        // SAFETY: writes one graph handle.
        self.check("end capture", unsafe { end(stream, &mut g) })?;
        let mut exec = std::ptr::null_mut();
        // SAFETY: a captured graph.
        let r = self.check("graph instantiate", unsafe { inst(&mut exec, g, 0) });
        if let Some(d) = self.graph_destroy {
            // SAFETY: the executable graph keeps its own copy.
            unsafe { d(g) };
        }
        r.map(|_| exec)
    }

    pub(crate) fn graph_launch(&self, exec: Handle, stream: Handle) -> ApiResult<()> {
        let f = self.graph_launch.ok_or("no graphs")?;
        // SAFETY: an instantiated graph.
        self.check("graph launch", unsafe { f(exec, stream) })
    }

    pub(crate) fn graph_free(&self, exec: Handle) {
        if let Some(f) = self.graph_exec_destroy {
            // SAFETY: an instantiated graph, destroyed once.
            unsafe { f(exec) };
        }
    }
}

// ---- the run-time compiler ---------------------------------------------------------------------------

/// hiprtc or NVRTC.
pub struct Rtc {
    pub vendor: Vendor,
    pub path: PathBuf,
    /// `major.minor` of the compiler (part of the kernel cache key).
    pub version: String,
    #[allow(clippy::type_complexity)]
    create: unsafe extern "C" fn(
        *mut Handle,
        *const c_char,
        *const c_char,
        i32,
        *const *const c_char,
        *const *const c_char,
    ) -> Res,
    compile: unsafe extern "C" fn(Handle, i32, *const *const c_char) -> Res,
    log_size: unsafe extern "C" fn(Handle, *mut usize) -> Res,
    log: unsafe extern "C" fn(Handle, *mut c_char) -> Res,
    code_size: unsafe extern "C" fn(Handle, *mut usize) -> Res,
    code: unsafe extern "C" fn(Handle, *mut c_char) -> Res,
    destroy: unsafe extern "C" fn(*mut Handle) -> Res,
    _lib: &'static Library,
}

// SAFETY: function pointers and the library that keeps them valid; programs are not shared.
unsafe impl Send for Rtc {}
unsafe impl Sync for Rtc {}

impl Rtc {
    /// Opens the compiler of `vendor`.
    pub(crate) fn open(vendor: Vendor) -> ApiResult<Rtc> {
        let (lib, path) = match vendor {
            Vendor::Nvidia => open_any(&["libnvrtc.so"]).map_err(|e| {
                format!("NVRTC is not installed ({e}); e.g. pip install nvidia-cuda-nvrtc-cu12")
            })?,
            // ROCm 6 ships hiprtc on its own; ROCm 5 (Debian's libamdhip64-5) has it inside libamdhip64.
            Vendor::Amd => open_any(&["libhiprtc.so", "libamdhip64.so"]).map_err(|e| {
                format!("hiprtc is not installed ({e}); e.g. apt-get install libamdhip64-dev")
            })?,
        };
        let p = if vendor == Vendor::Nvidia { "nvrtc" } else { "hiprtc" };
        let s = |name: &str| format!("{p}{name}");
        let version_fn: unsafe extern "C" fn(*mut i32, *mut i32) -> Res = sym(lib, &s("Version"))?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: writes two ints.
        unsafe { version_fn(&mut major, &mut minor) };
        let (code_size, code) = match vendor {
            Vendor::Nvidia => ("GetCUBINSize", "GetCUBIN"),
            Vendor::Amd => ("GetCodeSize", "GetCode"),
        };
        Ok(Rtc {
            vendor,
            version: format!("{major}.{minor}"),
            create: sym(lib, &s("CreateProgram"))?,
            compile: sym(lib, &s("CompileProgram"))?,
            log_size: sym(lib, &s("GetProgramLogSize"))?,
            log: sym(lib, &s("GetProgramLog"))?,
            code_size: sym(lib, &s(code_size))?,
            code: sym(lib, &s(code))?,
            destroy: sym(lib, &s("DestroyProgram"))?,
            path,
            _lib: lib,
        })
    }

    /// Compiles `source` (with `headers` as `(name, text)`) for `arch`; the code object, or the log.
    pub(crate) fn compile(
        &self,
        name: &str,
        source: &str,
        headers: &[(&str, &str)],
        arch: &str,
    ) -> ApiResult<Vec<u8>> {
        use std::ffi::CString;
        let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
        let (src, cname) = (c(source)?, c(name)?);
        let hs: Vec<CString> = headers.iter().map(|h| c(h.1)).collect::<ApiResult<_>>()?;
        let hn: Vec<CString> = headers.iter().map(|h| c(h.0)).collect::<ApiResult<_>>()?;
        let hsp: Vec<*const c_char> = hs.iter().map(|s| s.as_ptr()).collect();
        let hnp: Vec<*const c_char> = hn.iter().map(|s| s.as_ptr()).collect();
        let opts: Vec<CString> = match self.vendor {
            Vendor::Nvidia => {
                vec![c(&format!("--gpu-architecture={arch}"))?, c("-DPRISM_CUDA")?, c("-std=c++17")?]
            }
            Vendor::Amd => vec![c(&format!("--gpu-architecture={arch}"))?, c("-O3")?],
        };
        let optp: Vec<*const c_char> = opts.iter().map(|s| s.as_ptr()).collect();
        let mut prog: Handle = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the program.
        let r = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                cname.as_ptr(),
                hs.len() as i32,
                hsp.as_ptr(),
                hnp.as_ptr(),
            )
        };
        if r != 0 {
            return Err(format!("{name}: create program failed with error {r}"));
        }
        // SAFETY: a created program and valid option strings.
        let r = unsafe { (self.compile)(prog, optp.len() as i32, optp.as_ptr()) };
        let result = if r != 0 {
            let mut n = 0usize;
            // SAFETY: log size then log into a buffer of that size.
            unsafe { (self.log_size)(prog, &mut n) };
            let mut log = vec![0u8; n.max(1)];
            unsafe { (self.log)(prog, log.as_mut_ptr().cast()) };
            Err(format!("{name} for {arch}: compile error {r}:\n{}", String::from_utf8_lossy(&log)))
        } else {
            let mut n = 0usize;
            // SAFETY: code size then code into a buffer of that size.
            unsafe { (self.code_size)(prog, &mut n) };
            let mut code = vec![0u8; n];
            let r = unsafe { (self.code)(prog, code.as_mut_ptr().cast()) };
            if r != 0 || n == 0 { Err(format!("{name} for {arch}: no code ({r})")) } else { Ok(code) }
        };
        // SAFETY: destroyed once.
        unsafe { (self.destroy)(&mut prog) };
        result
    }
}

// ---- GEMM --------------------------------------------------------------------------------------------

/// Element types of a GEMM operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmType {
    F16,
    F32,
}

/// rocBLAS or cuBLAS, bound to one stream.
pub struct Blas {
    vendor: Vendor,
    handle: Handle,
    cublas_gemm: Option<CublasGemmEx>,
    rocblas_gemm: Option<RocblasGemmEx>,
    _libs: Vec<&'static Library>,
}

type CublasGemmEx = unsafe extern "C" fn(
    Handle,
    i32,
    i32,
    i32,
    i32,
    i32,
    *const c_void,
    DevPtr,
    i32,
    i32,
    DevPtr,
    i32,
    i32,
    *const c_void,
    DevPtr,
    i32,
    i32,
    i32,
    i32,
) -> Res;
type RocblasGemmEx = unsafe extern "C" fn(
    Handle,
    i32,
    i32,
    i32,
    i32,
    i32,
    *const c_void,
    DevPtr,
    i32,
    i32,
    DevPtr,
    i32,
    i32,
    *const c_void,
    DevPtr,
    i32,
    i32,
    DevPtr,
    i32,
    i32,
    i32,
    i32,
    i32,
    u32,
) -> Res;

// SAFETY: the handle is used only by the backend that owns it, from one thread at a time.
unsafe impl Send for Blas {}

impl Blas {
    /// Opens the BLAS of `vendor` and binds a handle to `stream` (the device must be current).
    pub(crate) fn open(vendor: Vendor, stream: Handle) -> ApiResult<Blas> {
        let mut libs = Vec::new();
        let (create, set_stream) = match vendor {
            Vendor::Nvidia => {
                let (lib, _) =
                    open_any(&["libcublas.so"]).map_err(|e| format!("cuBLAS is not installed ({e})"))?;
                let c: unsafe extern "C" fn(*mut Handle) -> Res = sym(lib, "cublasCreate_v2")?;
                let s: unsafe extern "C" fn(Handle, Handle) -> Res = sym(lib, "cublasSetStream_v2")?;
                libs.push(lib);
                (c, s)
            }
            Vendor::Amd => {
                let (lib, _) =
                    open_any(&["librocblas.so"]).map_err(|e| format!("rocBLAS is not installed ({e})"))?;
                let c: unsafe extern "C" fn(*mut Handle) -> Res = sym(lib, "rocblas_create_handle")?;
                let s: unsafe extern "C" fn(Handle, Handle) -> Res = sym(lib, "rocblas_set_stream")?;
                libs.push(lib);
                (c, s)
            }
        };
        let last = *libs.last().expect("loaded");
        let (cublas_gemm, rocblas_gemm) = match vendor {
            Vendor::Nvidia => (Some(sym::<CublasGemmEx>(last, "cublasGemmEx")?), None),
            Vendor::Amd => (None, Some(sym::<RocblasGemmEx>(last, "rocblas_gemm_ex")?)),
        };
        let mut handle = std::ptr::null_mut();
        // SAFETY: writes one handle; then binds it to our stream.
        unsafe {
            if create(&mut handle) != 0 {
                return Err("BLAS handle creation failed".into());
            }
            if set_stream(handle, stream) != 0 {
                return Err("BLAS set stream failed".into());
            }
        }
        Ok(Blas { vendor, handle, cublas_gemm, rocblas_gemm, _libs: libs })
    }

    /// Column-major `C[m, n] = alpha · op(A)[m, k] · B[k, n] + beta · C` with `op(A) = Aᵀ`, A stored
    /// `[m, k]`-by-rows (lda = k), B `[n, k]`-by-rows (ldb = k), f32 C (ldc = m), f32 accumulation.
    /// Row-major reading: `out[n, m] = x[n, k] · W[m, k]ᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_tn(
        &self,
        ty: GemmType,
        m: usize,
        n: usize,
        k: usize,
        a: DevPtr,
        b: DevPtr,
        c: DevPtr,
        beta: f32,
    ) -> ApiResult<()> {
        let alpha = 1f32;
        let (m, n, k) = (m as i32, n as i32, k as i32);
        let ap = (&alpha as *const f32).cast();
        let bp = (&beta as *const f32).cast();
        let r = match self.vendor {
            Vendor::Nvidia => {
                let t = match ty {
                    GemmType::F16 => 2, // CUDA_R_16F
                    GemmType::F32 => 0, // CUDA_R_32F
                };
                // SAFETY: device pointers sized by the caller; 68 = CUBLAS_COMPUTE_32F, -1 = default algo.
                unsafe {
                    (self.cublas_gemm.expect("cublas"))(
                        self.handle,
                        1,
                        0,
                        m,
                        n,
                        k,
                        ap,
                        a,
                        t,
                        k,
                        b,
                        t,
                        k,
                        bp,
                        c,
                        0,
                        m,
                        68,
                        -1,
                    )
                }
            }
            Vendor::Amd => {
                let t = match ty {
                    GemmType::F16 => 150, // rocblas_datatype_f16_r
                    GemmType::F32 => 151, // rocblas_datatype_f32_r
                };
                // SAFETY: as above; 112/111 = transpose/none, compute f32, standard algo.
                unsafe {
                    (self.rocblas_gemm.expect("rocblas"))(
                        self.handle,
                        112,
                        111,
                        m,
                        n,
                        k,
                        ap,
                        a,
                        t,
                        k,
                        b,
                        t,
                        k,
                        bp,
                        c,
                        151,
                        m,
                        c,
                        151,
                        m,
                        151,
                        0,
                        0,
                        0,
                    )
                }
            }
        };
        if r != 0 { Err(format!("BLAS GEMM failed with status {r}")) } else { Ok(()) }
    }
}

/// The directory of a loaded library (for messages).
pub fn shown(p: &Path) -> String {
    p.display().to_string()
}

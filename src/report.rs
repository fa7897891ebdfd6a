//! Stage 8: the JSON documents users and other tools rely on.
//!
//! Why a stage of its own: the JSON *is* the product for researchers (it feeds R and pandas)
//! and the contract other stages build on. Every document carries `schema_version`; keys are
//! only ever added within a version. Failed photos produce a document too, with `status:
//! "failed"` and the error, so a batch never loses track of an input.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metrics::RegionMetrics;
use crate::quality::QualityReport;
use crate::regions::ScaleSource;
use crate::runtime::RuntimeInfo;

/// Version of the `analyze` document layout.
pub const ANALYZE_SCHEMA_VERSION: u32 = 1;

/// Name and version of the software that wrote a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolInfo {
    /// "dermatrack".
    pub name: String,
    /// The crate version.
    pub version: String,
}

impl ToolInfo {
    /// This build.
    pub fn current() -> ToolInfo {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Whether a photo was analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured.
    Ok,
    /// Not measured; see `error`.
    Failed,
}

/// A failure, machine- and human-readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorInfo {
    /// Stable identifier (see [`crate::Error::kind`]).
    pub kind: String,
    /// The full message, naming the file.
    pub message: String,
}

impl From<&crate::Error> for ErrorInfo {
    fn from(e: &crate::Error) -> Self {
        ErrorInfo {
            kind: e.kind().into(),
            message: e.to_string(),
        }
    }
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageInfo {
    /// Path as given.
    pub path: PathBuf,
    /// sha256 of the file's bytes; `None` when the file could not be read.
    pub sha256: Option<String>,
    /// Upright width in pixels.
    pub width: Option<u32>,
    /// Upright height in pixels.
    pub height: Option<u32>,
    /// Pixels per millimetre used for physical units.
    pub px_per_mm: Option<f64>,
    /// Where `px_per_mm` came from.
    pub px_per_mm_source: Option<ScaleSource>,
    /// Relative standard uncertainty of `px_per_mm`, when known.
    pub px_per_mm_uncertainty: Option<f64>,
    /// Container format.
    pub format: Option<String>,
    /// Bits per stored channel.
    pub bits_per_channel: Option<u8>,
    /// Stored color model ("rgb", "cmyk", ...).
    pub source_color: Option<String>,
    /// EXIF orientation tag applied (1 = none).
    pub exif_orientation: Option<u8>,
}

/// Which model produced the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelInfo {
    /// Model name, e.g. "skin-v1".
    pub name: String,
    /// sha256 of the `.onnx` file.
    pub sha256: String,
    /// Model version from its manifest.
    pub version: String,
    /// The model's working scale.
    pub working_px_per_mm: f64,
    /// The ONNX Runtime library that ran it.
    pub runtime: RuntimeInfo,
}

/// The settings that influence the numbers, recorded for reproducibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// `--regions` as asked.
    pub regions: crate::regions::RegionMode,
    /// `--regions-file`, when given (it replaces `regions`).
    pub regions_file: Option<PathBuf>,
    /// `--px-per-mm` as given, if any.
    pub px_per_mm: Option<f64>,
    /// Decompression-bomb limit in pixels.
    pub max_pixels: u64,
    /// Detection thresholds and sizes.
    pub metrics: crate::metrics::MetricSettings,
}

/// One region's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegionReport {
    /// Region name ("whole", "forehead", "cheek_left", ...).
    pub name: String,
    /// False when the region was hidden and not scored.
    pub visible: bool,
    /// Area of skin measured, in mm².
    pub area_mm2: f64,
    /// Pixels in the region at photo resolution.
    pub pixel_count: u64,
    /// The measurements.
    pub metrics: RegionMetrics,
}

/// The `dermatrack analyze` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnalysisDocument {
    /// Layout version: [`ANALYZE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Software that wrote it.
    pub tool: ToolInfo,
    /// Measured or failed.
    pub status: Status,
    /// Why it failed, when it did.
    pub error: Option<ErrorInfo>,
    /// The input.
    pub image: ImageInfo,
    /// The model.
    pub model: ModelInfo,
    /// Settings that influence the numbers.
    pub settings: Settings,
    /// Capture quality checks.
    pub quality: QualityReport,
    /// Region mode actually used ("face" or "whole"), when measured.
    pub regions_mode: Option<String>,
    /// The face measured (detection score, landmark presence, pose, interpupillary distance,
    /// face width), when face regions were used.
    pub face: Option<crate::face::FaceSummary>,
    /// Per-region results.
    pub regions: Vec<RegionReport>,
    /// Remarks (fallbacks, resolution limits).
    pub notes: Vec<String>,
}

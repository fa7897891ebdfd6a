//! The library's one error type.
//!
//! Every failure that can happen to one photo is a variant here, carrying the file it concerns,
//! so a batch can record it next to that photo and go on (a failed photo becomes a `status: "failed"` document, see [`crate::report`]).
//! Messages say what was expected, not only what went wrong.

use std::path::PathBuf;

/// Everything that can go wrong in the pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: cannot read file: {source}")]
    Read {
        /// The photo's path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not in a supported image format (JPEG, PNG, TIFF), judged by its content.
    #[error("{path}: not a supported image (expected JPEG, PNG or TIFF content{found})")]
    UnsupportedFormat {
        /// The photo's path.
        path: PathBuf,
        /// What was detected instead, already formatted (e.g. ", found GIF"), or empty.
        found: String,
    },

    /// The image header announces more pixels than allowed; nothing was decoded.
    #[error(
        "{path}: {width}×{height} = {pixels} pixels exceeds the limit of {limit} pixels \
         (refused before decoding; raise it with --max-pixels if the photo is genuine)"
    )]
    TooLarge {
        /// The photo's path.
        path: PathBuf,
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The image is smaller than anything that could hold measurable skin.
    #[error("{path}: {width}×{height} is too small (need at least {min}×{min} pixels)")]
    TooSmall {
        /// The photo's path.
        path: PathBuf,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Minimum side length.
        min: u32,
    },

    /// The bytes are recognised but cannot be decoded (corrupt, truncated, ...).
    #[error("{path}: cannot decode image: {message}")]
    Decode {
        /// The photo's path.
        path: PathBuf,
        /// The decoder's explanation.
        message: String,
    },

    /// The photo has no color: chromophore separation (melanin vs hemoglobin) needs RGB.
    #[error(
        "{path}: {color} image refused: skin measurement needs a color (RGB) photo, \
         because melanin and hemoglobin are separated by their color"
    )]
    NotColor {
        /// The photo's path.
        path: PathBuf,
        /// The color type found, e.g. "grayscale".
        color: String,
    },

    /// ONNX Runtime could not be found or loaded.
    #[error("{0}")]
    Runtime(String),

    /// A model file is missing, unreadable, or does not match its manifest.
    #[error("model {path}: {message}")]
    Model {
        /// The model's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// ONNX Runtime failed while building a session or running a model.
    #[error("ONNX Runtime: {0}")]
    Inference(String),

    /// A setting is out of its allowed range.
    #[error("invalid setting {name}: {message}")]
    InvalidSetting {
        /// The setting's name as the user knows it.
        name: &'static str,
        /// What is allowed.
        message: String,
    },

    /// Writing an output file failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Face regions were required but no face was found (none detected, or the landmark
    /// model rejected the detection). Close-ups of skin have no whole face to find.
    #[error(
        "{}no face found: {reason}; use --regions whole for close-ups",
        .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
    )]
    NoFace {
        /// The photo's path, when known (the face stage itself sees only pixels).
        path: Option<PathBuf>,
        /// What failed, e.g. "the detector found no face".
        reason: String,
    },
}

impl Error {
    /// A short stable identifier of the variant, for machine-readable reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::TooLarge { .. } => "too_large",
            Error::TooSmall { .. } => "too_small",
            Error::Decode { .. } => "decode",
            Error::NotColor { .. } => "not_color",
            Error::Runtime(_) => "runtime",
            Error::Model { .. } => "model",
            Error::Inference(_) => "inference",
            Error::InvalidSetting { .. } => "invalid_setting",
            Error::Write { .. } => "write",
            Error::NoFace { .. } => "no_face",
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

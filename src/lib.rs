//! dermatrack measures skin in clinical photos — pores, hyperpigmentation, atrophic scars,
//! redness and tone, per facial region — and tracks how they change across treatment sessions.
//!
//! The pipeline is one module per stage, each taking one typed value and returning the next:
//!
//! | stage | module | produces |
//! |---|---|---|
//! | decode, EXIF orientation, limits | [`io`] | [`io::Photo`] |
//! | capture quality | [`quality`] | [`quality::CheckedPhoto`] |
//! | regions and scale | [`regions`] | [`regions::RegionSet`] |
//! | ONNX skin model at physical scale | [`model`] | [`model::SkinMaps`] |
//! | per-region numbers | [`metrics`] | [`metrics::RegionMetrics`] |
//! | JSON documents | [`report`] | [`report::AnalysisDocument`] |
//! | pictures of what was counted | [`overlay`] | an RGB image |
//!
//! [`analyze::Analyzer`] chains them for one photo. ONNX Runtime is loaded at run time
//! ([`runtime`]). The library has no command-line dependencies; the `dermatrack` binary is a
//! thin layer over it.
#![deny(missing_docs)]

pub mod analyze;
pub mod error;
pub mod face;
pub mod io;
pub mod metrics;
pub mod model;
pub mod overlay;
pub mod phantom;
pub mod quality;
pub mod reference;
pub mod regions;
pub mod report;
pub mod runtime;
pub mod validation;

pub use error::{Error, Result};

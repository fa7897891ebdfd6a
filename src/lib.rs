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
//! | a study on disk (folders or manifest), validated | [`study`] | [`study::Study`] |
//! | every photo scored, in parallel and incrementally | [`batch`] | [`batch::Scored`] |
//! | per-subject change over sessions | [`progress_report`] | [`progress_report::SubjectReport`] |
//! | cohort tables (CSV) and per-arm summary | [`cohort`] | [`cohort::CohortDocument`] |
//!
//! [`analyze::Analyzer`] chains them for one photo; [`batch::run_study`] runs a whole study. ONNX Runtime is loaded at run time
//! ([`runtime`]). The library has no command-line dependencies; the `dermatrack` binary is a
//! thin layer over it.
#![deny(missing_docs)]

pub mod analyze;
pub mod batch;
pub mod cohort;
pub mod color;
pub mod compare;
pub mod error;
pub mod face;
pub mod io;
pub mod metrics;
pub mod model;
pub mod noise;
pub mod overlay;
pub mod phantom;
pub mod pore_band;
pub mod progress_report;
pub mod quality;
pub mod reference;
pub mod regions;
pub mod register;
pub mod relief;
pub mod report;
pub mod runtime;
pub mod schema;
mod stats;
pub mod study;
pub mod validation;

pub use error::{Error, Result};

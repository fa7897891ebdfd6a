//! Accuracy against phantoms: run the pipeline on a rendered phantom and compare each metric
//! with its ground truth.
//!
//! Why in the library: the same comparison backs the accuracy tests (`tests/accuracy.rs`),
//! the printed report (`cargo run --release --example accuracy_report`) and the README table,
//! so the numbers quoted are the numbers tested.

use serde::Serialize;

use crate::analyze::Analyzer;
use crate::error::Result;
use crate::metrics::RegionMetrics;
use crate::phantom::{Phantom, PhantomSpec, PhantomTruth, render};

/// Measured next to true values for one phantom.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Tone preset or "custom".
    pub label: String,
    /// The truth.
    pub truth: PhantomTruth,
    /// The pipeline's metrics for the `whole` region.
    pub measured: RegionMetrics,
}

/// A measured value, its truth and the error, as a table row would show them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    /// What the pipeline reported.
    pub measured: f64,
    /// What the phantom contains.
    pub truth: f64,
}

impl Pair {
    /// measured − truth.
    pub fn error(&self) -> f64 {
        self.measured - self.truth
    }

    /// |measured − truth| / truth (∞ when truth is 0 and measured is not).
    pub fn relative_error(&self) -> f64 {
        if self.truth == 0.0 {
            if self.measured == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (self.error() / self.truth).abs()
        }
    }
}

impl Comparison {
    /// Pore count.
    pub fn pore_count(&self) -> Pair {
        Pair {
            measured: self
                .measured
                .pores
                .as_ref()
                .map_or(0.0, |p| f64::from(p.count)),
            truth: f64::from(self.truth.pores.count),
        }
    }

    /// Mean pore diameter, mm.
    pub fn pore_diameter(&self) -> Pair {
        Pair {
            measured: self
                .measured
                .pores
                .as_ref()
                .map_or(0.0, |p| p.mean_diameter_mm),
            truth: self.truth.pores.mean_diameter_mm,
        }
    }

    /// Pigmented area, percent of the image.
    pub fn pigment_area_pct(&self) -> Pair {
        Pair {
            measured: 100.0
                * self
                    .measured
                    .hyperpigmentation
                    .as_ref()
                    .map_or(0.0, |h| h.area_fraction),
            truth: 100.0 * self.truth.pigment.area_fraction,
        }
    }

    /// Pigmented spot count.
    pub fn pigment_count(&self) -> Pair {
        Pair {
            measured: self
                .measured
                .hyperpigmentation
                .as_ref()
                .map_or(0.0, |h| f64::from(h.spot_count)),
            truth: f64::from(self.truth.pigment.spot_count),
        }
    }

    /// Scar count.
    pub fn scar_count(&self) -> Pair {
        Pair {
            measured: self
                .measured
                .scarring
                .as_ref()
                .map_or(0.0, |s| f64::from(s.count)),
            truth: f64::from(self.truth.scars.count),
        }
    }

    /// Erythema area, percent of the image.
    pub fn redness_area_pct(&self) -> Pair {
        Pair {
            measured: 100.0
                * self
                    .measured
                    .redness
                    .as_ref()
                    .map_or(0.0, |r| r.area_fraction),
            truth: 100.0 * self.truth.erythema.area_fraction,
        }
    }

    /// ITA°.
    pub fn ita(&self) -> Pair {
        Pair {
            measured: self.measured.tone.as_ref().map_or(f64::NAN, |t| t.ita_deg),
            truth: self.truth.base_tone.ita_deg,
        }
    }
}

/// Renders `spec`, analyses it as a `whole` region at its true scale, and pairs the results.
///
/// The analyzer is switched to `regions: whole` at the phantom's scale (the caller owns it so
/// one ONNX session serves many phantoms).
pub fn compare(analyzer: &mut Analyzer, spec: &PhantomSpec, label: &str) -> Result<Comparison> {
    compare_rendered(analyzer, render(spec)?, label)
}

/// [`compare`] on a phantom already rendered (whose image a test may have changed, e.g.
/// rounded to 8 bits), analysed at its true scale.
pub fn compare_rendered(
    analyzer: &mut Analyzer,
    phantom: Phantom,
    label: &str,
) -> Result<Comparison> {
    let options = analyzer.options_mut();
    options.px_per_mm = Some(phantom.truth.px_per_mm);
    options.regions = crate::regions::RegionMode::Whole;
    let analysis = analyzer.analyze_photo(phantom.to_photo(format!("phantom-{label}")))?;
    Ok(Comparison {
        label: label.to_string(),
        truth: phantom.truth,
        measured: analysis.metrics.into_iter().next().unwrap_or_default(),
    })
}

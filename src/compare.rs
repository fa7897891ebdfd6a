//! Before/after: two photos of the same skin, registered, colour-normalised, quality-checked
//! and measured on the same skin, with every change judged against the instrument's noise.
//!
//! Why a stage of its own: "did it change?" is the clinician's question, and the two photos of
//! a pair never match — the head sits differently, the distance, exposure and white balance
//! drift between visits weeks apart. A booth (VISIA) fixes this mechanically; here it is done in
//! software, in this order:
//!
//! 1. **Regions** are found on BEFORE ([`Analyzer::locate`]: face landmarks, the whole frame or
//!    the user's polygons). AFTER is located too, for its landmarks and its own quality checks.
//! 2. **Registration** ([`crate::register::register_pair`]): a robust similarity from the 468
//!    landmarks, refined by phase correlation of skin-texture patches; residual error in px and
//!    mm. BEFORE's region masks are restricted to skin that AFTER also shows and mapped into
//!    AFTER's frame. AFTER's pixels are *not* resampled for measurement (resampling blurs the
//!    pores being counted); each photo is measured in its own frame, on the same skin, and
//!    AFTER's scale is BEFORE's divided by the registration's scale factor, so both are measured
//!    at the same physical scale even when only an estimated scale is known.
//! 3. **Colour** ([`crate::color`]): `skin` pins AFTER's pooled face-skin colour to BEFORE's
//!    (removes exposure and white balance, and any real *global* colour change); `chart` maps
//!    each photo to a colour chart's reference values and reports the fit's ΔE2000; `none`.
//! 4. **Measurement** of both photos with the same analyzer and settings.
//! 5. **Pair quality**: registration residual, sharpness ratio, pose difference, scale ratio and
//!    raw colour difference, each against a documented limit ([`PairLimits`]). A pair that fails
//!    any check, or a photo that fails its own checks, is still reported, with `reliable: false`
//!    and the reasons.
//! 6. **Significance**: a change is `significant` only when it exceeds the minimal detectable
//!    change (MDC) of `models/noise_floor.json`, measured on nuisance-only pairs
//!    (`examples/noise_floor.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, Rgb, Rgb32FImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::analyze::{Analysis, Analyzer, Located};
use crate::color::{self, ColorNormalization};
use crate::error::{Error, Result};
use crate::io::{Photo, load_photo};
use crate::progress_report::{Better, NoiseFloor, NoiseFloorInfo, flatten_metrics};
use crate::quality::{QualityReport, sharpness, skin_mask};
use crate::regions::{RegionMask, RegionSet, Scale};
use crate::register::{self, Alignment, Similarity};
use crate::report::{AnalysisDocument, ErrorInfo, ModelInfo, Status, ToolInfo};

/// Version of the `compare` document layout.
pub const COMPARE_SCHEMA_VERSION: u32 = 1;

/// How the two photos' colours are made comparable.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Leave the colours as captured.
    None,
    /// Pin AFTER's pooled skin colour to BEFORE's (von Kries gains in linear light).
    #[default]
    Skin,
    /// Map each photo to a colour chart's reference values (needs both chart files).
    Chart,
}

/// Limits of the pair checks. `PairLimits::default()` gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairLimits {
    /// Smallest ratio of the lower to the higher [`sharpness`] of the two photos. A blurrier
    /// photo hides pores and fine scars, which reads as an improvement that is not there.
    /// Measured (`examples/capture_qc.rs`): a Gaussian blur of σ = 0.25 mm divides sharpness by
    /// 4–8, while the same face neutral vs smiling differs by up to 2.2×. Default: 0.4.
    pub min_sharpness_ratio: f64,
    /// Largest |yaw difference|, degrees: beyond ≈ 10° one cheek is foreshortened and partly
    /// hidden, which a 2-D registration cannot undo. Default: 10.
    pub max_yaw_difference_deg: f64,
    /// Largest |pitch difference|, degrees (same reason, forehead and chin). Default: 10.
    pub max_pitch_difference_deg: f64,
    /// Range of the ratio of the two photos' resolutions on the skin (AFTER px/mm over BEFORE
    /// px/mm). Features near the resolution limit (pores of 0.3–0.5 mm at 3–4 px/mm) are
    /// counted differently when the resolution changes by more than about a quarter.
    /// Default: 0.8..1.25.
    pub scale_ratio: (f64, f64),
    /// Largest CIEDE2000 between the two photos' raw skin colours: beyond it the capture
    /// differs by more than exposure and white balance (another lamp, a flash, a filter), and a
    /// global colour correction is not trusted. Exposure ×1.3 on light skin is ≈ 5. Default: 15.
    pub max_skin_delta_e2000: f64,
}

impl Default for PairLimits {
    fn default() -> Self {
        PairLimits {
            min_sharpness_ratio: 0.4,
            max_yaw_difference_deg: 10.0,
            max_pitch_difference_deg: 10.0,
            scale_ratio: (0.8, 1.25),
            max_skin_delta_e2000: 15.0,
        }
    }
}

/// Settings of a comparison (the measurement settings are the [`Analyzer`]'s).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// Colour normalization. Default: [`Normalization::Skin`].
    pub normalization: Normalization,
    /// Chart file of the BEFORE photo ([`crate::color::load_chart`]); needed for `chart`.
    /// Default: none.
    pub chart_before: Option<PathBuf>,
    /// Chart file of the AFTER photo. Default: none.
    pub chart_after: Option<PathBuf>,
    /// Pair-check limits. Default: [`PairLimits::default`].
    pub limits: PairLimits,
    /// Smallest share of a BEFORE region that AFTER must also show for the region to be
    /// compared (the rest is cropped by AFTER's frame). Default: 0.9.
    pub min_region_overlap: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            normalization: Normalization::Skin,
            chart_before: None,
            chart_after: None,
            limits: PairLimits::default(),
            min_region_overlap: 0.9,
        }
    }
}

/// The change of one metric between the two photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricChange {
    /// Value on BEFORE.
    pub before: f64,
    /// Value on AFTER.
    pub after: f64,
    /// `after − before`.
    pub delta: f64,
    /// `delta / |before|`; `None` when `before` is 0.
    pub relative_delta: Option<f64>,
    /// The minimal detectable change for this metric at this `before` value:
    /// `max(absolute, relative·|before|)` from the noise floor; `None` when the floor has no
    /// entry for the metric.
    pub minimal_detectable_change: Option<f64>,
    /// `|delta|` exceeds the minimal detectable change.
    pub significant: bool,
    /// For a significant change of a metric with a better direction: "improved" or "worsened";
    /// otherwise "unchanged" (not significant), "changed" (tone: no better direction) or
    /// "undefined" (a mean over features, e.g. pore diameter, when one photo has none; never
    /// significant).
    pub direction: String,
}

/// One region's changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionChange {
    /// Region name.
    pub name: String,
    /// Whether both photos show the region and it was scored in both.
    pub comparable: bool,
    /// Why not comparable, when it is not.
    pub reason: Option<String>,
    /// Area measured on BEFORE, mm².
    pub area_mm2_before: f64,
    /// Area measured on AFTER (the same skin, mapped), mm².
    pub area_mm2_after: f64,
    /// `metrics[group][field]`, e.g. `metrics["hyperpigmentation"]["area_fraction"]`, for every
    /// numeric metric of the analyze document.
    pub metrics: BTreeMap<String, BTreeMap<String, MetricChange>>,
    /// Names (`group.field`) of the significant changes, for a quick look.
    pub significant: Vec<String>,
}

/// The `compare` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareDocument {
    /// Layout version ([`COMPARE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The software.
    pub tool: ToolInfo,
    /// "ok" or "failed".
    pub status: Status,
    /// Why it failed.
    pub error: Option<ErrorInfo>,
    /// The skin model.
    pub model: ModelInfo,
    /// Colour normalization asked for.
    pub normalization: Normalization,
    /// The pair-check limits in force.
    pub limits: PairLimits,
    /// The noise floor the significance comes from.
    pub noise_floor: NoiseFloorInfo,
    /// True when the pair passed every check and both photos passed theirs: the deltas can
    /// be trusted as far as the noise floor says.
    pub reliable: bool,
    /// Why the deltas are not reliable.
    pub unreliable_reasons: Vec<String>,
    /// How AFTER was registered to BEFORE; `None` when the comparison failed before it.
    pub alignment: Option<Alignment>,
    /// What colour normalization was done.
    pub color: Option<ColorNormalization>,
    /// The checks that need both photos.
    pub pair_quality: QualityReport,
    /// Per region and metric: before, after, delta, relative delta, significance.
    pub regions: Vec<RegionChange>,
    /// The full analysis of BEFORE (regions restricted to the skin both photos show).
    pub before: AnalysisDocument,
    /// The full analysis of AFTER (BEFORE's regions mapped into AFTER's frame).
    pub after: AnalysisDocument,
    /// Remarks.
    pub notes: Vec<String>,
}

/// A finished comparison with its intermediate values, for the overlay.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// BEFORE's analysis.
    pub before: Analysis,
    /// AFTER's analysis, in AFTER's own frame.
    pub after: Analysis,
    /// The registration.
    pub alignment: Alignment,
    /// The colour normalization.
    pub color: ColorNormalization,
    /// The pair checks.
    pub pair_quality: QualityReport,
    /// Per-region changes.
    pub regions: Vec<RegionChange>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Loads and compares two photo files.
pub fn compare_paths(
    analyzer: &mut Analyzer,
    before: &Path,
    after: &Path,
    options: &CompareOptions,
    floor: &NoiseFloor,
) -> Result<Comparison> {
    let load = analyzer.options().load.clone();
    let before = load_photo(before, &load)?;
    let after = load_photo(after, &load)?;
    compare_photos(analyzer, before, after, options, floor)
}

/// Compares two photos already in memory (see the module docs for the steps).
pub fn compare_photos(
    analyzer: &mut Analyzer,
    before: Photo,
    after: Photo,
    options: &CompareOptions,
    floor: &NoiseFloor,
) -> Result<Comparison> {
    let charts = load_charts(options)?;
    let located_before = analyzer.locate(before)?;
    let located_after = analyzer.locate(after)?;
    let mut notes = Vec::new();

    // 2. Registration, on the raw pixels (it works on log-luminance: exposure drops out).
    let (wb, hb) = located_before.checked.photo.pixels.dimensions();
    let (wa, ha) = located_after.checked.photo.pixels.dimensions();
    let roi = skin_mask(&located_before.regions.regions, wb, hb);
    let landmark_points = |l: &Located| {
        l.face.as_ref().map(|f| {
            f.landmarks
                .points
                .iter()
                .map(|p| [f64::from(p[0]), f64::from(p[1])])
                .collect::<Vec<_>>()
        })
    };
    let (lb, la) = (
        landmark_points(&located_before),
        landmark_points(&located_after),
    );
    let landmarks = lb.as_deref().zip(la.as_deref());
    if located_before.face.is_some() != located_after.face.is_some() {
        notes.push(
            "a face was found in only one photo: registered from skin texture alone".to_string(),
        );
    }
    let alignment = register::register_pair(
        &located_before.checked.photo.pixels,
        &located_after.checked.photo.pixels,
        landmarks,
        &roi,
        located_before.regions.scale.px_per_mm,
    );

    // Same skin in both: BEFORE's regions cut to what AFTER shows, then mapped into AFTER.
    let t = alignment.transform;
    let after_footprint = register::warp_mask_to_after(
        &GrayImage::from_pixel(wb, hb, image::Luma([255])),
        &t,
        wa,
        ha,
    );
    let shown_in_after = register::warp_mask_to_after(&after_footprint, &t.inverse(), wb, hb);
    let mut regions_before = Vec::new();
    let mut regions_after = Vec::new();
    let mut region_reasons = Vec::new();
    // The whole frame has no anatomical extent to lose: its comparable part *is* the overlap.
    let whole_frame = located_before.regions.mode_used == "whole";
    for region in &located_before.regions.regions {
        let full = region.pixel_count();
        let mut kept = region.clone();
        intersect(&mut kept.mask, &shown_in_after);
        let overlap = if full == 0 {
            0.0
        } else {
            kept.pixel_count() as f64 / full as f64
        };
        let mut mapped = RegionMask {
            name: region.name.clone(),
            mask: register::warp_mask_to_after(&kept.mask, &t, wa, ha),
            visible: region.visible,
        };
        let hidden_in_after = located_after
            .regions
            .regions
            .iter()
            .find(|r| r.name == region.name)
            .is_some_and(|r| !r.visible)
            && located_after.face.is_some();
        let reason = if !region.visible {
            Some("not visible in BEFORE".to_string())
        } else if hidden_in_after {
            Some("not visible in AFTER".to_string())
        } else if overlap < options.min_region_overlap && !whole_frame {
            Some(format!(
                "AFTER shows only {:.0}% of it (need {:.0}%)",
                100.0 * overlap,
                100.0 * options.min_region_overlap
            ))
        } else {
            None
        };
        if reason.is_some() {
            kept.visible = false;
            mapped.visible = false;
        }
        region_reasons.push(reason);
        regions_before.push(kept);
        regions_after.push(mapped);
    }

    // 3. Colour, measured on the common skin.
    let common_before = skin_mask(&regions_before, wb, hb);
    let common_after = skin_mask(&regions_after, wa, ha);
    let skin_b = color::skin_reference(&located_before.checked.photo.pixels, &common_before);
    let skin_a = color::skin_reference(&located_after.checked.photo.pixels, &common_after);
    let color = match (options.normalization, charts) {
        (Normalization::None, _) => ColorNormalization::none(skin_b, skin_a),
        (Normalization::Skin, _) => ColorNormalization::skin(skin_b, skin_a),
        (Normalization::Chart, Some((chart_b, chart_a))) => {
            let fit_b = color::fit_chart(&located_before.checked.photo.pixels, &chart_b)?;
            let fit_a = color::fit_chart(&located_after.checked.photo.pixels, &chart_a)?;
            ColorNormalization::chart(fit_b, fit_a, skin_b, skin_a)
        }
        (Normalization::Chart, None) => {
            return Err(Error::InvalidSetting {
                name: "normalize",
                message: "chart normalization needs --chart-before and --chart-after".into(),
            });
        }
    };

    // 5a. Pair checks that read the raw photos.
    let mut pair_quality = QualityReport {
        passed: true,
        ..QualityReport::default()
    };
    pair_quality.push_max(
        "registration_residual_p90_mm",
        alignment.residual_p90_mm,
        register::MAX_RESIDUAL_P90_MM,
    );
    let scale_b = located_before.regions.scale;
    let px_per_mm_after = if alignment.aligned {
        scale_b.px_per_mm / alignment.scale
    } else {
        located_after.regions.scale.px_per_mm
    };
    let sharp_b = sharpness(
        &located_before.checked.photo.pixels,
        &common_before,
        scale_b.px_per_mm,
    );
    let sharp_a = sharpness(
        &located_after.checked.photo.pixels,
        &common_after,
        px_per_mm_after,
    );
    if let (Some(b), Some(a)) = (sharp_b, sharp_a) {
        let ratio = if a.max(b) > 0.0 {
            a.min(b) / a.max(b)
        } else {
            1.0
        };
        pair_quality.push(
            "sharpness_ratio",
            ratio,
            format!(">= {}", options.limits.min_sharpness_ratio),
            ratio >= options.limits.min_sharpness_ratio,
        );
    }
    if let (Some(fb), Some(fa)) = (&located_before.face, &located_after.face) {
        let lim = options.limits;
        let dyaw = fa.pose.yaw_deg - fb.pose.yaw_deg;
        let dpitch = fa.pose.pitch_deg - fb.pose.pitch_deg;
        pair_quality.push_range(
            "yaw_difference_deg",
            dyaw,
            (-lim.max_yaw_difference_deg, lim.max_yaw_difference_deg),
        );
        pair_quality.push_range(
            "pitch_difference_deg",
            dpitch,
            (-lim.max_pitch_difference_deg, lim.max_pitch_difference_deg),
        );
    }
    pair_quality.push_range(
        "scale_ratio",
        px_per_mm_after / scale_b.px_per_mm,
        options.limits.scale_ratio,
    );
    if let Some(de) = color.skin_delta_e2000_raw {
        pair_quality.push_max("skin_delta_e2000", de, options.limits.max_skin_delta_e2000);
    }

    // 4. Measure both, corrected, each in its own frame at the same physical scale.
    let scale_a = Scale {
        px_per_mm: px_per_mm_after,
        ..scale_b
    };
    if alignment.aligned {
        notes.push(format!(
            "AFTER's scale {px_per_mm_after:.3} px/mm = BEFORE's {:.3} / registration scale {:.4}",
            scale_b.px_per_mm, alignment.scale
        ));
    }
    let before = measure_side(
        analyzer,
        located_before,
        regions_before,
        scale_b,
        &color.correction_before,
    )?;
    let after = measure_side(
        analyzer,
        located_after,
        regions_after,
        scale_a,
        &color.correction_after,
    )?;

    let regions = region_changes(&before, &after, &region_reasons, floor);
    Ok(Comparison {
        before,
        after,
        alignment,
        color,
        pair_quality,
        regions,
        notes,
    })
}

/// Loads both chart files when chart normalization is asked for.
fn load_charts(options: &CompareOptions) -> Result<Option<(color::ColorChart, color::ColorChart)>> {
    if options.normalization != Normalization::Chart {
        return Ok(None);
    }
    match (&options.chart_before, &options.chart_after) {
        (Some(b), Some(a)) => Ok(Some((color::load_chart(b)?, color::load_chart(a)?))),
        _ => Err(Error::InvalidSetting {
            name: "normalize",
            message: "chart normalization needs --chart-before and --chart-after".into(),
        }),
    }
}

/// Sets `mask` to 0 wherever `keep` is 0.
fn intersect(mask: &mut GrayImage, keep: &GrayImage) {
    for (m, k) in mask.pixels_mut().zip(keep.pixels()) {
        if k.0[0] == 0 {
            m.0[0] = 0;
        }
    }
}

/// Applies a colour correction and measures a located photo on given regions and scale.
fn measure_side(
    analyzer: &mut Analyzer,
    located: Located,
    regions: Vec<RegionMask>,
    scale: Scale,
    correction: &color::ColorCorrection,
) -> Result<Analysis> {
    let Located {
        mut checked,
        regions: found,
        face,
    } = located;
    if *correction != color::ColorCorrection::identity() {
        checked.photo.pixels = correction.apply(&checked.photo.pixels);
    }
    let set = RegionSet {
        regions,
        scale,
        mode_used: found.mode_used,
        notes: found.notes,
    };
    analyzer.measure(checked, set, face.as_ref().map(|f| f.summary()))
}

/// Per region, every numeric metric's change and its significance.
fn region_changes(
    before: &Analysis,
    after: &Analysis,
    reasons: &[Option<String>],
    floor: &NoiseFloor,
) -> Vec<RegionChange> {
    let mm2 = |a: &Analysis, r: &RegionMask| {
        let s = a.regions.scale.px_per_mm;
        r.pixel_count() as f64 / (s * s)
    };
    before
        .regions
        .regions
        .iter()
        .zip(&after.regions.regions)
        .enumerate()
        .map(|(i, (rb, ra))| {
            let mut reason = reasons.get(i).cloned().flatten();
            let (mb, ma) = (&before.metrics[i], &after.metrics[i]);
            let scored = before.detections[i].is_some() && after.detections[i].is_some();
            if reason.is_none() && !scored {
                reason = Some("not scored in one of the photos (no skin left)".into());
            }
            let mut metrics: BTreeMap<String, BTreeMap<String, MetricChange>> = BTreeMap::new();
            let mut significant = Vec::new();
            if reason.is_none() {
                let after_values: BTreeMap<String, f64> = flatten_metrics(ma).into_iter().collect();
                let before_values = flatten_metrics(mb);
                let none_before =
                    |count: &str| before_values.iter().any(|(n, v)| n == count && *v == 0.0);
                for (name, vb) in before_values.iter().cloned() {
                    let Some(&va) = after_values.get(&name) else {
                        continue;
                    };
                    let mut change = metric_change(floor, &name, vb, va);
                    let undefined = MEANS_OVER_FEATURES.iter().any(|(mean, count)| {
                        *mean == name
                            && (none_before(count) || after_values.get(*count) == Some(&0.0))
                    });
                    if undefined {
                        change.significant = false;
                        change.direction = "undefined".into();
                    }
                    if change.significant {
                        significant.push(name.clone());
                    }
                    let (group, field) = name.split_once('.').unwrap_or(("", name.as_str()));
                    metrics
                        .entry(group.to_string())
                        .or_default()
                        .insert(field.to_string(), change);
                }
            }
            RegionChange {
                name: rb.name.clone(),
                comparable: reason.is_none(),
                reason,
                area_mm2_before: mm2(before, rb),
                area_mm2_after: mm2(after, ra),
                metrics,
                significant,
            }
        })
        .collect()
}

/// Metrics that are means over the features found, with the count that must be non-zero on
/// both sides for the mean to exist (they read 0 when nothing was found, which is not a size
/// or a contrast of 0).
const MEANS_OVER_FEATURES: [(&str, &str); 2] = [
    ("pores.mean_diameter_mm", "pores.count"),
    (
        "hyperpigmentation.mean_contrast",
        "hyperpigmentation.spot_count",
    ),
];

/// The change of one metric, judged against the noise floor.
pub fn metric_change(floor: &NoiseFloor, metric: &str, before: f64, after: f64) -> MetricChange {
    let delta = after - before;
    let f = floor.floor(metric);
    let mdc = f.map(|f| f.absolute.max(f.relative * before.abs()));
    let significant = floor.significant(metric, delta, before).unwrap_or(false);
    let direction = match (significant, f.map(|f| f.better)) {
        (false, _) => "unchanged",
        (true, Some(Better::Lower)) if delta < 0.0 => "improved",
        (true, Some(Better::Higher)) if delta > 0.0 => "improved",
        (true, Some(Better::Lower | Better::Higher)) => "worsened",
        (true, _) => "changed",
    };
    MetricChange {
        before,
        after,
        delta,
        relative_delta: (before != 0.0).then(|| delta / before.abs()),
        minimal_detectable_change: mdc,
        significant,
        direction: direction.into(),
    }
}

impl Comparison {
    /// Whether the deltas can be trusted, and if not, why.
    pub fn reliability(&self) -> (bool, Vec<String>) {
        let mut reasons = Vec::new();
        if !self.alignment.aligned {
            reasons.extend(
                self.alignment
                    .problems
                    .iter()
                    .map(|p| format!("registration: {p}")),
            );
        }
        for c in self.pair_quality.checks.iter().filter(|c| !c.passed) {
            reasons.push(format!(
                "pair check {}: {:.3} outside {}",
                c.name, c.value, c.limit
            ));
        }
        for (which, a) in [("BEFORE", &self.before), ("AFTER", &self.after)] {
            for c in a.checked.quality.checks.iter().filter(|c| !c.passed) {
                reasons.push(format!(
                    "{which} check {}: {:.3} outside {}",
                    c.name, c.value, c.limit
                ));
            }
        }
        (reasons.is_empty(), reasons)
    }

    /// The JSON document.
    pub fn document(
        &self,
        analyzer: &Analyzer,
        options: &CompareOptions,
        floor: NoiseFloorInfo,
    ) -> CompareDocument {
        let (reliable, unreliable_reasons) = self.reliability();
        let mut notes = self.notes.clone();
        notes.extend(self.color.notes.iter().cloned());
        CompareDocument {
            schema_version: COMPARE_SCHEMA_VERSION,
            tool: ToolInfo::current(),
            status: Status::Ok,
            error: None,
            model: analyzer.model_info(),
            normalization: options.normalization,
            limits: options.limits,
            noise_floor: floor,
            reliable,
            unreliable_reasons,
            alignment: Some(self.alignment.clone()),
            color: Some(self.color.clone()),
            pair_quality: self.pair_quality.clone(),
            regions: self.regions.clone(),
            before: analyzer.document_for(&self.before),
            after: analyzer.document_for(&self.after),
            notes,
        }
    }
}

/// The document of a comparison that could not be made (a photo failed to load, no face, a
/// bad chart file): both photos' documents say which.
pub fn failed_document(
    analyzer: &Analyzer,
    before: &Path,
    after: &Path,
    options: &CompareOptions,
    floor: NoiseFloorInfo,
    error: &Error,
) -> CompareDocument {
    CompareDocument {
        schema_version: COMPARE_SCHEMA_VERSION,
        tool: ToolInfo::current(),
        status: Status::Failed,
        error: Some(ErrorInfo::from(error)),
        model: analyzer.model_info(),
        normalization: options.normalization,
        limits: options.limits,
        noise_floor: floor,
        reliable: false,
        unreliable_reasons: vec![error.to_string()],
        alignment: None,
        color: None,
        pair_quality: QualityReport::default(),
        regions: Vec::new(),
        before: analyzer.failed_document(before, error),
        after: analyzer.failed_document(after, error),
        notes: Vec::new(),
    }
}

/// Side-by-side picture of the aligned pair: BEFORE with what was counted, AFTER registered
/// into BEFORE's frame with what was counted, and the change: BEFORE in gray with findings that
/// appeared (red), disappeared (green) or stayed (yellow), and each region's outline coloured by
/// its verdict (red: a significant worsening, green: only significant improvements, gray:
/// nothing significant, dark gray: not comparable). Each panel is scaled to at most
/// `max_panel_height` pixels high.
pub fn render_overlay(comparison: &Comparison, max_panel_height: u32) -> RgbImage {
    let before_panel = crate::overlay::render(&comparison.before);
    let (w, h) = before_panel.dimensions();
    let t: Similarity = comparison.alignment.transform;
    let after_panel = warp_rgb8(&crate::overlay::render(&comparison.after), &t, w, h);

    let found_before = crate::overlay::findings_mask(&comparison.before);
    let found_after = register::warp_mask_to_after(
        &crate::overlay::findings_mask(&comparison.after),
        &t.inverse(),
        w,
        h,
    );
    let photo = &comparison.before.checked.photo.pixels;
    let mut change = RgbImage::from_fn(w, h, |x, y| {
        let [r, g, b] = photo.get_pixel(x, y).0;
        let v = ((0.2126 * r + 0.7152 * g + 0.0722 * b).clamp(0.0, 1.0) * 200.0) as u8;
        let (fb, fa) = (
            found_before.get_pixel(x, y).0[0] != 0,
            found_after.get_pixel(x, y).0[0] != 0,
        );
        match (fb, fa) {
            (false, true) => Rgb([230, 30, 30]),
            (true, false) => Rgb([30, 200, 60]),
            (true, true) => Rgb([230, 200, 40]),
            (false, false) => Rgb([v, v, v]),
        }
    });
    for (region, verdict) in comparison
        .before
        .regions
        .regions
        .iter()
        .zip(&comparison.regions)
    {
        let worse = verdict
            .metrics
            .values()
            .flat_map(|m| m.values())
            .any(|c| c.direction == "worsened");
        let better = verdict
            .metrics
            .values()
            .flat_map(|m| m.values())
            .any(|c| c.direction == "improved");
        let color = match (verdict.comparable, worse, better) {
            (false, _, _) => [70, 70, 70],
            (true, true, _) => [255, 40, 40],
            (true, false, true) => [40, 230, 80],
            _ => [170, 170, 170],
        };
        crate::face::draw_mask_outline(&mut change, region, color);
    }
    let panels = [before_panel, after_panel, change];
    let scale = (f64::from(max_panel_height) / f64::from(h)).min(1.0);
    let (pw, ph) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    let gap = 8;
    let mut out = RgbImage::from_pixel(3 * pw + 2 * gap, ph, Rgb([255, 255, 255]));
    for (i, panel) in panels.iter().enumerate() {
        let small = if scale < 1.0 {
            image::imageops::resize(panel, pw, ph, image::imageops::FilterType::Triangle)
        } else {
            panel.clone()
        };
        image::imageops::replace(&mut out, &small, i64::from(i as u32 * (pw + gap)), 0);
    }
    out
}

/// Warps an 8-bit picture of AFTER into BEFORE's frame (for display only).
fn warp_rgb8(img: &RgbImage, t: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    let float = Rgb32FImage::from_fn(img.width(), img.height(), |x, y| {
        Rgb(img.get_pixel(x, y).0.map(|v| f32::from(v) / 255.0))
    });
    let (warped, valid) = register::warp_image(&float, t, out_w, out_h);
    RgbImage::from_fn(out_w, out_h, |x, y| {
        if valid.get_pixel(x, y).0[0] == 0 {
            Rgb([40, 40, 40])
        } else {
            Rgb(warped
                .get_pixel(x, y)
                .0
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress_report::MetricFloor;

    fn floor() -> NoiseFloor {
        let mut metrics = BTreeMap::new();
        for (name, absolute, relative, better) in [
            ("pores.count", 3.0, 0.2, Better::Lower),
            ("tone.ita_deg", 2.0, 0.0, Better::Neither),
        ] {
            metrics.insert(
                name.to_string(),
                MetricFloor {
                    absolute,
                    relative,
                    better,
                    samples: None,
                },
            );
        }
        NoiseFloor {
            schema_version: 1,
            provisional: false,
            description: String::new(),
            metrics,
            measured: None,
        }
    }

    #[test]
    fn a_change_is_significant_only_beyond_both_floors_and_gets_a_direction() {
        let f = floor();
        // 40 → 30: |Δ| 10 > 3 and > 0.2·40 = 8.
        let c = metric_change(&f, "pores.count", 40.0, 30.0);
        assert!(c.significant);
        assert_eq!(c.direction, "improved");
        assert_eq!(c.minimal_detectable_change, Some(8.0));
        assert!((c.relative_delta.unwrap() + 0.25).abs() < 1e-12);
        // 40 → 47: 7 < 8, not significant.
        let c = metric_change(&f, "pores.count", 40.0, 47.0);
        assert!(!c.significant);
        assert_eq!(c.direction, "unchanged");
        // 5 → 9: 4 > 3 and > 1: significant worsening.
        assert_eq!(
            metric_change(&f, "pores.count", 5.0, 9.0).direction,
            "worsened"
        );
        // Tone has no better direction.
        assert_eq!(
            metric_change(&f, "tone.ita_deg", 30.0, 25.0).direction,
            "changed"
        );
        // No floor entry: never significant; from 0: no relative change.
        let c = metric_change(&f, "redness.severity", 0.0, 50.0);
        assert!(!c.significant && c.minimal_detectable_change.is_none());
        assert!(c.relative_delta.is_none());
    }
}

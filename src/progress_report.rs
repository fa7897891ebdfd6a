//! Stage 10: a subject's documents over time → [`SubjectReport`] (`OUT/subjects/<id>.json`,
//! `schema_version` 1).
//!
//! Why a stage of its own: a clinician's question is not "what is the pore count" but "did it
//! change, by more than the measurement's own noise, and is anything getting worse". This
//! module orders a subject's sessions by date (the first is the baseline), flattens every
//! region's metrics into named numbers (`pores.count`, `hyperpigmentation.area_fraction`,
//! `tone.ita_deg`, ...), and for each view × region × metric gives the value, its change from
//! the baseline and from the previous session (absolute and relative), whether each change
//! exceeds the noise floor, and a least-squares trend per 30 days. Flags point at what needs a
//! look: `possible_pih`, `worsening`, `qc_failed`, `not_comparable`.
//!
//! **Noise floor (provisional).** Whether a change is real is judged against a minimal
//! detectable change per metric read from `models/noise_floor.json` ([`NoiseFloor`]). Until
//! repeatability has been measured on repeat photographs (the compare / noise-floor issue), the
//! values there are conservative guesses, marked `"provisional": true` and copied into every
//! report's provenance. A change is significant when it exceeds both the absolute floor and the
//! relative floor times the reference value's magnitude.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::regions::ScaleSource;
use crate::report::{AnalysisDocument, ErrorInfo, ModelInfo, Settings, Status, ToolInfo};
use crate::study::{Date, Issue, Study, StudyPhoto};

/// Version of the subject report layout.
pub const PROGRESS_SCHEMA_VERSION: u32 = 1;

/// File name of the noise floor of face photos (face regions) inside the models folder.
pub const NOISE_FLOOR_FILE: &str = "noise_floor.json";
/// File name of the noise floor of close-ups (the whole frame or custom regions at the photo's
/// given scale) inside the models folder.
pub const NOISE_FLOOR_CLOSEUP_FILE: &str = "noise_floor_closeup.json";

/// The default noise floor for a way of choosing regions: repeatability depends on the capture.
/// A face portrait at ≈ 3.5 px/mm and a close-up at 10 px/mm are different instruments: pores
/// near the resolution limit and facial relief make the portraits' counts far less repeatable.
/// `whole` and custom regions are taken as close-ups, `face` and `auto` as portraits.
pub fn default_noise_floor(
    models_dir: &Path,
    regions: crate::regions::RegionMode,
    custom_regions: bool,
) -> PathBuf {
    if custom_regions || regions == crate::regions::RegionMode::Whole {
        models_dir.join(NOISE_FLOOR_CLOSEUP_FILE)
    } else {
        models_dir.join(NOISE_FLOOR_FILE)
    }
}

/// Which direction of change is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Less is better (counts, areas, severities).
    Lower,
    /// More is better.
    Higher,
    /// Neither (skin tone: a change is reported, not judged).
    Neither,
}

/// The minimal detectable change of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricFloor {
    /// Smallest absolute change taken as real, in the metric's unit.
    pub absolute: f64,
    /// Smallest change relative to the reference value's magnitude.
    pub relative: f64,
    /// Which direction is an improvement.
    pub better: Better,
    /// Number of nuisance-only region pairs the values were measured on (absent for
    /// documented guesses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// `models/noise_floor.json`: minimal detectable changes per metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoiseFloor {
    /// Layout version (1).
    pub schema_version: u32,
    /// True while the values are documented guesses rather than measured repeatability.
    pub provisional: bool,
    /// Where the values come from.
    pub description: String,
    /// Per metric (`pores.count`), or per metric field for any group (`*.severity`).
    pub metrics: BTreeMap<String, MetricFloor>,
    /// How the file was made: the command that regenerates it, the pairs, the models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<NoiseFloorProvenance>,
}

/// Where a measured noise floor comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoiseFloorProvenance {
    /// The command that regenerates the file.
    pub command: String,
    /// sha256 of the skin model the pairs were measured with; the floor belongs to that model.
    pub skin_model_sha256: String,
    /// Version of dermatrack that measured it.
    pub tool_version: String,
    /// Nuisance-only photo pairs measured.
    pub pairs: usize,
    /// The photos the pairs were made from (file names; phantoms by tone and seed).
    pub sources: Vec<String>,
    /// The nuisances drawn for each pair, as ranges.
    pub nuisances: String,
    /// How `absolute` and `relative` were derived from the measured changes.
    pub method: String,
}

/// The noise floor's identity, for provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoiseFloorInfo {
    /// The file read.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Copied from the file.
    pub provisional: bool,
}

impl NoiseFloor {
    /// Reads and checks a noise-floor file.
    pub fn load(path: &Path) -> Result<NoiseFloor> {
        let bad = |message: String| Error::Model {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the noise floor: {e}")))?;
        let floor: NoiseFloor =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid noise floor: {e}")))?;
        if floor.schema_version != 1 {
            return Err(bad(format!(
                "schema_version {} (expected 1)",
                floor.schema_version
            )));
        }
        for (name, m) in &floor.metrics {
            if !(m.absolute.is_finite()
                && m.absolute >= 0.0
                && m.relative.is_finite()
                && m.relative >= 0.0)
            {
                return Err(bad(format!(
                    "{name}: absolute and relative must be finite and ≥ 0"
                )));
            }
        }
        Ok(floor)
    }

    /// The floor of a metric: its own entry, else the `*.<field>` entry.
    pub fn floor(&self, metric: &str) -> Option<&MetricFloor> {
        self.metrics.get(metric).or_else(|| {
            let field = metric.rsplit('.').next()?;
            self.metrics.get(&format!("*.{field}"))
        })
    }

    /// Whether a change `delta` from `reference` exceeds the floor; `None` when the metric has
    /// no floor.
    pub fn significant(&self, metric: &str, delta: f64, reference: f64) -> Option<bool> {
        let f = self.floor(metric)?;
        Some(delta.abs() > f.absolute && delta.abs() > f.relative * reference.abs())
    }

    /// Whether a change is a significant improvement; `None` when the metric has no floor or
    /// no better direction.
    pub fn improved(&self, metric: &str, delta: f64, reference: f64) -> Option<bool> {
        let sign = match self.floor(metric)?.better {
            Better::Lower => -1.0,
            Better::Higher => 1.0,
            Better::Neither => return None,
        };
        Some(self.significant(metric, delta, reference)? && delta * sign > 0.0)
    }

    /// Identity for provenance.
    pub fn describe(&self, path: &Path) -> NoiseFloorInfo {
        NoiseFloorInfo {
            path: path.display().to_string(),
            sha256: crate::io::sha256_file(path).unwrap_or_default(),
            provisional: self.provisional,
        }
    }
}

/// A model, by name and sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelRef {
    /// Name ("skin-v1", "face_detector", ...).
    pub name: String,
    /// sha256 of the `.onnx` file.
    pub sha256: String,
    /// Version, when the manifest has one.
    pub version: Option<String>,
}

/// What produced a report, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    /// Software.
    pub tool: ToolInfo,
    /// Skin model first, then the face models.
    pub models: Vec<ModelRef>,
    /// ONNX Runtime version.
    pub onnxruntime: String,
    /// Settings of the run (a manifest's per-photo `px_per_mm` is in each photo's entry).
    pub settings: Settings,
    /// When the run happened (RFC 3339, UTC).
    pub generated_at: String,
    /// The noise floor used.
    pub noise_floor: Option<NoiseFloorInfo>,
}

impl Provenance {
    /// Provenance of a run now.
    pub fn new(skin: &ModelInfo, faces: &[(String, String)], settings: Settings) -> Provenance {
        let mut models = vec![ModelRef {
            name: skin.name.clone(),
            sha256: skin.sha256.clone(),
            version: Some(skin.version.clone()),
        }];
        models.extend(faces.iter().map(|(name, sha256)| ModelRef {
            name: name.clone(),
            sha256: sha256.clone(),
            version: None,
        }));
        Provenance {
            tool: ToolInfo::current(),
            models,
            onnxruntime: skin.runtime.version.clone(),
            settings,
            generated_at: rfc3339_utc(SystemTime::now()),
            noise_floor: None,
        }
    }
}

/// Formats a time as RFC 3339 in UTC with whole seconds, e.g. `2026-01-15T09:30:00Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::study::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Every numeric metric of a region, flattened to `group.field` names in document order.
///
/// Works on the serialised form, so metrics added later to [`crate::metrics::RegionMetrics`]
/// appear without changes here; text fields (the ITA° category) are skipped.
pub fn flatten_metrics(metrics: &crate::metrics::RegionMetrics) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(serde_json::Value::Object(groups)) = serde_json::to_value(metrics) else {
        return out;
    };
    for (group, value) in groups {
        match value {
            serde_json::Value::Object(fields) => {
                for (field, v) in fields {
                    if let Some(x) = v.as_f64() {
                        out.push((format!("{group}.{field}"), x));
                    }
                }
            }
            v => {
                if let Some(x) = v.as_f64() {
                    out.push((group, x));
                }
            }
        }
    }
    out
}

/// The report of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectReport {
    /// Layout version: [`PROGRESS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Subject identifier as given.
    pub subject: String,
    /// Treatment arm (of the subject's first photo).
    pub arm: String,
    /// Tool, models, settings, time, noise floor.
    pub provenance: Provenance,
    /// Sessions in date order; index 0 is the baseline.
    pub sessions: Vec<SessionEntry>,
    /// One series per view × region × metric.
    pub series: Vec<Series>,
    /// Things to look at, in session order.
    pub flags: Vec<Flag>,
    /// The study's validation issues about this subject.
    pub issues: Vec<Issue>,
}

/// One session of a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionEntry {
    /// Position in date order (0 = baseline).
    pub index: usize,
    /// Session identifier.
    pub session: String,
    /// Date.
    pub date: Date,
    /// Days since the baseline session.
    pub days_from_baseline: i64,
    /// Treatment recorded for this session, if any.
    pub treatment: Option<String>,
    /// Whether a treatment was given at this session (assumed when not recorded).
    pub treated: bool,
    /// The session's photos.
    pub photos: Vec<SessionPhoto>,
}

/// One photo of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionPhoto {
    /// View.
    pub view: String,
    /// Path relative to the study.
    pub path: String,
    /// sha256 of the file.
    pub sha256: Option<String>,
    /// Measured or failed.
    pub status: Status,
    /// Why it failed.
    pub error: Option<ErrorInfo>,
    /// Whether every capture-quality check passed (`None` when failed).
    pub quality_passed: Option<bool>,
    /// Scale used.
    pub px_per_mm: Option<f64>,
    /// Where the scale came from.
    pub px_per_mm_source: Option<ScaleSource>,
    /// Region mode used ("face" or "whole").
    pub regions_mode: Option<String>,
}

/// A change against a reference session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    /// The reference session's index.
    pub reference_session: usize,
    /// value − reference.
    pub absolute: f64,
    /// (value − reference) / |reference|; `None` when the reference is 0.
    pub relative: Option<f64>,
    /// Beyond the noise floor (`None`: the metric has no floor).
    pub significant: Option<bool>,
    /// A significant change in the better direction (`None`: no floor or no direction).
    pub improved: Option<bool>,
}

/// One session's value in a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Point {
    /// Session index.
    pub session: usize,
    /// Session date.
    pub date: Date,
    /// The value (`None`: photo missing, failed or region hidden).
    pub value: Option<f64>,
    /// Change from the series' baseline (`None` at the baseline, or when not comparable).
    pub vs_baseline: Option<Change>,
    /// Change from the previous session with a value (`None` when there is none, or not
    /// comparable).
    pub vs_previous: Option<Change>,
}

/// One metric of one region of one view over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Series {
    /// View.
    pub view: String,
    /// Region.
    pub region: String,
    /// Flattened metric name, e.g. `pores.count`.
    pub metric: String,
    /// The noise floor applied (`None`: no floor, nothing is called significant).
    pub noise_floor: Option<MetricFloor>,
    /// The first session with a value.
    pub baseline_session: Option<usize>,
    /// Least-squares slope over the comparable sessions, per 30 days (`None` with fewer than
    /// two dates).
    pub trend_per_30_days: Option<f64>,
    /// One point per session.
    pub points: Vec<Point>,
}

/// What a flag says.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Hyperpigmentation area or severity rose significantly since the previous session, which
    /// was a treatment session: possible post-inflammatory hyperpigmentation.
    PossiblePih,
    /// A severity rose significantly since the baseline.
    Worsening,
    /// The photo failed a capture-quality check; its numbers are less reliable.
    QcFailed,
    /// The photo cannot be compared with the baseline (it failed, or its scale source or region
    /// mode differs).
    NotComparable,
}

/// Something for a person to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Flag {
    /// What.
    pub kind: FlagKind,
    /// Session index.
    pub session: usize,
    /// Session date.
    pub date: Date,
    /// View.
    pub view: String,
    /// Region, when it concerns one.
    pub region: Option<String>,
    /// Metric, when it concerns one.
    pub metric: Option<String>,
    /// Explanation with numbers.
    pub detail: String,
}

/// Whether a recorded treatment means one was given: empty, `none`, `no`, `0`, `false`, `-`
/// mean no treatment; a missing value means "not recorded" and is taken as treated.
fn treated(treatment: Option<&str>) -> bool {
    treatment.is_none_or(|t| {
        !matches!(
            t.trim().to_ascii_lowercase().as_str(),
            "" | "none" | "no" | "0" | "false" | "-"
        )
    })
}

/// Metrics whose significant rise after a treatment session raises `possible_pih`.
pub const PIH_METRICS: [&str; 2] = [
    "hyperpigmentation.area_fraction",
    "hyperpigmentation.severity",
];

type Comparability = (Option<ScaleSource>, Option<String>);

fn comparability(doc: &AnalysisDocument) -> Comparability {
    (doc.image.px_per_mm_source, doc.regions_mode.clone())
}

fn change(
    noise: &NoiseFloor,
    metric: &str,
    reference_session: usize,
    reference: f64,
    value: f64,
) -> Change {
    let absolute = value - reference;
    Change {
        reference_session,
        absolute,
        relative: (reference != 0.0).then(|| absolute / reference.abs()),
        significant: noise.significant(metric, absolute, reference),
        improved: noise.improved(metric, absolute, reference),
    }
}

/// Least-squares slope of `(day, value)` points, per 30 days.
pub fn slope_per_30_days(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| 30.0 * sxy / sxx)
}

/// Builds every subject's report. `documents` is index-aligned with `study.photos`; photos
/// marked as duplicates are left out.
pub fn subject_reports(
    study: &Study,
    documents: &[AnalysisDocument],
    noise: &NoiseFloor,
    provenance: &Provenance,
) -> Vec<SubjectReport> {
    let mut by_subject: BTreeMap<&str, Vec<(&StudyPhoto, &AnalysisDocument)>> = BTreeMap::new();
    for (p, d) in study.photos.iter().zip(documents) {
        if p.duplicate_of.is_none() {
            by_subject.entry(&p.subject).or_default().push((p, d));
        }
    }
    by_subject
        .into_iter()
        .map(|(subject, photos)| {
            let issues = study
                .issues
                .iter()
                .filter(|i| i.subject.as_deref() == Some(subject))
                .cloned()
                .collect();
            subject_report(subject, &photos, noise, provenance, issues)
        })
        .collect()
}

fn subject_report(
    subject: &str,
    photos: &[(&StudyPhoto, &AnalysisDocument)],
    noise: &NoiseFloor,
    provenance: &Provenance,
    issues: Vec<Issue>,
) -> SubjectReport {
    // Sessions in (date, identifier) order.
    let mut keys: Vec<(Date, &str)> = photos
        .iter()
        .map(|(p, _)| (p.date, p.session.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    keys.sort();
    let baseline_day = keys.first().map_or(0, |k| k.0.days);
    let mut sessions: Vec<SessionEntry> = keys
        .iter()
        .enumerate()
        .map(|(index, (date, session))| {
            let treatment = photos
                .iter()
                .find(|(p, _)| p.date == *date && p.session == *session)
                .and_then(|(p, _)| p.treatment.clone());
            SessionEntry {
                index,
                session: session.to_string(),
                date: *date,
                days_from_baseline: date.days - baseline_day,
                treated: treated(treatment.as_deref()),
                treatment,
                photos: Vec::new(),
            }
        })
        .collect();
    let session_of = |p: &StudyPhoto| {
        keys.iter()
            .position(|k| k.0 == p.date && k.1 == p.session)
            .expect("every photo's session is listed")
    };
    let views: BTreeSet<&str> = photos.iter().map(|(p, _)| p.view.as_str()).collect();
    // The document of each view at each session (the first photo of that view).
    let mut grid: BTreeMap<&str, Vec<Option<&AnalysisDocument>>> = views
        .iter()
        .map(|v| (*v, vec![None; sessions.len()]))
        .collect();
    for (p, d) in photos {
        let s = session_of(p);
        sessions[s].photos.push(SessionPhoto {
            view: p.view.clone(),
            path: p.display.clone(),
            sha256: p.sha256.clone(),
            status: d.status,
            error: d.error.clone(),
            quality_passed: (d.status == Status::Ok).then_some(d.quality.passed),
            px_per_mm: d.image.px_per_mm,
            px_per_mm_source: d.image.px_per_mm_source,
            regions_mode: d.regions_mode.clone(),
        });
        let cell = &mut grid.get_mut(p.view.as_str()).expect("view listed")[s];
        if cell.is_none() {
            *cell = Some(d);
        }
    }

    let mut series = Vec::new();
    let mut flags = Vec::new();
    for (view, docs) in &grid {
        let ok = |s: usize| docs[s].filter(|d| d.status == Status::Ok);
        let view_baseline = (0..sessions.len()).find_map(|s| ok(s).map(comparability));
        for (s, doc) in docs.iter().enumerate() {
            let Some(doc) = doc else { continue };
            let flag = |kind, detail: String| Flag {
                kind,
                session: s,
                date: sessions[s].date,
                view: view.to_string(),
                region: None,
                metric: None,
                detail,
            };
            if let Some(e) = &doc.error {
                flags.push(flag(
                    FlagKind::NotComparable,
                    format!("photo failed: {}", e.message),
                ));
                continue;
            }
            if !doc.quality.passed {
                let failed: Vec<&str> = doc
                    .quality
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.name.as_str())
                    .collect();
                flags.push(flag(
                    FlagKind::QcFailed,
                    format!("capture-quality checks failed: {}", failed.join(", ")),
                ));
            }
            if let Some(base) = &view_baseline
                && comparability(doc) != *base
            {
                flags.push(flag(
                    FlagKind::NotComparable,
                    format!(
                        "scale source / region mode {:?} differs from the baseline's {:?}",
                        comparability(doc),
                        base
                    ),
                ));
            }
        }

        // Values per (region, metric), in first-appearance order.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut values: BTreeMap<(String, String), Vec<Option<f64>>> = BTreeMap::new();
        for s in 0..sessions.len() {
            let Some(doc) = ok(s) else { continue };
            for region in doc.regions.iter().filter(|r| r.visible) {
                for (metric, value) in flatten_metrics(&region.metrics) {
                    let key = (region.name.clone(), metric);
                    let row = values.entry(key.clone()).or_insert_with(|| {
                        order.push(key);
                        vec![None; sessions.len()]
                    });
                    row[s] = Some(value);
                }
            }
        }
        let mut pih_seen = BTreeSet::new();
        for key in order {
            let row = &values[&key];
            let (region, metric) = key;
            let baseline = (0..row.len()).find(|&s| row[s].is_some());
            let comparable =
                |a: usize, b: usize| ok(a).map(comparability) == ok(b).map(comparability);
            let mut points = Vec::with_capacity(row.len());
            let mut previous: Option<usize> = None;
            let mut trend = Vec::new();
            for (s, value) in row.iter().enumerate() {
                let mut point = Point {
                    session: s,
                    date: sessions[s].date,
                    value: *value,
                    vs_baseline: None,
                    vs_previous: None,
                };
                if let (Some(v), Some(b)) = (*value, baseline) {
                    if comparable(s, b) {
                        trend.push((sessions[s].days_from_baseline as f64, v));
                        if s != b {
                            point.vs_baseline =
                                Some(change(noise, &metric, b, row[b].expect("baseline"), v));
                        }
                    }
                    if let Some(p) = previous.filter(|&p| comparable(s, p)) {
                        point.vs_previous =
                            Some(change(noise, &metric, p, row[p].expect("prev"), v));
                    }
                    previous = Some(s);
                }
                let up = |c: &Option<Change>| {
                    c.filter(|c| c.significant == Some(true) && c.absolute > 0.0)
                };
                if PIH_METRICS.contains(&metric.as_str())
                    && let Some(c) = up(&point.vs_previous)
                    && sessions[c.reference_session].treated
                    && pih_seen.insert((s, region.clone()))
                {
                    flags.push(Flag {
                        kind: FlagKind::PossiblePih,
                        session: s,
                        date: sessions[s].date,
                        view: view.to_string(),
                        region: Some(region.clone()),
                        metric: Some(metric.clone()),
                        detail: format!(
                            "{metric} rose from {:.4} to {:.4} after the treatment session {} \
                             ({}): possible post-inflammatory hyperpigmentation",
                            value.unwrap_or_default() - c.absolute,
                            value.unwrap_or_default(),
                            sessions[c.reference_session].session,
                            sessions[c.reference_session].date,
                        ),
                    });
                }
                if metric.ends_with(".severity")
                    && let Some(c) = up(&point.vs_baseline)
                {
                    flags.push(Flag {
                        kind: FlagKind::Worsening,
                        session: s,
                        date: sessions[s].date,
                        view: view.to_string(),
                        region: Some(region.clone()),
                        metric: Some(metric.clone()),
                        detail: format!(
                            "{metric} is {:+.1} above the baseline (noise floor {})",
                            c.absolute,
                            noise.floor(&metric).map_or(0.0, |f| f.absolute)
                        ),
                    });
                }
                points.push(point);
            }
            series.push(Series {
                view: view.to_string(),
                noise_floor: noise.floor(&metric).copied(),
                trend_per_30_days: slope_per_30_days(&trend),
                baseline_session: baseline,
                region,
                metric,
                points,
            });
        }
    }
    flags.sort_by(|a, b| (a.session, &a.view, a.kind).cmp(&(b.session, &b.view, b.kind)));
    SubjectReport {
        schema_version: PROGRESS_SCHEMA_VERSION,
        subject: subject.to_string(),
        arm: photos
            .first()
            .map_or_else(|| "all".into(), |(p, _)| p.arm.clone()),
        provenance: provenance.clone(),
        sessions,
        series,
        flags,
        issues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formatting() {
        let at = |s: u64| rfc3339_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_768_469_405), "2026-01-15T09:30:05Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn slope_is_per_30_days() {
        assert_eq!(slope_per_30_days(&[(0.0, 1.0)]), None);
        assert_eq!(slope_per_30_days(&[(5.0, 1.0), (5.0, 2.0)]), None);
        let s = slope_per_30_days(&[(0.0, 10.0), (30.0, 8.0), (60.0, 6.0)]).unwrap();
        assert!((s + 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_committed_noise_floors_load_and_judge() {
        for file in [NOISE_FLOOR_FILE, NOISE_FLOOR_CLOSEUP_FILE] {
            let path = crate::model::default_models_dir().join(file);
            check_floor(&NoiseFloor::load(&path).unwrap());
        }
        let dir = Path::new("m");
        use crate::regions::RegionMode;
        assert_eq!(
            default_noise_floor(dir, RegionMode::Auto, false),
            dir.join(NOISE_FLOOR_FILE)
        );
        assert_eq!(
            default_noise_floor(dir, RegionMode::Whole, false),
            dir.join(NOISE_FLOOR_CLOSEUP_FILE)
        );
        assert_eq!(
            default_noise_floor(dir, RegionMode::Face, true),
            dir.join(NOISE_FLOOR_CLOSEUP_FILE)
        );
    }

    fn check_floor(floor: &NoiseFloor) {
        assert!(!floor.provisional, "measured, not a guess");
        for metric in [
            "pores.count",
            "pores.severity",
            "hyperpigmentation.area_fraction",
            "hyperpigmentation.severity",
            "scarring.severity",
            "redness.severity",
            "tone.ita_deg",
        ] {
            assert!(floor.floor(metric).is_some(), "{metric}");
        }
        let pf = floor.floor("pores.severity").unwrap();
        assert_eq!(
            floor.significant("pores.severity", pf.absolute * 0.5, 1.0),
            Some(false)
        );
        assert_eq!(
            floor.significant("pores.severity", -(pf.absolute + 10.0), 1.0),
            Some(true)
        );
        assert_eq!(
            floor.improved("pores.severity", -(pf.absolute + 10.0), 1.0),
            Some(true)
        );
        assert_eq!(
            floor.improved("pores.severity", pf.absolute + 10.0, 1.0),
            Some(false)
        );
        assert_eq!(floor.improved("tone.ita_deg", 30.0, 1.0), None);
        assert_eq!(floor.significant("no.such_metric_xyz", 1e9, 0.0), None);
    }

    #[test]
    fn treatment_values() {
        assert!(treated(None));
        assert!(treated(Some("microneedling")));
        for no in ["", "none", "No", "0", "-"] {
            assert!(!treated(Some(no)), "{no}");
        }
    }
}

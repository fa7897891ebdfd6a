//! Stage 11: every subject's report → cohort tables for statistics software:
//! `OUT/scores.csv`, `OUT/changes.csv` and `OUT/cohort.json`.
//!
//! Why a stage of its own: trial analyses happen in R or pandas, which want *tidy* tables (one
//! observation per row), and sponsors want a first summary per arm without writing code.
//!
//! * `scores.csv`: one row per photo × region × metric (subject, session, date, view, arm,
//!   path, sha256, region, metric, value, then the manifest's extra columns). Failed and
//!   duplicate photos have no rows (they are listed in `run.json`).
//! * `changes.csv`: one row per subject × session × view × region × metric with the value, its
//!   change from the baseline and from the previous session, and the noise-floor verdicts.
//! * `cohort.json`: per arm, visit (session index: 0 = baseline), view, region and metric, the
//!   number of subjects, mean and median change from baseline, the 95% confidence interval of
//!   the mean (Student's t, [`t_quantile_975`]) and the share of subjects improved beyond the
//!   noise floor. Visits are aligned by index, not by date.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::progress_report::{NoiseFloor, Provenance, SubjectReport, flatten_metrics};
use crate::report::{AnalysisDocument, Status};
use crate::study::{Study, csv_field};

/// Two-sided 95% quantile of Student's t (the 0.975 quantile) with `df` degrees of freedom.
///
/// Exact table values (to 3 decimals) for 1–30; above, the Cornish–Fisher expansion of t in
/// terms of the normal quantile (Abramowitz & Stegun 26.7.5), which is within 0.001 of the
/// exact value for df > 30. `df = 0` gives infinity.
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => {
            let z = 1.959_963_984_540_054_f64;
            let n = df as f64;
            let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
            z + (z3 + z) / (4.0 * n)
                + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * n * n)
                + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * n * n * n)
        }
    }
}

/// Summary of changes from baseline in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupSummary {
    /// Treatment arm.
    pub arm: String,
    /// Session index (0 = baseline).
    pub visit: usize,
    /// View.
    pub view: String,
    /// Region.
    pub region: String,
    /// Metric.
    pub metric: String,
    /// Subjects with a comparable change.
    pub n: usize,
    /// Mean change from baseline.
    pub mean_change: f64,
    /// Median change from baseline.
    pub median_change: f64,
    /// 95% confidence interval of the mean (`None` when n < 2).
    pub ci95: Option<[f64; 2]>,
    /// Subjects improved beyond the noise floor.
    pub n_improved: Option<usize>,
    /// `n_improved / n` (`None` when the metric has no floor or no better direction).
    pub share_improved: Option<f64>,
}

/// `OUT/cohort.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CohortDocument {
    /// Layout version (1).
    pub schema_version: u32,
    /// Tool, models, settings, time, noise floor.
    pub provenance: Provenance,
    /// Subjects per arm.
    pub subjects_per_arm: BTreeMap<String, usize>,
    /// One entry per arm × visit (≥ 1) × view × region × metric.
    pub groups: Vec<GroupSummary>,
}

/// Mean, median and 95% CI of the mean.
pub fn describe(values: &[f64]) -> Option<(f64, f64, Option<[f64; 2]>)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let ci = (n >= 2).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_quantile_975(n - 1) * (var / n as f64).sqrt();
        [mean - half, mean + half]
    });
    Some((mean, median, ci))
}

/// The cohort summary of the subjects' reports.
pub fn cohort(reports: &[SubjectReport], provenance: &Provenance) -> CohortDocument {
    type Key = (String, usize, String, String, String);
    let mut groups: BTreeMap<Key, (Vec<f64>, Vec<Option<bool>>)> = BTreeMap::new();
    let mut subjects_per_arm: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        *subjects_per_arm.entry(r.arm.clone()).or_default() += 1;
        for s in &r.series {
            for p in &s.points {
                if let Some(c) = p.vs_baseline {
                    let key = (
                        r.arm.clone(),
                        p.session,
                        s.view.clone(),
                        s.region.clone(),
                        s.metric.clone(),
                    );
                    let entry = groups.entry(key).or_default();
                    entry.0.push(c.absolute);
                    entry.1.push(c.improved);
                }
            }
        }
    }
    let groups = groups
        .into_iter()
        .filter_map(
            |((arm, visit, view, region, metric), (changes, improved))| {
                let (mean_change, median_change, ci95) = describe(&changes)?;
                let n_improved = improved
                    .iter()
                    .map(|i| i.map(usize::from))
                    .sum::<Option<usize>>();
                Some(GroupSummary {
                    n: changes.len(),
                    share_improved: n_improved.map(|k| k as f64 / changes.len() as f64),
                    n_improved,
                    arm,
                    visit,
                    view,
                    region,
                    metric,
                    mean_change,
                    median_change,
                    ci95,
                })
            },
        )
        .collect();
    CohortDocument {
        schema_version: 1,
        provenance: provenance.clone(),
        subjects_per_arm,
        groups,
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v}"))
}

fn flag(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "",
    }
}

/// `scores.csv` text.
pub fn scores_csv(study: &Study, documents: &[AnalysisDocument]) -> String {
    let extra: BTreeSet<&str> = study
        .photos
        .iter()
        .flat_map(|p| p.extra.keys().map(String::as_str))
        .collect();
    let mut out = String::from("subject,session,date,view,arm,path,sha256,region,metric,value");
    for c in &extra {
        out.push(',');
        out.push_str(&csv_field(c));
    }
    out.push('\n');
    for (p, d) in study.photos.iter().zip(documents) {
        if d.status != Status::Ok || p.duplicate_of.is_some() {
            continue;
        }
        let mut tail = String::new();
        for c in &extra {
            tail.push(',');
            tail.push_str(&csv_field(p.extra.get(*c).map_or("", String::as_str)));
        }
        for region in d.regions.iter().filter(|r| r.visible) {
            for (metric, value) in flatten_metrics(&region.metrics) {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{value}{tail}",
                    csv_field(&p.subject),
                    csv_field(&p.session),
                    p.date,
                    csv_field(&p.view),
                    csv_field(&p.arm),
                    csv_field(&p.display),
                    p.sha256.as_deref().unwrap_or_default(),
                    csv_field(&region.name),
                    csv_field(&metric),
                );
            }
        }
    }
    out
}

/// `changes.csv` text.
pub fn changes_csv(reports: &[SubjectReport]) -> String {
    let mut out = String::from(
        "subject,arm,visit,session,date,days_from_baseline,view,region,metric,value,\
         change_from_baseline,relative_change_from_baseline,significant_vs_baseline,improved,\
         change_from_previous,significant_vs_previous\n",
    );
    for r in reports {
        for s in &r.series {
            for p in &s.points {
                let session = &r.sessions[p.session];
                let b = p.vs_baseline;
                let v = p.vs_previous;
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&r.subject),
                    csv_field(&r.arm),
                    p.session,
                    csv_field(&session.session),
                    p.date,
                    session.days_from_baseline,
                    csv_field(&s.view),
                    csv_field(&s.region),
                    csv_field(&s.metric),
                    num(p.value),
                    num(b.map(|c| c.absolute)),
                    num(b.and_then(|c| c.relative)),
                    flag(b.and_then(|c| c.significant)),
                    flag(b.and_then(|c| c.improved)),
                    num(v.map(|c| c.absolute)),
                    flag(v.and_then(|c| c.significant)),
                );
            }
        }
    }
    out
}

/// Writes `scores.csv`, `changes.csv` and `cohort.json` into `out`, each atomically.
pub fn write_tables(
    out: &Path,
    study: &Study,
    documents: &[AnalysisDocument],
    reports: &[SubjectReport],
    _noise: &NoiseFloor,
    provenance: &Provenance,
) -> Result<()> {
    use crate::batch::{write_atomic, write_json_atomic};
    write_atomic(
        &out.join("scores.csv"),
        scores_csv(study, documents).as_bytes(),
    )?;
    write_atomic(&out.join("changes.csv"), changes_csv(reports).as_bytes())?;
    write_json_atomic(&out.join("cohort.json"), &cohort(reports, provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Reference values: R qt(0.975, df).
        for (df, t) in [
            (1, 12.7062),
            (2, 4.3027),
            (5, 2.5706),
            (10, 2.2281),
            (30, 2.0423),
            (31, 2.0395),
            (40, 2.0211),
            (60, 2.0003),
            (120, 1.9799),
            (1000, 1.9623),
        ] {
            assert!(
                (t_quantile_975(df) - t).abs() < 1.5e-3,
                "df {df}: {}",
                t_quantile_975(df)
            );
        }
        assert!(t_quantile_975(0).is_infinite());
        // Decreasing towards the normal quantile.
        for df in 1..500 {
            assert!(t_quantile_975(df) > t_quantile_975(df + 1));
        }
        assert!(t_quantile_975(1_000_000) - 1.959_964 < 1e-5);
    }

    #[test]
    fn describe_mean_median_ci() {
        assert!(describe(&[]).is_none());
        let (m, med, ci) = describe(&[2.0]).unwrap();
        assert_eq!((m, med, ci), (2.0, 2.0, None));
        let (m, med, ci) = describe(&[1.0, 2.0, 3.0, 10.0]).unwrap();
        assert_eq!(m, 4.0);
        assert_eq!(med, 2.5);
        // sd = sqrt(((9+4+1+36)/3)) = 4.0825; half = 3.182 * 4.0825 / 2.
        let half = 3.182 * (50.0f64 / 3.0).sqrt() / 2.0;
        let ci = ci.unwrap();
        assert!((ci[0] - (4.0 - half)).abs() < 1e-9 && (ci[1] - (4.0 + half)).abs() < 1e-9);
    }
}

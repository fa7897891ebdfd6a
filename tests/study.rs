//! `dermatrack run` on studies: the demo study's story (known truth), incrementality,
//! crash safety, and bad input that is reported while the batch goes on.
//!
//! The demo study (`fixtures/demo-study`, made by `examples/make_demo_study.rs`) has two
//! subjects × four sessions of 30 × 30 mm phantoms: A01's pigment fades and pores shrink; B01
//! develops post-inflammatory hyperpigmentation at session 3 (index 2), after the treatment of
//! session 2.

use std::path::{Path, PathBuf};

use dermatrack::batch::{RunOptions, RunSummary, run_study};
use dermatrack::progress_report::{FlagKind, Series, SubjectReport};
use dermatrack::regions::RegionMode;
use dermatrack::study::{IssueKind, Study};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo-study")
}

fn options(out: &Path) -> RunOptions {
    let mut o = RunOptions::new(out);
    o.analyze.regions = RegionMode::Whole;
    o.jobs = 2;
    o
}

fn run(study: &Path, out: &Path) -> RunSummary {
    let study = Study::open(study).expect("study reads");
    run_study(&study, &options(out), &|_| {}).expect("run succeeds")
}

fn report(out: &Path, subject: &str) -> SubjectReport {
    let text =
        std::fs::read_to_string(out.join("subjects").join(format!("{subject}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn series<'a>(r: &'a SubjectReport, metric: &str) -> &'a Series {
    r.series
        .iter()
        .find(|s| s.metric == metric && s.region == "whole" && s.view == "front")
        .unwrap_or_else(|| panic!("no series {metric}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn demo_study_tells_the_story_and_a_second_run_analyses_nothing() {
    let out = tempfile::tempdir().unwrap();
    let first = run(&demo(), out.path());
    assert_eq!(
        (first.photos, first.analysed, first.reused, first.failed),
        (8, 8, 0, 0)
    );
    assert_eq!((first.issues, first.subjects), (0, 2));

    let a = report(out.path(), "A01");
    assert_eq!(a.schema_version, 1);
    assert_eq!(a.sessions.len(), 4);
    assert!(
        a.sessions.windows(2).all(|w| w[0].date < w[1].date),
        "date order"
    );
    assert!(!a.provenance.noise_floor.as_ref().unwrap().provisional);
    assert!(a.provenance.generated_at.ends_with('Z'));
    // Pigment fades: severity falls, significantly and as an improvement, by the last session.
    let pig = series(&a, "hyperpigmentation.severity");
    let last = pig.points[3].vs_baseline.expect("comparable");
    assert!(last.absolute < -20.0, "{last:?}");
    assert_eq!((last.significant, last.improved), (Some(true), Some(true)));
    assert!(pig.trend_per_30_days.unwrap() < 0.0);
    let contrast = series(&a, "hyperpigmentation.mean_contrast");
    assert!(
        contrast.points.windows(2).all(|w| w[1].value < w[0].value),
        "fades every session"
    );
    // Pores shrink.
    let diameter = series(&a, "pores.mean_diameter_mm");
    assert!(diameter.points.windows(2).all(|w| w[1].value < w[0].value));
    assert!(diameter.trend_per_30_days.unwrap() < 0.0);
    let pores = series(&a, "pores.severity").points[3].vs_baseline.unwrap();
    assert!(
        pores.absolute < 0.0 && pores.improved == Some(true),
        "{pores:?}"
    );
    assert!(
        !a.flags
            .iter()
            .any(|f| matches!(f.kind, FlagKind::PossiblePih | FlagKind::Worsening)),
        "{:#?}",
        a.flags
    );

    // B01: PIH at session index 2, after the treatment of session 1.
    let b = report(out.path(), "B01");
    let pih: Vec<_> = b
        .flags
        .iter()
        .filter(|f| f.kind == FlagKind::PossiblePih)
        .collect();
    assert!(!pih.is_empty(), "{:#?}", b.flags);
    assert!(pih.iter().all(|f| f.session == 2), "{pih:#?}");
    assert!(b.sessions[1].treated);
    assert!(
        b.flags
            .iter()
            .any(|f| f.kind == FlagKind::Worsening && f.session == 2)
    );
    let area = series(&b, "hyperpigmentation.area_fraction");
    assert!(area.points[2].vs_previous.unwrap().absolute > 0.0);
    assert_eq!(
        area.points[1].vs_previous.unwrap().significant,
        Some(false),
        "stable before"
    );

    // Cohort tables.
    let scores = std::fs::read_to_string(out.path().join("scores.csv")).unwrap();
    let header = scores.lines().next().unwrap();
    assert_eq!(
        header,
        "subject,session,date,view,arm,path,sha256,region,metric,value,notes"
    );
    assert!(scores.contains("\"pigment fading, pores shrinking, session 1\""));
    let rows = dermatrack::study::parse_csv(&scores).unwrap();
    assert!(rows.iter().all(|r| r.len() == 11));
    assert!(rows.iter().any(|r| r[8] == "tone.ita_deg"));
    let changes = std::fs::read_to_string(out.path().join("changes.csv")).unwrap();
    assert!(changes.starts_with("subject,arm,visit,session,date,days_from_baseline,"));
    let cohort: dermatrack::cohort::CohortDocument =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("cohort.json")).unwrap())
            .unwrap();
    let g = cohort
        .groups
        .iter()
        .find(|g| g.visit == 3 && g.metric == "pores.mean_diameter_mm")
        .unwrap();
    assert_eq!((g.arm.as_str(), g.n), ("active", 2));
    assert!(g.ci95.unwrap()[0] <= g.mean_change && g.mean_change <= g.ci95.unwrap()[1]);

    // Nothing new: nothing analysed.
    let second = run(&demo(), out.path());
    assert_eq!((second.analysed, second.reused, second.failed), (0, 8, 0));
    assert_eq!(
        report(out.path(), "B01").series,
        b.series,
        "same numbers from the store"
    );
}

#[test]
fn adding_a_session_analyses_only_its_photos_and_crash_leftovers_are_redone() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    copy_dir(&demo(), &study);
    let manifest = std::fs::read_to_string(study.join("manifest.csv")).unwrap();
    let without_followup: String = manifest
        .lines()
        .filter(|l| !l.contains("_followup"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(study.join("manifest.csv"), &without_followup).unwrap();
    let out = dir.path().join("out");
    let s = run(&study, &out);
    // The follow-up photos are on disk but not listed: reported, not analysed.
    assert_eq!((s.photos, s.analysed, s.issues), (6, 6, 2));
    std::fs::write(study.join("manifest.csv"), &manifest).unwrap();
    let s = run(&study, &out);
    assert_eq!((s.photos, s.analysed, s.reused, s.issues), (8, 2, 6, 0));

    // A kill -9 mid-write leaves a .part file, or (on a file system without atomic rename) a
    // truncated document: neither is ever taken as a result.
    let photos = out.join("photos");
    let mut stored: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|p| p.extension().unwrap() == "json"));
    let victim = &stored[0];
    let full = std::fs::read(victim).unwrap();
    std::fs::write(victim, &full[..full.len() / 2]).unwrap();
    std::fs::write(
        stored[1].with_extension("json.part"),
        b"{\"schema_version\": 1, \"to",
    )
    .unwrap();
    let s = run(&study, &out);
    assert_eq!((s.analysed, s.reused, s.failed), (1, 7, 0));
    let redone: dermatrack::report::AnalysisDocument =
        serde_json::from_slice(&std::fs::read(victim).unwrap()).expect("rewritten whole");
    assert_eq!(redone.status, dermatrack::report::Status::Ok);
}

#[test]
fn bad_input_is_reported_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    let png = |s: &str| demo().join("A01").join(s).join("front.png");
    let put = |rel: &str, from: &Path| {
        let p = study.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(from, p).unwrap();
    };
    put("S1/2026-01-05/front.png", &png("2026-01-05_baseline"));
    put("S1/2026-02-02_tx/front.png", &png("2026-02-02_tx2"));
    // The same bytes again, in a later session.
    put("S1/2026-03-02_tx/front.png", &png("2026-02-02_tx2"));
    // A corrupt photo, a text file, a session without photos, a session without a date.
    std::fs::write(
        study.join("S1/2026-03-02_tx/left.jpg"),
        b"\xff\xd8\xff\xe0 not really",
    )
    .unwrap();
    std::fs::write(
        study.join("S1/2026-02-02_tx/notes.txt"),
        b"patient was late",
    )
    .unwrap();
    std::fs::create_dir_all(study.join("S1/2026-04-01")).unwrap();
    put("S1/week-12/front.png", &png("2026-03-30_followup"));
    put("S1/2026-02-31/front.png", &png("2026-03-30_followup"));

    let out = dir.path().join("out");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .args([
            "run",
            "--regions",
            "whole",
            "--px-per-mm",
            "10",
            "--jobs",
            "2",
            "--out",
        ])
        .arg(&out)
        .arg(&study)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a photo failed: {stderr}");
    assert!(
        stderr.contains("S1/2026-03-02_tx/left.jpg FAILED"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[") && l.contains("S1/2026-01-05/front.png ok")),
        "{stderr}"
    );

    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["summary"]["failed"], 1);
    assert_eq!(
        run["summary"]["analysed"], 3,
        "the duplicate is analysed once"
    );
    assert_eq!(run["failed"][0]["path"], "S1/2026-03-02_tx/left.jpg");
    let kinds: Vec<IssueKind> = run["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| serde_json::from_value(i["kind"].clone()).unwrap())
        .collect();
    for kind in [
        IssueKind::UnknownFile,
        IssueKind::DuplicatePhoto,
        IssueKind::EmptySession,
        IssueKind::BadDate,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == IssueKind::BadDate).count(),
        2
    );

    let r = report(&out, "S1");
    assert_eq!(r.sessions.len(), 3);
    assert!(
        r.flags
            .iter()
            .any(|f| f.kind == FlagKind::NotComparable && f.view == "left" && f.session == 2),
        "{:#?}",
        r.flags
    );
    // The duplicate is not a session value: front has values at sessions 0 and 1 only.
    let front = r.series.iter().find(|s| s.view == "front").unwrap();
    assert!(front.points[2].value.is_none());
    assert!(r.issues.iter().any(|i| i.kind == IssueKind::DuplicatePhoto));

    // The failure is retried next time (and still reported); the rest is reused.
    // (Same settings as the command line: another --px-per-mm would be another key.)
    let study = Study::open(&study).unwrap();
    let mut o = options(&out);
    o.analyze.px_per_mm = Some(10.0);
    let s = run_study(&study, &o, &|_| {}).unwrap();
    assert_eq!((s.analysed, s.reused, s.failed), (1, 2, 1));
}

#[test]
fn hostile_identifiers_stay_inside_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    std::fs::create_dir_all(&study).unwrap();
    std::fs::copy(
        demo().join("B01/2026-01-07_baseline/front.png"),
        study.join("p.png"),
    )
    .unwrap();
    std::fs::write(
        study.join("manifest.csv"),
        "subject,session,date,view,arm,path,px_per_mm\n\
         ../../etc,../x,2026-01-15,front,\"a,b\",p.png,10\n\
         S2,s,2026-13-01,front,a,p.png,10\n\
         S3,s,2026-01-15,front,a,missing.png,10\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let study = Study::open(&study).unwrap();
    let kinds: Vec<_> = study.issues.iter().map(|i| i.kind).collect();
    assert_eq!(kinds, vec![IssueKind::BadDate, IssueKind::MissingFile]);
    let s = run_study(&study, &options(&out), &|_| {}).unwrap();
    assert_eq!((s.analysed, s.failed, s.subjects), (2, 1, 2));
    let mut names: Vec<String> = std::fs::read_dir(out.join("subjects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2);
    assert!(names[0].starts_with("S3"), "{names:?}");
    assert!(
        names[1].starts_with("______etc-") && names[1].ends_with(".json"),
        "{names:?}"
    );
    assert!(!dir.path().join("etc").exists());
    let r: SubjectReport = serde_json::from_str(
        &std::fs::read_to_string(out.join("subjects").join(&names[1])).unwrap(),
    )
    .unwrap();
    assert_eq!((r.subject.as_str(), r.arm.as_str()), ("../../etc", "a,b"));
}

#[test]
fn custom_regions_apply_to_every_photo_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let regions = dir.path().join("patch.json");
    std::fs::write(
        &regions,
        r#"{"regions": [{"name": "patch", "polygon": [[50,50],[250,50],[250,250],[50,250]]}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .arg("run")
        .arg(demo())
        .arg("--regions-file")
        .arg(&regions)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    for subject in ["A01", "B01"] {
        let r = report(&out, subject);
        assert!(!r.series.is_empty());
        assert!(r.series.iter().all(|s| s.region == "patch"), "{subject}");
    }
}

/// A blown-out photo is still scored but flagged `qc_failed` at its session; a photo whose
/// scale comes from a different source than the baseline's is flagged `not_comparable`.
#[test]
fn capture_problems_are_flagged_in_the_subject_report() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("study");
    copy_dir(&demo(), &study);
    // Overexpose A01's third session ×3 (clipping far above the 2% highlight limit).
    let photo = study.join("A01/2026-03-02_tx3/front.png");
    let mut img = image::open(&photo).unwrap().to_rgb8();
    for p in img.pixels_mut() {
        p.0 = p.0.map(|v| v.saturating_mul(3));
    }
    img.save(&photo).unwrap();
    // Drop B01's follow-up scale from the manifest: that photo falls back to an assumed scale.
    let manifest = study.join("manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "px_per_mm")
        .expect("px_per_mm column");
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            if line.contains("B01") && line.contains("followup") {
                let mut cells: Vec<&str> = line.split(',').collect();
                cells[col] = "";
                cells.join(",")
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(&manifest, edited.join("\n") + "\n").unwrap();

    let out = dir.path().join("out");
    run(&study, &out);
    let a = report(&out, "A01");
    let qc: Vec<usize> = a
        .flags
        .iter()
        .filter(|f| f.kind == FlagKind::QcFailed)
        .map(|f| f.session)
        .collect();
    assert_eq!(qc, vec![2], "{:#?}", a.flags);
    let b = report(&out, "B01");
    let nc: Vec<usize> = b
        .flags
        .iter()
        .filter(|f| f.kind == FlagKind::NotComparable)
        .map(|f| f.session)
        .collect();
    assert_eq!(nc, vec![3], "{:#?}", b.flags);
}

//! The `dermatrack` binary end to end: the JSON contract, exit codes, and bad input.
//!
//! The analyze document's layout is pinned by the `deny_unknown_fields` types below: adding,
//! renaming or removing a key fails this test, so format changes are always deliberate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use sha2::{Digest, Sha256};

fn dermatrack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dermatrack"))
}

fn run(args: &[&str]) -> Output {
    dermatrack().args(args).output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Doc {
    schema_version: u32,
    tool: Tool,
    status: String,
    error: Option<ErrorInfo>,
    image: Image,
    model: Model,
    settings: Settings,
    quality: Quality,
    regions_mode: Option<String>,
    face: Option<dermatrack::face::FaceSummary>,
    regions: Vec<Region>,
    notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Tool {
    name: String,
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ErrorInfo {
    kind: String,
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Image {
    path: PathBuf,
    sha256: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    px_per_mm: Option<f64>,
    px_per_mm_source: Option<String>,
    px_per_mm_uncertainty: Option<f64>,
    format: Option<String>,
    bits_per_channel: Option<u8>,
    source_color: Option<String>,
    exif_orientation: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Model {
    name: String,
    sha256: String,
    version: String,
    working_px_per_mm: f64,
    runtime: Runtime,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Runtime {
    library: PathBuf,
    found_by: String,
    version: String,
    build_info: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Settings {
    regions: String,
    regions_file: Option<PathBuf>,
    px_per_mm: Option<f64>,
    max_pixels: u64,
    metrics: dermatrack::metrics::MetricSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Quality {
    passed: bool,
    checks: Vec<Check>,
    notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Check {
    name: String,
    value: f64,
    limit: String,
    passed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Region {
    name: String,
    visible: bool,
    area_mm2: f64,
    pixel_count: u64,
    metrics: dermatrack::metrics::RegionMetrics,
}

/// A 300×240 skin-colored PNG with mild texture, written into `dir`.
fn skin_png(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(300, 240, |x, y| {
        let t = ((x * 7 + y * 13) % 11) as u8;
        image::Rgb([200 + t, 150 + t / 2, 130 + t / 3])
    });
    let path = dir.join("skin.png");
    img.save(&path).unwrap();
    path
}

fn parse(path: &Path) -> Doc {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn analyze_writes_the_pinned_document() {
    let dir = tempfile::tempdir().unwrap();
    let photo = skin_png(dir.path());
    let out = dir.path().join("out/a.json");
    let o = run(&[
        "analyze",
        photo.to_str().unwrap(),
        "--px-per-mm",
        "12.5",
        "--regions",
        "whole",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = parse(&out);
    assert_eq!(doc.schema_version, 1);
    assert_eq!(doc.status, "ok");
    assert!(doc.error.is_none());
    let want = format!("{:x}", Sha256::digest(std::fs::read(&photo).unwrap()));
    assert_eq!(doc.image.sha256.as_deref(), Some(want.as_str()));
    assert_eq!((doc.image.width, doc.image.height), (Some(300), Some(240)));
    assert_eq!(doc.image.px_per_mm, Some(12.5));
    assert_eq!(doc.image.px_per_mm_source.as_deref(), Some("user"));
    assert_eq!(doc.model.name, "skin-v1");
    assert_eq!(doc.model.sha256.len(), 64);
    assert_eq!(doc.model.runtime.version, "1.31.1");
    assert_eq!(doc.regions.len(), 1);
    let whole = &doc.regions[0];
    assert_eq!(whole.name, "whole");
    assert_eq!(whole.pixel_count, 300 * 240);
    let expected_area = 300.0 * 240.0 / (12.5 * 12.5);
    assert!((whole.area_mm2 - expected_area).abs() < 1e-9);
    let tone = whole.metrics.tone.as_ref().expect("tone measured");
    assert!(tone.ita_deg > 0.0 && tone.ita_deg < 90.0, "{tone:?}");
    assert!(!doc.quality.checks.is_empty());
    // At 12.5 px/mm a pixel is the smallest pore counted (0.08 mm), and 2.5 pixels (0.2 mm)
    // are narrower than any icepick scar: no resolution note.
    assert!(
        !doc.notes
            .iter()
            .any(|n| n.contains("below its resolution") || n.contains("icepick")),
        "{:?}",
        doc.notes
    );
}

#[test]
fn model_sha256_in_report_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let photo = skin_png(dir.path());
    let o = run(&["analyze", photo.to_str().unwrap(), "--regions", "whole"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Doc = serde_json::from_slice(&o.stdout).unwrap();
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/skin-v1.onnx");
    let want = format!("{:x}", Sha256::digest(std::fs::read(onnx).unwrap()));
    assert_eq!(doc.model.sha256, want);
    // Without --px-per-mm the scale is assumed, and the report says so.
    assert_eq!(doc.image.px_per_mm_source.as_deref(), Some("assumed"));
    assert!(doc.notes.iter().any(|n| n.contains("scale unknown")));
}

/// Bad inputs: each gives exit 1, a failed document naming the file, and a stderr message.
#[test]
fn bad_inputs_fail_cleanly_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = skin_png(dir.path());
    let mut jpeg = Vec::new();
    image::open(&good)
        .unwrap()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 2]).unwrap();
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "not a photo").unwrap();
    let missing = dir.path().join("missing.jpg");
    // A real JPEG whose frame header claims 60000×60000 pixels.
    let mut bomb = jpeg.clone();
    let sof = bomb.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let huge = dir.path().join("huge.jpg");
    std::fs::write(&huge, &bomb).unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();

    for (path, kind, phrase) in [
        (&truncated, "decode", "truncated"),
        (&text, "unsupported_format", "not a supported image"),
        (&missing, "read", "cannot read"),
        (&huge, "too_large", "exceeds the limit"),
        (&empty, "unsupported_format", "empty"),
    ] {
        let out = dir.path().join("doc.json");
        let o = run(&[
            "analyze",
            path.to_str().unwrap(),
            "--regions",
            "whole",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {}",
            path.display(),
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(err.contains(phrase) && err.contains(path.file_name().unwrap().to_str().unwrap()));
        assert!(!err.contains("panicked"), "{err}");
        let doc = parse(&out);
        assert_eq!(doc.status, "failed");
        let e = doc.error.expect("error recorded");
        assert_eq!(e.kind, kind, "{}", e.message);
        assert!(doc.regions.is_empty());
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["analyze"],
        vec!["analyze", "x.jpg", "--regions", "elbow"],
        vec!["analyze", "x.jpg", "--px-per-mm", "banana"],
        vec!["frobnicate"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // Out-of-range values are usage errors too, reported with the allowed range.
    let o = run(&["analyze", "x.jpg", "--px-per-mm=-3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("0.5..=500"), "{}", stderr(&o));
}

#[test]
fn wrong_ort_dylib_path_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let photo = skin_png(dir.path());
    let o = dermatrack()
        .args(["analyze", photo.to_str().unwrap(), "--regions", "whole"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("ORT_DYLIB_PATH=/nonexistent"), "{err}");
    assert!(err.contains("scripts/fetch_onnxruntime.py"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A file that is not a shared library at all.
    let bogus = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&bogus, b"not a library").unwrap();
    let o = dermatrack()
        .args(["analyze", photo.to_str().unwrap(), "--regions", "whole"])
        .env("ORT_DYLIB_PATH", &bogus)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot load ONNX Runtime"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tampered_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let copy = dir.path().join("models");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(models.join("skin-v1.json"), copy.join("skin-v1.json")).unwrap();
    let mut onnx = std::fs::read(models.join("skin-v1.onnx")).unwrap();
    onnx.push(0);
    std::fs::write(copy.join("skin-v1.onnx"), onnx).unwrap();
    let photo = skin_png(dir.path());
    let o = run(&[
        "analyze",
        photo.to_str().unwrap(),
        "--models",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("manifest expects"), "{}", stderr(&o));
}

#[test]
fn custom_regions_file_is_measured_and_bad_files_fail_the_photo() {
    let dir = tempfile::tempdir().unwrap();
    let photo = skin_png(dir.path());
    let regions = dir.path().join("regions.json");
    std::fs::write(
        &regions,
        r#"{"regions": [{"name": "patch_a", "polygon": [[10,10],[110,10],[110,110],[10,110]]},
                        {"name": "patch_b", "polygon": [[150,20],[290,20],[290,200]]}]}"#,
    )
    .unwrap();
    let out = dir.path().join("custom.json");
    let o = run(&[
        "analyze",
        photo.to_str().unwrap(),
        "--regions-file",
        regions.to_str().unwrap(),
        "--px-per-mm",
        "10",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = parse(&out);
    assert_eq!(doc.regions_mode.as_deref(), Some("custom"));
    let names: Vec<&str> = doc.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["patch_a", "patch_b"]);
    // Pixel centres inside the 100×100 square: exactly 100 × 100.
    assert_eq!(doc.regions[0].pixel_count, 10_000);
    assert!(doc.regions.iter().all(|r| r.metrics.tone.is_some()));

    std::fs::write(
        &regions,
        r#"{"regions": [{"name": "../x", "polygon": [[0,0],[1,1]]}]}"#,
    )
    .unwrap();
    let o = run(&[
        "analyze",
        photo.to_str().unwrap(),
        "--regions-file",
        regions.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("regions.json"), "{}", stderr(&o));
}

#[test]
fn face_regions_on_the_bundled_portrait() {
    let portrait =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faces/london_038_neutral.jpg");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("face.json");
    let overlay = dir.path().join("face.png");
    let o = run(&[
        "analyze",
        portrait.to_str().unwrap(),
        "--regions",
        "face",
        "-o",
        out.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = parse(&out);
    assert_eq!(doc.regions_mode.as_deref(), Some("face"));
    assert_eq!(doc.image.px_per_mm_source.as_deref(), Some("face_ipd"));
    let s = doc.image.px_per_mm.unwrap();
    assert!((2.6..4.2).contains(&s), "px/mm {s}");
    assert!(doc.image.px_per_mm_uncertainty.unwrap() > 0.0);
    let names: Vec<&str> = doc.regions.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "forehead",
        "nose",
        "cheek_left",
        "cheek_right",
        "chin",
        "perioral",
        "periorbital_left",
        "periorbital_right",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(doc.face.is_some());
    assert!(doc.quality.checks.iter().any(|c| c.name == "face_yaw_deg"));
    // The portrait's own pixel (≈ 0.29 mm) sets the smallest pore counted, and the report says so.
    let smallest = format!("narrower than {:.2} mm", 1.0 / s);
    assert!(
        doc.notes
            .iter()
            .any(|n| n.contains(&smallest) && n.contains("below its resolution")),
        "{smallest}: {:?}",
        doc.notes
    );
    // 2.5 portrait pixels (≈ 0.71 mm) are wider than the narrowest icepick scars: the report
    // says they may be counted as pores.
    let icepick = format!("icepick scars narrower than {:.2} mm", 2.5 / s);
    assert!(
        doc.notes.iter().any(|n| n.contains(&icepick)),
        "{icepick}: {:?}",
        doc.notes
    );
    let png = image::open(&overlay).unwrap();
    assert_eq!((png.width(), png.height()), (1350, 1350));
}

#[test]
fn auto_falls_back_to_whole_without_a_face_and_face_mode_errors() {
    let dir = tempfile::tempdir().unwrap();
    let photo = skin_png(dir.path());
    let o = run(&["analyze", photo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Doc = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc.regions_mode.as_deref(), Some("whole"));
    assert!(
        doc.notes.iter().any(|n| n.contains("no face found")),
        "{:?}",
        doc.notes
    );

    let out = dir.path().join("f.json");
    let o = run(&[
        "analyze",
        photo.to_str().unwrap(),
        "--regions",
        "face",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = parse(&out);
    assert_eq!(doc.error.unwrap().kind, "no_face");
}

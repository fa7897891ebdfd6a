//! The committed JSON Schemas (`schemas/*.schema.json`) equal the ones generated from the
//! Rust types, and real outputs validate against them: an analyze document (face regions,
//! and a failed photo), and the subject and cohort documents of a run on the demo study.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path(name: &str) -> PathBuf {
    repo().join("schemas").join(format!("{name}.schema.json"))
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn validate(schema: &str, document: &Path) {
    let validator = jsonschema::validator_for(&load(&schema_path(schema))).unwrap();
    let instance = load(document);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} vs {schema}: {errors:#?}",
        document.display()
    );
}

#[test]
fn committed_schemas_equal_the_generated_ones() {
    let bless = std::env::var_os("DERMATRACK_BLESS").is_some();
    for (name, schema) in dermatrack::schema::json_schemas() {
        let path = schema_path(name);
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed,
            text,
            "{} is stale: regenerate with DERMATRACK_BLESS=1 cargo test --test schemas",
            path.display()
        );
    }
}

#[test]
fn analyze_documents_validate() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.json");
    let portrait = repo().join("fixtures/faces/london_038_neutral.jpg");
    let status = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .args([
            "analyze",
            portrait.to_str().unwrap(),
            "--regions",
            "face",
            "-o",
        ])
        .arg(&ok)
        .status()
        .unwrap();
    assert!(status.success());
    validate("analyze", &ok);

    let failed = dir.path().join("failed.json");
    let status = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .args(["analyze", "/no/such/photo.jpg", "--regions", "whole", "-o"])
        .arg(&failed)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    validate("analyze", &failed);

    // The schema is not vacuous: a document with a wrong type is rejected.
    let mut bad = load(&ok);
    bad["image"]["width"] = Value::String("wide".into());
    let validator = jsonschema::validator_for(&load(&schema_path("analyze"))).unwrap();
    assert!(!validator.is_valid(&bad));
}

#[test]
fn subject_and_cohort_documents_validate() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .args(["run", "--regions", "whole", "--out"])
        .arg(dir.path())
        .arg(repo().join("fixtures/demo-study"))
        .status()
        .unwrap();
    assert!(status.success());
    let subjects: Vec<PathBuf> = std::fs::read_dir(dir.path().join("subjects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(subjects.len(), 2);
    for s in &subjects {
        validate("subject", s);
    }
    validate("cohort", &dir.path().join("cohort.json"));
}

#[test]
fn compare_documents_validate_and_the_cli_folds_outcomes_into_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let before = repo().join("fixtures/faces/london_038_neutral.jpg");
    // AFTER: the portrait moved by 12 px and turned by 2°, re-encoded.
    let photo =
        dermatrack::io::load_photo(&before, &dermatrack::io::LoadOptions::default()).unwrap();
    let moved = dermatrack::phantom::perturb(
        &photo.pixels,
        &dermatrack::phantom::Perturbation {
            shift_px: [12.0, 0.0],
            rotation_deg: 2.0,
            ..Default::default()
        },
    )
    .unwrap();
    let after = dir.path().join("after.png");
    image::DynamicImage::ImageRgb32F(moved)
        .to_rgb8()
        .save(&after)
        .unwrap();

    let ok = dir.path().join("ok.json");
    let overlay = dir.path().join("pair.png");
    let output = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .arg("compare")
        .arg(&before)
        .arg(&after)
        .args(["--regions", "face", "-o"])
        .arg(&ok)
        .arg("--overlay")
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    validate("compare", &ok);
    let doc = load(&ok);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["alignment"]["aligned"], true);
    assert_eq!(doc["regions"].as_array().unwrap().len(), 8);
    let change = &doc["regions"][0]["metrics"]["hyperpigmentation"]["area_fraction"];
    for key in ["before", "after", "delta", "significant"] {
        assert!(!change[key].is_null(), "{key} missing in {change}");
    }
    // Three panels side by side, each at most 1200 px high.
    let (w, h) = image::image_dimensions(&overlay).unwrap();
    assert!(h <= 1200 && w > 3 * h / 2, "{w}×{h}");

    // A missing AFTER: a failed document and exit code 1.
    let failed = dir.path().join("failed.json");
    let status = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .arg("compare")
        .arg(&before)
        .arg(dir.path().join("missing.jpg"))
        .args(["--regions", "face", "-o"])
        .arg(&failed)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    validate("compare", &failed);
    assert_eq!(load(&failed)["status"], "failed");

    // A chart for one photo only is a usage error: exit code 2, no document.
    let status = Command::new(env!("CARGO_BIN_EXE_dermatrack"))
        .arg("compare")
        .arg(&before)
        .arg(&after)
        .arg("--chart-before")
        .arg(dir.path().join("chart.json"))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

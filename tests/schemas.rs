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

//! JSON Schemas of the documents dermatrack writes, generated from the Rust types.
//!
//! Why generated: a hand-written schema drifts from the code; a schema derived from the very
//! types that serialize the documents cannot. The committed copies in `schemas/` are what
//! other tools (R, pandas, validators) read; `tests/schemas.rs` fails when they differ from the
//! generated ones (regenerate with `DERMATRACK_BLESS=1 cargo test --test schemas`) and
//! validates real outputs against them.

use serde_json::Value;

/// `(file stem, schema)` for every document: `analyze` ([`crate::report::AnalysisDocument`]),
/// `subject` ([`crate::progress_report::SubjectReport`]), `cohort`
/// ([`crate::cohort::CohortDocument`]) and `compare` ([`crate::compare::CompareDocument`]).
pub fn json_schemas() -> Vec<(&'static str, Value)> {
    let value = |schema: schemars::Schema| schema.to_value();
    vec![
        (
            "analyze",
            value(schemars::schema_for!(crate::report::AnalysisDocument)),
        ),
        (
            "subject",
            value(schemars::schema_for!(crate::progress_report::SubjectReport)),
        ),
        (
            "cohort",
            value(schemars::schema_for!(crate::cohort::CohortDocument)),
        ),
        (
            "compare",
            value(schemars::schema_for!(crate::compare::CompareDocument)),
        ),
    ]
}

//! Stage 9b: a [`Study`] → one stored [`AnalysisDocument`] per photo, in parallel and
//! incrementally; then the progress reports and cohort tables ([`run_study`]).
//!
//! **Store.** Each photo's document is kept as `OUT/photos/<photo sha256>-<key>.json`, where
//! `key` hashes everything that can change the numbers: the skin model's sha256, the face
//! models' sha256s, the settings (as JSON) and the tool version ([`analysis_key`]). A later run
//! reuses a document whose name matches and whose content parses and agrees (status ok, same
//! photo sha256, same schema version); a run with nothing new analyses nothing, and a new
//! session costs only its own photos. Failed photos are stored too (for inspection) but retried
//! on every run, since failures are often fixed by replacing a file or a library.
//!
//! **Why files and rename, not SQLite.** One file per photo written with
//! [`write_atomic`] (write `.part`, fsync, rename, fsync the folder) is crash-safe on POSIX
//! file systems without a database engine: a `kill -9` leaves either the old state or the
//! complete new file, never a half-written document, and a stray `.part` is never read. Files
//! are also what researchers can open, diff, archive and `rsync`, and parallel workers never
//! contend for a database lock.
//!
//! **Parallelism.** rayon is used here and nowhere else in the batch: one thread pool of
//! `jobs` threads maps over the photos to analyse. [`Analyzer`] owns ONNX sessions (run with
//! `&mut self`, not `Sync`), so analyzers live in a small free list: a worker takes one (or
//! creates one the first time, at most `jobs` in all), analyses a photo and gives it back.
//! ONNX Runtime is kept to one intra-op thread per analyzer so the two pools do not fight.
//! Only the per-photo documents (a few kB each) are kept in memory, never images or maps.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::analyze::{AnalyzeOptions, Analyzer};
use crate::error::{Error, Result};
use crate::progress_report::{NoiseFloor, Provenance, SubjectReport};
use crate::report::{ANALYZE_SCHEMA_VERSION, AnalysisDocument, Settings, Status, ToolInfo};
use crate::study::{Issue, Study, StudyPhoto, safe_file_stem};

/// Settings of a study run. Build with [`RunOptions::new`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Analysis settings; `px_per_mm` is the fallback for photos without a manifest value
    /// (a manifest's per-photo `px_per_mm` is more specific and wins). `intra_threads` is
    /// forced to 1. Default: [`AnalyzeOptions::default`].
    pub analyze: AnalyzeOptions,
    /// Worker threads. Default: the number of cores.
    pub jobs: usize,
    /// Output folder (created).
    pub out: PathBuf,
    /// Minimal detectable changes. Default: [`crate::progress_report::default_noise_floor`].
    pub noise_floor: Option<PathBuf>,
}

impl RunOptions {
    /// Defaults, writing to `out`.
    pub fn new(out: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            analyze: AnalyzeOptions::default(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            out: out.into(),
            noise_floor: None,
        }
    }
}

/// What happened to one photo, reported as it finishes (from worker threads).
#[derive(Debug, Clone)]
pub struct PhotoProgress<'a> {
    /// Photos finished so far in this run, including this one.
    pub done: usize,
    /// Photos to analyse in this run (stored documents that were reused are not counted).
    pub total: usize,
    /// The photo.
    pub photo: &'a StudyPhoto,
    /// The error, when it failed.
    pub error: Option<&'a str>,
    /// Seconds spent on it.
    pub seconds: f64,
}

/// A photo that could not be analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedPhoto {
    /// Path relative to the study.
    pub path: String,
    /// Error kind.
    pub kind: String,
    /// Error message.
    pub message: String,
}

/// What a run did; also written to `OUT/run.json` with the validation issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Photos in the study (duplicates included).
    pub photos: usize,
    /// Photos analysed in this run.
    pub analysed: usize,
    /// Stored documents reused.
    pub reused: usize,
    /// Photos that failed (missing files included).
    pub failed: usize,
    /// Validation issues found in the study.
    pub issues: usize,
    /// Subject reports written.
    pub subjects: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// `OUT/run.json`: the run summary and the validation report.
#[derive(Debug, Clone, Serialize)]
pub struct RunDocument<'a> {
    /// Layout version (1).
    pub schema_version: u32,
    /// Tool, models, settings and time.
    pub provenance: &'a Provenance,
    /// Counts.
    pub summary: &'a RunSummary,
    /// Photos that failed, with their errors.
    pub failed: &'a [FailedPhoto],
    /// Everything ingest could not use.
    pub issues: &'a [Issue],
}

/// The documents of a study, index-aligned with `study.photos`.
#[derive(Debug)]
pub struct Scored {
    /// `documents[i]` belongs to `study.photos[i]`.
    pub documents: Vec<AnalysisDocument>,
    /// Counts (without `subjects`, filled in by [`run_study`]).
    pub summary: RunSummary,
    /// Provenance of the run.
    pub provenance: Provenance,
}

/// Hash of everything that can change a photo's numbers; part of the stored file's name.
///
/// `face_sha256s` are the face models' sha256s (empty when they are not installed); they are
/// included even for `whole` runs, so the key does not depend on the region mode's code path.
pub fn analysis_key(model_sha256: &str, face_sha256s: &[String], settings: &Settings) -> String {
    let identity = serde_json::json!({
        "tool": ToolInfo::current(),
        "schema_version": ANALYZE_SCHEMA_VERSION,
        "skin_model_sha256": model_sha256,
        "face_models_sha256": face_sha256s,
        "settings": settings,
        // The custom regions' content, not only their path, decides the numbers.
        "regions_file_sha256": settings
            .regions_file
            .as_deref()
            .map(|p| crate::io::sha256_file(p).unwrap_or_default()),
    });
    let digest = Sha256::digest(identity.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The face models' `(name, sha256)` from `<models>/face/face_models.json` (sorted by name),
/// or empty when they are not installed. Read from the manifest rather than by hashing the
/// files: loading refuses a file whose sha256 differs from its manifest, so the two agree.
pub fn face_models(models_dir: &Path) -> Vec<(String, String)> {
    let path = models_dir.join("face").join(crate::face::FACE_MANIFEST);
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = value["models"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.iter())
        .filter_map(|(name, m)| Some((name.clone(), m["onnx_sha256"].as_str()?.to_string())))
        .collect();
    out.sort();
    out
}

/// Writes `bytes` to `path` so that a crash at any moment leaves either the previous file or
/// the complete new one: write `path.part`, fsync it, rename over `path`, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut file = std::fs::File::create(&part).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&part, path).map_err(write_err)?;
    // The rename itself is durable only once the folder is synced (POSIX).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises pretty JSON with a final newline and writes it atomically.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Reads a stored document, accepting it only when it is complete and agrees with the photo.
/// Anything else (truncated, from another schema, failed, another photo) means "analyse again".
fn load_stored(path: &Path, sha256: &str) -> Option<AnalysisDocument> {
    let text = std::fs::read(path).ok()?;
    let doc: AnalysisDocument = serde_json::from_slice(&text).ok()?;
    (doc.schema_version == ANALYZE_SCHEMA_VERSION
        && doc.status == Status::Ok
        && doc.image.sha256.as_deref() == Some(sha256))
    .then_some(doc)
}

struct Job {
    /// Index of the first photo with these bytes and settings.
    photo: usize,
    options: AnalyzeOptions,
    store: Option<PathBuf>,
}

/// Analyses every photo of `study` not already stored under `options.out`, calling `progress`
/// after each one. A failed photo never stops the batch; it gets a failed document.
///
/// Errors only for setup problems (models, ONNX Runtime, an output folder that cannot be
/// written).
pub fn score_study(
    study: &Study,
    options: &RunOptions,
    progress: &(dyn Fn(&PhotoProgress<'_>) + Sync),
) -> Result<Scored> {
    let started = Instant::now();
    let mut base = options.analyze.clone();
    base.intra_threads = 1;
    // Created up front: a missing model is a setup error before any photo is touched.
    let first = Analyzer::new(base.clone())?;
    let model = first.model_info();
    let faces = face_models(&base.models_dir);
    let face_sha: Vec<String> = faces.iter().map(|(_, sha)| sha.clone()).collect();
    let photos_dir = options.out.join("photos");
    std::fs::create_dir_all(&photos_dir).map_err(|source| Error::Write {
        path: photos_dir.clone(),
        source,
    })?;

    let mut documents: Vec<Option<AnalysisDocument>> = vec![None; study.photos.len()];
    let mut jobs: Vec<Job> = Vec::new();
    // Same bytes and same settings → one analysis; later photos copy the document.
    let mut same: Vec<(usize, usize)> = Vec::new();
    let mut first_by_store: std::collections::HashMap<PathBuf, usize> = Default::default();
    let mut reused = 0;
    for (i, photo) in study.photos.iter().enumerate() {
        let mut photo_options = base.clone();
        photo_options.px_per_mm = photo.px_per_mm.or(base.px_per_mm);
        let store = photo.sha256.as_ref().map(|sha| {
            let key = analysis_key(&model.sha256, &face_sha, &photo_options.settings());
            photos_dir.join(format!("{sha}-{key}.json"))
        });
        if let Some(store) = &store {
            if let Some(&j) = first_by_store.get(store) {
                same.push((i, j));
                continue;
            }
            first_by_store.insert(store.clone(), i);
            if let Some(doc) = load_stored(store, photo.sha256.as_deref().unwrap_or_default()) {
                documents[i] = Some(doc);
                reused += 1;
                continue;
            }
        }
        jobs.push(Job {
            photo: i,
            options: photo_options,
            store,
        });
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.max(1))
        .thread_name(|i| format!("dermatrack-{i}"))
        .build()
        .map_err(|e| Error::InvalidSetting {
            name: "jobs",
            message: format!("cannot start {} worker threads: {e}", options.jobs),
        })?;
    let free = Mutex::new(vec![first]);
    let done = AtomicUsize::new(0);
    let total = jobs.len();
    let results: Vec<(usize, AnalysisDocument)> = pool.install(|| {
        jobs.par_iter()
            .map(|job| -> Result<(usize, AnalysisDocument)> {
                let photo = &study.photos[job.photo];
                let t0 = Instant::now();
                let taken = free.lock().expect("no panic while holding the lock").pop();
                let mut analyzer = match taken {
                    Some(a) => a,
                    None => Analyzer::new(job.options.clone())?,
                };
                *analyzer.options_mut() = job.options.clone();
                let document = analyzer.document(&photo.path);
                free.lock()
                    .expect("no panic while holding the lock")
                    .push(analyzer);
                if let Some(store) = &job.store {
                    write_json_atomic(store, &document)?;
                }
                progress(&PhotoProgress {
                    done: done.fetch_add(1, Ordering::SeqCst) + 1,
                    total,
                    photo,
                    error: document.error.as_ref().map(|e| e.message.as_str()),
                    seconds: t0.elapsed().as_secs_f64(),
                });
                Ok((job.photo, document))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let analysed = results.len();
    for (i, doc) in results {
        documents[i] = Some(doc);
    }
    for (i, j) in same {
        documents[i] = documents[j].clone();
    }
    let documents: Vec<AnalysisDocument> = documents
        .into_iter()
        .map(|d| d.expect("every photo is either reused, analysed or a copy"))
        .collect();
    let failed = documents
        .iter()
        .filter(|d| d.status == Status::Failed)
        .count();
    let settings = base.settings();
    Ok(Scored {
        summary: RunSummary {
            photos: study.photos.len(),
            analysed,
            reused,
            failed,
            issues: study.issues.len(),
            subjects: 0,
            seconds: started.elapsed().as_secs_f64(),
        },
        provenance: Provenance::new(&model, &faces, settings),
        documents,
    })
}

/// The whole `dermatrack run`: score every photo ([`score_study`]), then write
/// `OUT/subjects/<id>.json` (progress reports), `OUT/scores.csv`, `OUT/changes.csv`,
/// `OUT/cohort.json` and `OUT/run.json` (summary, failures and validation issues).
pub fn run_study(
    study: &Study,
    options: &RunOptions,
    progress: &(dyn Fn(&PhotoProgress<'_>) + Sync),
) -> Result<RunSummary> {
    let noise_path = options.noise_floor.clone().unwrap_or_else(|| {
        crate::progress_report::default_noise_floor(
            &options.analyze.models_dir,
            options.analyze.regions,
            options.analyze.regions_file.is_some(),
        )
    });
    let noise = NoiseFloor::load(&noise_path)?;
    let mut scored = score_study(study, options, progress)?;
    scored.provenance.noise_floor = Some(noise.describe(&noise_path));
    let reports = crate::progress_report::subject_reports(
        study,
        &scored.documents,
        &noise,
        &scored.provenance,
    );
    let subjects_dir = options.out.join("subjects");
    for report in &reports {
        let path = subjects_dir.join(format!("{}.json", safe_file_stem(&report.subject)));
        write_json_atomic(&path, report)?;
    }
    crate::cohort::write_tables(
        &options.out,
        study,
        &scored.documents,
        &reports,
        &noise,
        &scored.provenance,
    )?;
    let failed: Vec<FailedPhoto> = study
        .photos
        .iter()
        .zip(&scored.documents)
        .filter_map(|(p, d)| {
            d.error.as_ref().map(|e| FailedPhoto {
                path: p.display.clone(),
                kind: e.kind.clone(),
                message: e.message.clone(),
            })
        })
        .collect();
    let mut summary = scored.summary.clone();
    summary.subjects = reports.len();
    summary.seconds = scored.summary.seconds;
    write_json_atomic(
        &options.out.join("run.json"),
        &RunDocument {
            schema_version: 1,
            provenance: &scored.provenance,
            summary: &summary,
            failed: &failed,
            issues: &study.issues,
        },
    )?;
    Ok(summary)
}

/// The subject reports a run would write, for callers that want them in memory.
pub fn reports_for(study: &Study, scored: &Scored, noise: &NoiseFloor) -> Vec<SubjectReport> {
    crate::progress_report::subject_reports(study, &scored.documents, noise, &scored.provenance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn key_changes_with_every_input() {
        let s = AnalyzeOptions::default().settings();
        let k = analysis_key("m", &["f".into()], &s);
        assert_eq!(k.len(), 16);
        assert_eq!(k, analysis_key("m", &["f".into()], &s));
        assert_ne!(k, analysis_key("m2", &["f".into()], &s));
        assert_ne!(k, analysis_key("m", &["g".into()], &s));
        let mut s2 = s.clone();
        s2.px_per_mm = Some(10.0);
        assert_ne!(k, analysis_key("m", &["f".into()], &s2));
    }

    #[test]
    fn truncated_or_failed_documents_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, b"{\"schema_version\": 1, \"tool\": {").unwrap();
        assert!(load_stored(&p, "abc").is_none());
        assert!(load_stored(&dir.path().join("missing.json"), "abc").is_none());
    }
}

//! Stage 9a: a study on disk → [`Study`], a flat list of [`StudyPhoto`]s plus the
//! [`Issue`]s found on the way.
//!
//! Why a stage of its own: clinical photo sets arrive as folders copied from cameras and as
//! spreadsheets exported from trial databases. Both are messy (stray files, copied photos, typos
//! in dates), and a batch that silently skipped what it did not understand would bias the
//! results. So ingest never drops anything quietly: everything it cannot use becomes an
//! [`Issue`] in the run's validation report.
//!
//! Two layouts are read:
//!
//! * **Folders**: `STUDY/SUBJECT/SESSION/VIEW.jpg`. The session folder is named by an ISO date
//!   (`2026-01-15`) or a date and a label (`2026-01-15_baseline`). A folder named by a label only
//!   takes its date (and optionally `arm`, `treatment`) from `STUDY/sessions.csv`
//!   (`subject,session,date[,arm][,treatment]`). The view is the photo's file stem.
//! * **Manifest**: a CSV file (`STUDY/manifest.csv`, or the CSV file itself given as `STUDY`)
//!   with the header `subject,session,date,view,arm,path` and optional `px_per_mm` (calibrated
//!   scale of that photo) and `treatment` (what was done at that session; empty or `none` = no
//!   treatment). Paths are relative to the manifest's folder. Extra columns are kept.
//!
//! CSV is parsed by a small RFC 4180 reader ([`parse_csv`]): quoted fields, doubled quotes,
//! commas and line breaks inside quotes, CRLF.
//!
//! Identifiers (subject, session, view) come from file names and spreadsheets, so they are
//! untrusted: [`safe_file_stem`] turns them into file names that cannot escape the output
//! folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// File extensions taken as photos (case-insensitive). Content is still checked when the photo
/// is decoded; a text file named `.jpg` fails there, with its own error.
pub const PHOTO_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "tif", "tiff"];

/// The manifest's file name inside a study folder.
pub const MANIFEST_NAME: &str = "manifest.csv";

/// Session dates for label-named session folders.
pub const SESSIONS_NAME: &str = "sessions.csv";

/// A calendar date (proleptic Gregorian), kept as its ISO text and its day number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl Date {
    /// Parses `YYYY-MM-DD`, checking the month and the day against the month's length.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date {
            days: days_from_civil(y, m, d),
        })
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i64, i64, i64) {
        civil_from_days(self.days)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        Date::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("bad date {text:?}")))
    }
}

/// Dates are ISO 8601 calendar dates in JSON (`"2026-01-15"`).
impl schemars::JsonSchema for Date {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Date".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
        })
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One photo of the study, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StudyPhoto {
    /// Subject identifier, as given (untrusted; see [`safe_file_stem`]).
    pub subject: String,
    /// Session identifier (folder name or manifest value).
    pub session: String,
    /// Session date.
    pub date: Date,
    /// View ("front", "left", ...): the file stem in the folder layout.
    pub view: String,
    /// Treatment arm. Default: "all".
    pub arm: String,
    /// What was done at this session, if known; `None` = not recorded (every session is then
    /// assumed to be a treatment session, the usual course of treatment photography).
    pub treatment: Option<String>,
    /// The photo file.
    pub path: PathBuf,
    /// The path relative to the study, for display.
    pub display: String,
    /// sha256 of the file's bytes; `None` when it is missing or unreadable.
    pub sha256: Option<String>,
    /// Calibrated scale of this photo (manifest `px_per_mm` column).
    pub px_per_mm: Option<f64>,
    /// `Some(display path of the first copy)` when the same bytes appeared earlier in the
    /// study: the photo is analysed once and left out of the progress reports.
    pub duplicate_of: Option<String>,
    /// Manifest columns not interpreted, kept for the outputs.
    pub extra: BTreeMap<String, String>,
}

/// What kind of problem ingest found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// A file that is not a photo (by extension), in the folder layout.
    UnknownFile,
    /// A photo file whose bytes equal an earlier photo's.
    DuplicatePhoto,
    /// A photo listed in the manifest that does not exist (or cannot be read).
    MissingFile,
    /// A session date that is not a valid `YYYY-MM-DD`, or no date at all.
    BadDate,
    /// A session folder without photos.
    EmptySession,
    /// A photo file under a manifest study that the manifest does not list.
    UnlistedPhoto,
    /// A manifest row that cannot be used (wrong number of fields, empty identifiers, bad
    /// `px_per_mm`).
    BadRow,
    /// A file or folder in a place the folder layout does not expect.
    UnexpectedLayout,
}

/// One problem found in the study; the run reports all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Issue {
    /// What kind.
    pub kind: IssueKind,
    /// The file or folder concerned, relative to the study.
    pub path: String,
    /// Subject, when known.
    pub subject: Option<String>,
    /// What is wrong and what was done about it.
    pub message: String,
}

/// How the study was described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `SUBJECT/SESSION/VIEW.jpg` folders.
    Folders,
    /// A manifest CSV.
    Manifest,
}

/// A study: every usable photo and every problem found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Study {
    /// The study folder (the manifest's folder in manifest mode).
    pub root: PathBuf,
    /// How it was read.
    pub layout: Layout,
    /// Photos in a stable order (subject, date, session, view, path).
    pub photos: Vec<StudyPhoto>,
    /// Problems, in discovery order.
    pub issues: Vec<Issue>,
}

impl Study {
    /// Reads a study: a folder (with or without `manifest.csv`) or a manifest CSV file.
    ///
    /// Errors only when the study itself cannot be read (not found, unreadable manifest
    /// header); everything about individual files becomes an [`Issue`].
    pub fn open(path: &Path) -> Result<Study> {
        let read_err = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mut study = if meta.is_file() {
            let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            read_manifest(&root, path)?
        } else if path.join(MANIFEST_NAME).is_file() {
            read_manifest(path, &path.join(MANIFEST_NAME))?
        } else {
            read_folders(path)?
        };
        study.photos.sort_by(|a, b| {
            (&a.subject, a.date, &a.session, &a.view, &a.display)
                .cmp(&(&b.subject, b.date, &b.session, &b.view, &b.display))
        });
        study.hash_and_find_duplicates();
        Ok(study)
    }

    /// Subjects in order, each with its photos.
    pub fn subjects(&self) -> BTreeMap<&str, Vec<&StudyPhoto>> {
        let mut out: BTreeMap<&str, Vec<&StudyPhoto>> = BTreeMap::new();
        for p in &self.photos {
            out.entry(p.subject.as_str()).or_default().push(p);
        }
        out
    }

    fn hash_and_find_duplicates(&mut self) {
        let mut seen: HashMap<String, String> = HashMap::new();
        for photo in &mut self.photos {
            match crate::io::sha256_file(&photo.path) {
                Ok(sha) => {
                    if let Some(first) = seen.get(&sha) {
                        self.issues.push(Issue {
                            kind: IssueKind::DuplicatePhoto,
                            path: photo.display.clone(),
                            subject: Some(photo.subject.clone()),
                            message: format!(
                                "same bytes (sha256 {}) as {first}: analysed once, left out of \
                                 the progress reports",
                                &sha[..12]
                            ),
                        });
                        photo.duplicate_of = Some(first.clone());
                    } else {
                        seen.insert(sha.clone(), photo.display.clone());
                    }
                    photo.sha256 = Some(sha);
                }
                // A listed file that does not exist was reported when the manifest was read.
                Err(_) if !photo.path.exists() => {}
                Err(e) => self.issues.push(Issue {
                    kind: IssueKind::MissingFile,
                    path: photo.display.clone(),
                    subject: Some(photo.subject.clone()),
                    message: format!("{e}; recorded as a failed photo"),
                }),
            }
        }
    }
}

fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Entries of a folder, sorted by name (file systems list in arbitrary order).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

/// Splits a session folder name into its date and label: `2026-01-15` or `2026-01-15_label`.
pub fn parse_session_name(name: &str) -> Option<(Date, Option<&str>)> {
    let date = Date::parse(name.get(..10)?)?;
    match &name[10..] {
        "" => Some((date, None)),
        rest => rest
            .strip_prefix(['_', '-', ' '])
            .map(|label| (date, (!label.is_empty()).then_some(label))),
    }
}

struct SessionInfo {
    date: Option<String>,
    arm: Option<String>,
    treatment: Option<String>,
}

fn read_sessions_csv(
    path: &Path,
    issues: &mut Vec<Issue>,
) -> Result<HashMap<(String, String), SessionInfo>> {
    let mut out = HashMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table = Table::parse(&text, path)?;
    table.require(&["subject", "session", "date"], path)?;
    for (i, row) in table.rows.iter().enumerate() {
        let get = |c: &str| table.get(row, c).map(str::to_string);
        let (Some(subject), Some(session)) = (get("subject"), get("session")) else {
            issues.push(bad_row(SESSIONS_NAME, i, "empty subject or session"));
            continue;
        };
        out.insert(
            (subject, session),
            SessionInfo {
                date: get("date"),
                arm: get("arm"),
                treatment: get("treatment"),
            },
        );
    }
    Ok(out)
}

fn bad_row(file: &str, index: usize, message: &str) -> Issue {
    Issue {
        kind: IssueKind::BadRow,
        path: format!("{file}:{}", index + 2),
        subject: None,
        message: format!("row {} skipped: {message}", index + 2),
    }
}

fn read_folders(root: &Path) -> Result<Study> {
    let mut issues = Vec::new();
    let sessions = read_sessions_csv(&root.join(SESSIONS_NAME), &mut issues)?;
    let mut photos = Vec::new();
    for subject_dir in sorted_entries(root)? {
        let name = file_name(&subject_dir);
        if !subject_dir.is_dir() {
            if name != SESSIONS_NAME {
                issues.push(Issue {
                    kind: IssueKind::UnknownFile,
                    path: relative(root, &subject_dir),
                    subject: None,
                    message: "file at the top of the study (expected SUBJECT/SESSION/photo): \
                              ignored"
                        .into(),
                });
            }
            continue;
        }
        let subject = name;
        for session_dir in sorted_entries(&subject_dir)? {
            let session = file_name(&session_dir);
            let rel = relative(root, &session_dir);
            if !session_dir.is_dir() {
                issues.push(Issue {
                    kind: IssueKind::UnexpectedLayout,
                    path: rel,
                    subject: Some(subject.clone()),
                    message: "file directly in a subject folder (expected SUBJECT/SESSION/photo): \
                              ignored"
                        .into(),
                });
                continue;
            }
            let info = sessions.get(&(subject.clone(), session.clone()));
            let date = match (
                parse_session_name(&session),
                info.and_then(|i| i.date.as_deref()),
            ) {
                (_, Some(text)) => Date::parse(text).ok_or_else(|| {
                    format!("{SESSIONS_NAME} gives the date {text:?}, expected YYYY-MM-DD")
                }),
                (Some((date, _)), None) => Ok(date),
                (None, None) => Err(format!(
                    "session folder {session:?} is not named YYYY-MM-DD[_label] and \
                     {SESSIONS_NAME} gives no date for it"
                )),
            };
            let files = sorted_entries(&session_dir)?;
            let date = match date {
                Ok(d) => d,
                Err(message) => {
                    issues.push(Issue {
                        kind: IssueKind::BadDate,
                        path: rel,
                        subject: Some(subject.clone()),
                        message: format!(
                            "{message}; its {} file(s) were not analysed",
                            files.len()
                        ),
                    });
                    continue;
                }
            };
            let mut any = false;
            for file in files {
                let rel_file = relative(root, &file);
                if file.is_dir() {
                    issues.push(Issue {
                        kind: IssueKind::UnexpectedLayout,
                        path: rel_file,
                        subject: Some(subject.clone()),
                        message: "folder inside a session folder: ignored".into(),
                    });
                    continue;
                }
                if !is_photo(&file) {
                    issues.push(Issue {
                        kind: IssueKind::UnknownFile,
                        path: rel_file,
                        subject: Some(subject.clone()),
                        message: format!(
                            "not a photo (expected one of: {}): ignored",
                            PHOTO_EXTENSIONS.join(", ")
                        ),
                    });
                    continue;
                }
                any = true;
                photos.push(StudyPhoto {
                    subject: subject.clone(),
                    session: session.clone(),
                    date,
                    view: file
                        .file_stem()
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                    arm: info
                        .and_then(|i| i.arm.clone())
                        .unwrap_or_else(|| "all".into()),
                    treatment: info.and_then(|i| i.treatment.clone()),
                    path: file,
                    display: rel_file,
                    sha256: None,
                    px_per_mm: None,
                    duplicate_of: None,
                    extra: BTreeMap::new(),
                });
            }
            if !any {
                issues.push(Issue {
                    kind: IssueKind::EmptySession,
                    path: relative(root, &session_dir),
                    subject: Some(subject.clone()),
                    message: "session folder without photos".into(),
                });
            }
        }
    }
    Ok(Study {
        root: root.to_path_buf(),
        layout: Layout::Folders,
        photos,
        issues,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Columns the manifest must have.
pub const MANIFEST_COLUMNS: [&str; 6] = ["subject", "session", "date", "view", "arm", "path"];

fn read_manifest(root: &Path, manifest: &Path) -> Result<Study> {
    let text = std::fs::read_to_string(manifest).map_err(|source| Error::Read {
        path: manifest.to_path_buf(),
        source,
    })?;
    let table = Table::parse(&text, manifest)?;
    table.require(&MANIFEST_COLUMNS, manifest)?;
    let name = file_name(manifest);
    let known = |c: &str| MANIFEST_COLUMNS.contains(&c) || c == "px_per_mm" || c == "treatment";
    let mut issues = Vec::new();
    let mut photos = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for (i, row) in table.rows.iter().enumerate() {
        let get = |c: &str| table.get(row, c).map(str::to_string);
        let (Some(subject), Some(session), Some(view), Some(rel)) =
            (get("subject"), get("session"), get("view"), get("path"))
        else {
            issues.push(bad_row(
                &name,
                i,
                "subject, session, view and path must not be empty",
            ));
            continue;
        };
        let Some(date) = get("date").as_deref().and_then(Date::parse) else {
            issues.push(Issue {
                kind: IssueKind::BadDate,
                path: rel,
                subject: Some(subject),
                message: format!(
                    "{name} row {}: date {:?} is not a valid YYYY-MM-DD; photo not analysed",
                    i + 2,
                    get("date").unwrap_or_default()
                ),
            });
            continue;
        };
        let px_per_mm = match get("px_per_mm") {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Some(v),
                _ => {
                    issues.push(bad_row(
                        &name,
                        i,
                        &format!("px_per_mm {text:?} is not a positive number"),
                    ));
                    continue;
                }
            },
        };
        let path = root.join(&rel);
        listed.insert(path.clone());
        if !path.is_file() {
            issues.push(Issue {
                kind: IssueKind::MissingFile,
                path: rel.clone(),
                subject: Some(subject.clone()),
                message: format!(
                    "{name} row {} lists a file that does not exist; recorded as a failed photo",
                    i + 2
                ),
            });
        }
        let extra = table
            .header
            .iter()
            .enumerate()
            .filter(|(_, c)| !known(c))
            .map(|(j, c)| (c.clone(), row.get(j).cloned().unwrap_or_default()))
            .collect();
        photos.push(StudyPhoto {
            subject,
            session,
            date,
            view,
            arm: get("arm").unwrap_or_else(|| "all".into()),
            treatment: get("treatment"),
            display: rel,
            path,
            sha256: None,
            px_per_mm,
            duplicate_of: None,
            extra,
        });
    }
    // Photos on disk that nobody listed: probably a forgotten row.
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in sorted_entries(&dir)? {
            if entry.is_dir() {
                stack.push(entry);
            } else if is_photo(&entry) && !listed.contains(&entry) {
                issues.push(Issue {
                    kind: IssueKind::UnlistedPhoto,
                    path: relative(root, &entry),
                    subject: None,
                    message: format!("photo not listed in {name}: not analysed"),
                });
            }
        }
    }
    Ok(Study {
        root: root.to_path_buf(),
        layout: Layout::Manifest,
        photos,
        issues,
    })
}

/// A parsed CSV file with a header row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names, trimmed and lower-cased.
    pub header: Vec<String>,
    /// Data rows (blank lines skipped).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses CSV text whose first record is the header.
    pub fn parse(text: &str, path: &Path) -> Result<Table> {
        let mut records = parse_csv(text).map_err(|message| Error::Decode {
            path: path.to_path_buf(),
            message,
        })?;
        if records.is_empty() {
            return Err(Error::Decode {
                path: path.to_path_buf(),
                message: "empty CSV file (expected a header row)".into(),
            });
        }
        let header = records
            .remove(0)
            .into_iter()
            .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        Ok(Table {
            header,
            rows: records,
        })
    }

    fn require(&self, columns: &[&str], path: &Path) -> Result<()> {
        let missing: Vec<&str> = columns
            .iter()
            .filter(|c| !self.header.iter().any(|h| h == *c))
            .copied()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Decode {
                path: path.to_path_buf(),
                message: format!(
                    "missing column(s) {}; expected a header with {}",
                    missing.join(", "),
                    columns.join(",")
                ),
            })
        }
    }

    /// The trimmed, non-empty value of `column` in `row`.
    pub fn get<'a>(&self, row: &'a [String], column: &str) -> Option<&'a str> {
        let i = self.header.iter().position(|h| h == column)?;
        row.get(i).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Parses CSV (RFC 4180): fields separated by commas, records by CRLF or LF; a field in double
/// quotes may contain commas, line breaks and doubled quotes (`""`). Lines that are entirely
/// empty are skipped. An unterminated quote or text after a closing quote is an error naming
/// the line.
pub fn parse_csv(text: &str) -> std::result::Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut at_field_start = true;
    let mut quoted_field = false;
    let end_record =
        |record: &mut Vec<String>, field: &mut String, records: &mut Vec<Vec<String>>| {
            record.push(std::mem::take(field));
            let r = std::mem::take(record);
            if !(r.len() == 1 && r[0].is_empty()) {
                records.push(r);
            }
        };
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                quoted_field = true;
                at_field_start = false;
                let start_line = line;
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!("line {start_line}: unterminated quoted field"));
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            field.push(ch);
                        }
                    }
                }
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut record, &mut field, &mut records);
                line += 1;
                at_field_start = true;
                quoted_field = false;
            }
            _ if quoted_field => {
                return Err(format!("line {line}: text after a closing quote"));
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if !record.is_empty() || !field.is_empty() || quoted_field {
        end_record(&mut record, &mut field, &mut records);
    }
    Ok(records)
}

/// Writes one CSV field, quoting it when it holds a comma, quote or line break (RFC 4180).
pub fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

/// An identifier turned into a safe file-name stem.
///
/// Keeps ASCII letters, digits, `-` and `_`; every other character (including `.`, `/`, `\`,
/// spaces and non-ASCII) becomes `_`, so no stem can be `..`, contain a separator, or start
/// with a dot. When anything was changed (or the identifier is empty or too long), the first 8
/// hex digits of the identifier's sha256 are appended, so two identifiers that differ only in
/// replaced characters still get different files.
pub fn safe_file_stem(id: &str) -> String {
    let mut stem: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if stem != id || stem.is_empty() {
        let hash = Sha256::digest(id.as_bytes());
        let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        if !stem.is_empty() {
            stem.push('-');
        }
        stem.push_str(&hex);
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_are_checked() {
        assert_eq!(Date::parse("1970-01-01").unwrap().days, 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().days, 11_017);
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-15",
            "20260115",
            "2026-01-32",
            "+026-01-01",
        ] {
            assert!(Date::parse(bad).is_none(), "{bad}");
        }
        for days in [-800_000, -1, 0, 59, 10_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn session_names() {
        let (d, l) = parse_session_name("2026-01-15").unwrap();
        assert_eq!((d.to_string().as_str(), l), ("2026-01-15", None));
        let (_, l) = parse_session_name("2026-01-15_baseline").unwrap();
        assert_eq!(l, Some("baseline"));
        assert!(parse_session_name("baseline").is_none());
        assert!(parse_session_name("2026-01-15x").is_none());
        assert!(parse_session_name("2026-02-30").is_none());
    }

    #[test]
    fn csv_quotes_commas_newlines_and_crlf() {
        let text = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n2,\"multi\nline\",\n3,,\"\"";
        let rows = parse_csv(text).unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["a", "b", "c"],
                vec!["1", "x, y", "say \"hi\""],
                vec!["2", "multi\nline", ""],
                vec!["3", "", ""],
            ]
        );
        assert!(parse_csv("a,\"b\nc").unwrap_err().contains("line 1"));
        assert!(
            parse_csv("a,\"b\"x")
                .unwrap_err()
                .contains("after a closing quote")
        );
        assert_eq!(
            parse_csv(&csv_field("a,\"b\"")).unwrap(),
            vec![vec!["a,\"b\""]]
        );
    }

    #[test]
    fn folder_layout_with_label_sessions_dated_by_sessions_csv() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "S1/2026-01-15/front.jpg",
            "S1/week4/front.JPG",
            "S1/week8/front.png",
        ] {
            std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
            std::fs::write(root.join(rel), rel.as_bytes()).unwrap();
        }
        std::fs::write(
            root.join(SESSIONS_NAME),
            "subject,session,date,arm,treatment\nS1,week4,2026-02-12,laser,\"fractional, 1550 nm\"\n",
        )
        .unwrap();
        let study = Study::open(root).unwrap();
        let sessions: Vec<(&str, String)> = study
            .photos
            .iter()
            .map(|p| (p.session.as_str(), p.date.to_string()))
            .collect();
        assert_eq!(
            sessions,
            [
                ("2026-01-15", "2026-01-15".into()),
                ("week4", "2026-02-12".into())
            ]
        );
        assert_eq!(study.photos[1].arm, "laser");
        assert_eq!(
            study.photos[1].treatment.as_deref(),
            Some("fractional, 1550 nm")
        );
        assert_eq!(study.issues.len(), 1);
        assert_eq!(study.issues[0].kind, IssueKind::BadDate);
        assert_eq!(study.issues[0].path, "S1/week8");
    }

    #[test]
    fn identifiers_cannot_escape_the_output_folder() {
        for id in [
            "../../etc",
            "..",
            ".",
            ".hidden",
            "a/b",
            "a\\b",
            "",
            "x\0y",
            "über",
            "../../etc/passwd",
        ] {
            let stem = safe_file_stem(id);
            assert!(!stem.is_empty(), "{id:?}");
            assert!(!stem.starts_with('.'), "{id:?} → {stem}");
            assert!(!stem.contains(['/', '\\', '.', '\0']), "{id:?} → {stem}");
            let joined = Path::new("/out/subjects").join(format!("{stem}.json"));
            assert_eq!(joined.parent(), Some(Path::new("/out/subjects")));
        }
        assert_eq!(safe_file_stem("S01"), "S01");
        assert_ne!(safe_file_stem("a/b"), safe_file_stem("a_b"));
        assert!(safe_file_stem("../../etc").starts_with("______etc-"));
    }
}

//! What it measures: `dermatrack run` throughput on 12-megapixel JPEGs, the size a clinical
//! camera writes, next to the cost of merely decoding the same files.
//!
//! The study is built at bench start in a temporary folder: the bundled portrait
//! (`fixtures/faces/london_038_neutral.jpg`) upscaled to 4000×3000 (face ≈ 1500 px wide) and
//! saved as 4 JPEGs (q92) of 2 subjects × 2 sessions. Each iteration scores the whole study
//! into a fresh output folder (nothing reused), with face regions and the scale from the face:
//!
//! * `decode_only`: `io::load_photo` on the 4 files, serially;
//! * `run_jobs1`, `run_jobs2`: `batch::run_study` with 1 and 2 rayon workers.
//!
//! Throughput is reported in photos/s. Peak memory is not measured by criterion; the README
//! quotes `/usr/bin/time -v target/release/dermatrack run DIR --jobs N` on the same study
//! (written to `target/bench-run-study` by this bench).
//!
//! Run with `cargo bench --bench run`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dermatrack::batch::{RunOptions, run_study};
use dermatrack::io::{LoadOptions, load_photo};
use dermatrack::regions::RegionMode;
use dermatrack::study::Study;

const PHOTOS: usize = 4;

/// Writes the 12-MP study (once; reused if present) and returns its folder and photo paths.
fn make_study() -> (PathBuf, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-run-study");
    let portrait = image::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faces/london_038_neutral.jpg"),
    )
    .expect("bundled portrait")
    .to_rgb8();
    // 1350×1350 → a 4000×3000 frame: scale the square to 3000 px and pad the sides with the
    // portrait's own background color.
    let square = image::imageops::resize(
        &portrait,
        3000,
        3000,
        image::imageops::FilterType::CatmullRom,
    );
    let background = *portrait.get_pixel(5, 5);
    let mut frame = image::RgbImage::from_pixel(4000, 3000, background);
    image::imageops::overlay(&mut frame, &square, 500, 0);
    let mut paths = Vec::new();
    for (i, (subject, session)) in [
        ("S1", "2026-01-05"),
        ("S1", "2026-02-02"),
        ("S2", "2026-01-06"),
        ("S2", "2026-02-03"),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = root.join(subject).join(session);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("front.jpg");
        if !path.exists() {
            // Each photo differs slightly (brightness), so the study has no duplicate sha256.
            let mut photo = frame.clone();
            for p in photo.pixels_mut() {
                p.0 = p.0.map(|v| v.saturating_sub(i as u8));
            }
            let file = std::fs::File::create(&path).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(file, 92)
                .encode_image(&photo)
                .unwrap();
        }
        paths.push(path);
    }
    (root, paths)
}

fn bench(c: &mut Criterion) {
    let (root, paths) = make_study();
    let study = Study::open(&root).expect("study opens");
    let mut group = c.benchmark_group("run_12mp");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(PHOTOS as u64));
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            for p in &paths {
                black_box(load_photo(p, &LoadOptions::default()).unwrap());
            }
        })
    });
    for jobs in [1, 2] {
        group.bench_function(format!("run_jobs{jobs}"), |b| {
            b.iter(|| {
                let out = tempfile::tempdir().unwrap();
                let mut options = RunOptions::new(out.path());
                options.jobs = jobs;
                options.analyze.regions = RegionMode::Face;
                let summary = run_study(&study, &options, &|_| {}).unwrap();
                black_box(summary)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

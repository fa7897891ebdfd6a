//! What it measures: before/after comparison of the bundled 1350×1350 studio portrait
//! (`fixtures/faces/london_038_neutral.jpg`) with a re-captured copy of itself (shift (14, −9)
//! px, rotation 3°, exposure ×1.2, JPEG q90), one ONNX intra-op thread:
//!
//! * `register_pair`: landmark similarity + phase-correlation refinement, given both photos'
//!   landmarks and BEFORE's face mask (`register::register_pair`);
//! * `compare_photos`: the whole comparison (both photos located, registered, colour-normalised,
//!   quality-checked and measured, every change judged).
//!
//! Run with `cargo bench --bench compare`. Results are quoted in the README.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::compare::{CompareOptions, compare_photos};
use dermatrack::io::{LoadOptions, Photo, load_photo};
use dermatrack::phantom::{Perturbation, perturb};
use dermatrack::progress_report::NoiseFloor;
use dermatrack::quality::skin_mask;
use dermatrack::regions::RegionMode;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compare");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faces/london_038_neutral.jpg");
    let before = load_photo(&path, &LoadOptions::default()).unwrap();
    let nuisance = Perturbation {
        shift_px: [14.0, -9.0],
        rotation_deg: 3.0,
        exposure: 1.2,
        jpeg_quality: Some(90),
        ..Perturbation::default()
    };
    let after = Photo::from_pixels("after", perturb(&before.pixels, &nuisance).unwrap());
    let mut analyzer = Analyzer::new(AnalyzeOptions {
        regions: RegionMode::Face,
        ..AnalyzeOptions::default()
    })
    .unwrap();

    let lb = analyzer.locate(before.clone()).unwrap();
    let la = analyzer.locate(after.clone()).unwrap();
    let points = |l: &dermatrack::analyze::Located| -> Vec<[f64; 2]> {
        let face = l.face.as_ref().expect("a face");
        face.landmarks
            .points
            .iter()
            .map(|p| [f64::from(p[0]), f64::from(p[1])])
            .collect()
    };
    let (pb, pa) = (points(&lb), points(&la));
    let (w, h) = before.pixels.dimensions();
    let roi = skin_mask(&lb.regions.regions, w, h);
    group.bench_function("register_pair", |b| {
        b.iter(|| {
            black_box(dermatrack::register::register_pair(
                &before.pixels,
                &after.pixels,
                Some((&pb, &pa)),
                &roi,
                lb.regions.scale.px_per_mm,
            ))
        })
    });

    let floor = NoiseFloor::load(&dermatrack::model::default_models_dir().join("noise_floor.json"))
        .unwrap();
    group.bench_function("compare_photos", |b| {
        b.iter(|| {
            black_box(
                compare_photos(
                    &mut analyzer,
                    before.clone(),
                    after.clone(),
                    &CompareOptions::default(),
                    &floor,
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! What it measures: the single-photo pipeline on the bundled 1350×1350 studio portrait
//! (`fixtures/faces/london_038_neutral.jpg`, face ≈ 515 px wide, ≈ 3.6 px/mm), stage by stage,
//! each with one ONNX intra-op thread (as a batch worker runs it):
//!
//! * `decode_jpeg`: read + sha256 + decode + EXIF orientation (`io::load_photo`);
//! * `face_regions`: detector + 468-point mesh + 8 region masks (`face::face_regions`);
//! * `analyze_face`: the whole pipeline, face regions, scale from the face (decode, QC,
//!   regions, resampling to 10 px/mm, skin model, metrics);
//! * `analyze_phantom_40mm`: the whole pipeline on a 400×400 phantom at its true scale;
//! * `noise_levels`, `pore_noise`: the pore band's noise model (`noise::NoiseLevels::measure` on
//!   the portrait's central crop, and `SkinMaps::pore_noise` of that crop at 3.6 px/mm, band
//!   gain included), the part of `analyze_face` that version 0.4.10 added;
//! * `density_bands`: `pore_band::DensityBands::compute` on the same crop's maps, the band-passes
//!   version 0.4.19's grey pore band adds once per photo (red and green; blue is derived);
//! * `relief_portrait`, `relief_dark_noise`: `relief::Relief::compute`, the part version 0.4.11
//!   added, on the portrait's crop (where the weighting does not pay and is decided against
//!   before the band-passes) and on a 40-mm dark phantom under σ 0.002 linear noise at 10 px/mm
//!   (where it is used).
//!
//! * `wide_excess`: `metrics::wide_excess` of the same crop's melanin map (1875 × 2250 working
//!   pixels at 10 px/mm) over a mask of the whole crop, σ 2.4 and 10 mm: the wide background
//!   version 0.4.23 added, which the metrics run once per region window.
//!
//! Run with `cargo bench --bench pipeline`. Results are quoted in the README.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::face::{FaceModels, face_regions};
use dermatrack::io::{LoadOptions, load_photo};
use dermatrack::phantom::{PhantomSpec, TonePreset, render};
use dermatrack::pore_band::DensityBands;
use dermatrack::regions::RegionMode;
use dermatrack::relief::Relief;

fn portrait() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faces/london_038_neutral.jpg")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let path = portrait();
    group.bench_function("decode_jpeg", |b| {
        b.iter(|| black_box(load_photo(&path, &LoadOptions::default()).unwrap()))
    });

    let photo = load_photo(&path, &LoadOptions::default()).unwrap();
    let models_dir = dermatrack::model::default_models_dir();
    let mut face = FaceModels::load(&models_dir, 1).unwrap();
    group.bench_function("face_regions", |b| {
        b.iter(|| black_box(face_regions(&mut face, &photo.pixels).unwrap()))
    });

    let mut analyzer = Analyzer::new(AnalyzeOptions {
        regions: RegionMode::Face,
        ..AnalyzeOptions::default()
    })
    .unwrap();
    group.bench_function("analyze_face", |b| {
        b.iter(|| black_box(analyzer.analyze_path(&path).unwrap()))
    });

    let phantom = render(&PhantomSpec {
        width_mm: 40.0,
        height_mm: 40.0,
        ..PhantomSpec::default()
    })
    .unwrap();
    let options = analyzer.options_mut();
    options.regions = RegionMode::Whole;
    options.px_per_mm = Some(10.0);
    group.bench_function("analyze_phantom_40mm", |b| {
        b.iter(|| black_box(analyzer.analyze_photo(phantom.to_photo("p")).unwrap()))
    });

    let (w, h) = photo.pixels.dimensions();
    let crop = (w / 4, h / 5, 3 * w / 4, 4 * h / 5);
    group.bench_function("noise_levels", |b| {
        b.iter(|| black_box(dermatrack::noise::NoiseLevels::measure(&photo.pixels, crop)))
    });
    let mut skin = dermatrack::model::SkinModel::load(&models_dir, "skin-v1", 1).unwrap();
    let maps = skin.measure(&photo.pixels, crop, 3.6).unwrap();
    group.bench_function("pore_noise", |b| {
        b.iter_batched(
            || maps.clone(),
            |m| black_box(m.pore_noise().map(|n| n.len())),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("density_bands", |b| {
        b.iter(|| black_box(DensityBands::compute(&maps).is_some()))
    });
    let melanin = maps.channel("melanin").expect("skin-v1 has a melanin map");
    let everywhere = ndarray::Array2::from_elem(melanin.dim(), true);
    let px_per_mm = maps.px_per_mm;
    group.bench_function("wide_excess", |b| {
        b.iter(|| {
            black_box(dermatrack::metrics::wide_excess(
                melanin,
                &everywhere,
                2.4 * px_per_mm,
                10.0 * px_per_mm,
            ))
        })
    });
    // Fresh maps each time: `SkinMaps` keeps the block noise the relief reads once computed.
    group.bench_function("relief_portrait", |b| {
        b.iter_batched(
            || maps.clone(),
            |m| black_box(Relief::compute(&m).is_some()),
            BatchSize::LargeInput,
        )
    });
    let mut spec = PhantomSpec {
        width_mm: 40.0,
        height_mm: 40.0,
        ..PhantomSpec::with_tone(TonePreset::Dark)
    };
    spec.nuisances.noise_sigma = 0.002;
    let dark = render(&spec).unwrap().to_photo("dark").pixels;
    let (w, h) = dark.dimensions();
    let dark_maps = skin.measure(&dark, (0, 0, w, h), 10.0).unwrap();
    assert!(
        Relief::compute(&dark_maps).is_some(),
        "the weighting pays on the dark noisy phantom"
    );
    group.bench_function("relief_dark_noise", |b| {
        b.iter_batched(
            || dark_maps.clone(),
            |m| black_box(Relief::compute(&m).is_some()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

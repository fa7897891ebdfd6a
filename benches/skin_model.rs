//! What it measures: the cost of the skin-v1 model on one 1024×1024 working-scale input
//! (≈ 10 cm × 10 cm of skin at 10 px/mm), four ways:
//!
//! * `onnx_session_exact_{2,1}threads`: ONNX Runtime on exactly that input (no padding, no
//!   tiling) with 2 intra-op threads (as `check_skin_model.py` times it) and with 1 (as each
//!   rayon worker runs it in a batch, and the fair comparison with the serial reference): the
//!   graph's own speed;
//! * `skin_model_infer_tile512`: `SkinModel::infer` (2 threads) with its default 512-px tiles and 128-px
//!   margins (2×2 windows of 768 px): what the pipeline pays, overlap included;
//! * `rust_reference_serial`: `dermatrack::reference`, single-threaded and written for
//!   readability, so it shows how far the check implementation is from production speed.
//!
//! Throughput is in input pixels. Run with `cargo bench --bench skin_model`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dermatrack::model::SkinModel;
use dermatrack::reference::SkinReference;
use image::{Rgb, Rgb32FImage};
use ndarray::{Array4, Axis, Ix4};

const SIDE: u32 = 1024;

/// Skin-coloured image with slow shading, dark dots and a little texture (deterministic).
fn skin_image() -> Rgb32FImage {
    Rgb32FImage::from_fn(SIDE, SIDE, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let shade = 1.0 - 0.1 * (fx / 300.0).sin() * (fy / 410.0).cos();
        let dot = if (x % 37 < 3) && (y % 41 < 3) {
            0.85
        } else {
            1.0
        };
        let tex = 1.0 + 0.02 * ((fx * 1.3 + fy * 0.7).sin() * (fx * 0.4 - fy * 1.1).cos());
        let g = shade * dot * tex;
        Rgb([0.80 * g, 0.60 * g, 0.50 * g])
    })
}

fn bench(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut model = SkinModel::load(&models, "skin-v1", 2).expect("skin-v1 and ONNX Runtime");
    let reference = SkinReference::from_manifest(&model.manifest).unwrap();
    let img = skin_image();
    let input = Array4::from_shape_fn((1, 3, SIDE as usize, SIDE as usize), |(_, ch, y, x)| {
        img.get_pixel(x as u32, y as u32).0[ch]
    });
    let (input_name, output_name) = (
        model.manifest.input.name.clone(),
        model.manifest.outputs.name.clone(),
    );

    let mut group = c.benchmark_group("skin-v1 1024x1024");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(u64::from(SIDE * SIDE)));
    for threads in [2, 1] {
        let mut model = SkinModel::load(&models, "skin-v1", threads).unwrap();
        group.bench_function(format!("onnx_session_exact_{threads}threads"), |b| {
            b.iter(|| {
                let tensor = ort::value::Tensor::from_array(input.clone()).unwrap();
                let outputs = model
                    .session
                    .session
                    .run(ort::inputs![input_name.as_str() => tensor])
                    .unwrap();
                let maps = outputs[output_name.as_str()]
                    .try_extract_array::<f32>()
                    .unwrap()
                    .into_dimensionality::<Ix4>()
                    .unwrap()
                    .index_axis(Axis(0), 0)
                    .to_owned();
                black_box(maps)
            })
        });
    }
    model.tile = 512;
    group.bench_function("skin_model_infer_tile512", |b| {
        b.iter(|| black_box(model.infer(black_box(&img)).unwrap()))
    });
    group.bench_function("rust_reference_serial", |b| {
        b.iter(|| black_box(reference.run(black_box(&img)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

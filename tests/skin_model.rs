//! The skin model checked from outside: the ONNX file (run by ONNX Runtime through
//! `dermatrack::model::SkinModel`) against the plain-Rust reference (`dermatrack::reference`),
//! tiled against untiled, and against the invariances the Tsumura decomposition promises
//! (Tsumura et al., J Opt Soc Am A 16(9):2169, 1999): exposure lands in shading only, and
//! melanin does not leak into the shading band-passes nor shading into the chromophore maps.
//!
//! Needs ONNX Runtime (`.cargo/config.toml` points `ORT_DYLIB_PATH` at the copy
//! `scripts/setup.sh` fetches). Test images are synthesised in optical density from the
//! manifest's own chromophore vectors, so the truth of each perturbation is known.

use std::path::{Path, PathBuf};

use dermatrack::model::{SkinManifest, SkinModel};
use dermatrack::reference::{CHANNELS, SkinReference};
use image::{Rgb, Rgb32FImage};
use ndarray::{Array2, Array3, Array4, Axis, Ix4, s};

/// ONNX Runtime vs the Rust reference, max |difference| per channel.
const REFERENCE_TOLERANCE: f32 = 1e-4;
/// Tiled vs untiled `SkinModel::infer`.
const TILING_TOLERANCE: f32 = 1e-5;
/// Invariance tests: allowed change as a fraction of the channel's dynamic range.
const INVARIANCE_RELATIVE: f32 = 1e-3;
/// Channels a perturbation must not reach: absolute limit (float rounding is ~1e-6).
const LEAK_TOLERANCE: f32 = 1e-4;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn load_model() -> SkinModel {
    SkinModel::load(&models_dir(), "skin-v1", 2).expect("skin-v1 loads (is ONNX Runtime set up?)")
}

fn channel(name: &str) -> usize {
    CHANNELS.iter().position(|c| *c == name).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Synthetic skin, built in the model's own physical terms
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a tiny seeded generator, so the images are the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform(f64::MIN_POSITIVE, 1.0);
        let v = self.uniform(0.0, 1.0);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The chromophore matrix A (columns: melanin, hemoglobin, shading (1,1,1)) from the manifest.
fn chromophore_matrix(manifest: &SkinManifest) -> [[f64; 3]; 3] {
    let rows = manifest.extra["graph"]["decomposition"]["matrix"]
        .as_array()
        .unwrap();
    let mut a = [[0.0; 3]; 3];
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.as_array().unwrap().iter().enumerate() {
            a[i][j] = v.as_f64().unwrap();
        }
    }
    a
}

/// Adds `amp · raised-cosine(r / radius)` around (cy, cx) to `plane`.
fn add_blob(plane: &mut Array2<f64>, cy: f64, cx: f64, radius: f64, amp: f64) {
    let (h, w) = plane.dim();
    let y0 = (cy - radius).floor().max(0.0) as usize;
    let y1 = ((cy + radius).ceil() as usize + 1).min(h);
    let x0 = (cx - radius).floor().max(0.0) as usize;
    let x1 = ((cx + radius).ceil() as usize + 1).min(w);
    for y in y0..y1 {
        for x in x0..x1 {
            let r = (y as f64 - cy).hypot(x as f64 - cx) / radius;
            if r < 1.0 {
                plane[[y, x]] += amp * (0.5 + 0.5 * (std::f64::consts::PI * r).cos());
            }
        }
    }
}

/// Skin-like optical density `[3, H, W]` (R, G, B): base colour sRGB ≈ (0.80, 0.60, 0.50),
/// slow illumination, pores (dark dots in shading), three pigmented macules, a red patch and
/// camera-like noise. Linear values stay within [0.05, 0.75], so exposure ×0.7 and ×1.3 never
/// reach the model's clip limits.
fn synthetic_skin_od(a: &[[f64; 3]; 3], h: usize, w: usize, seed: u64) -> Array3<f64> {
    let mut rng = Rng(seed);
    let base = [0.80f64, 0.60, 0.50].map(|c| -(c.powf(2.2)).ln());
    let mut shading = Array2::from_shape_fn((h, w), |(y, x)| {
        0.08 * (std::f64::consts::TAU * x as f64 / (1.7 * w as f64)).sin()
            + 0.05 * y as f64 / h as f64
    });
    let mut melanin = Array2::<f64>::zeros((h, w));
    let mut hemo = Array2::from_shape_fn((h, w), |(y, _)| {
        0.03 * (std::f64::consts::TAU * y as f64 / (0.9 * h as f64)).sin()
    });
    for _ in 0..(h * w / 2500).max(4) {
        let (cy, cx) = (
            rng.uniform(4.0, h as f64 - 4.0),
            rng.uniform(4.0, w as f64 - 4.0),
        );
        let (amp, radius) = (rng.uniform(0.06, 0.15), rng.uniform(1.2, 2.8));
        add_blob(&mut shading, cy, cx, radius, amp);
    }
    // Dark spots (small, strongly pigmented), macules of 3-6 mm, a red patch of 8 mm.
    for (fy, fx, d_mm, amp) in [
        (0.3, 0.3, 4.0, 0.30),
        (0.7, 0.6, 6.0, 0.20),
        (0.5, 0.85, 3.0, 0.35),
        (0.15, 0.7, 1.0, 0.25),
        (0.85, 0.15, 0.8, 0.25),
    ] {
        add_blob(&mut melanin, fy * h as f64, fx * w as f64, d_mm * 5.0, amp);
    }
    add_blob(&mut hemo, 0.65 * h as f64, 0.25 * w as f64, 40.0, 0.25);
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        base[c]
            + a[c][0] * melanin[[y, x]]
            + a[c][1] * hemo[[y, x]]
            + a[c][2] * shading[[y, x]]
            + 0.004 * rng.normal()
    })
}

/// IEC 61966-2-1 encoding in f64 (test-image synthesis only).
fn linear_to_srgb(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// Optical density `[3, H, W]` times a linear exposure gain → gamma-encoded f32 image.
fn to_srgb(od: &Array3<f64>, gain: f64) -> Rgb32FImage {
    let (_, h, w) = od.dim();
    Rgb32FImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        Rgb([0, 1, 2].map(|c| linear_to_srgb(gain * (-od[[c, y, x]]).exp()) as f32))
    })
}

/// `od + amp · blob · direction` (direction: a column of A, i.e. one chromophore or shading).
fn with_spot(
    od: &Array3<f64>,
    a: &[[f64; 3]; 3],
    column: usize,
    radius: f64,
    amp: f64,
) -> Array3<f64> {
    let (_, h, w) = od.dim();
    let mut blob = Array2::<f64>::zeros((h, w));
    add_blob(&mut blob, h as f64 / 2.0, w as f64 / 2.0, radius, amp);
    let mut out = od.clone();
    for (mut plane, row) in out.outer_iter_mut().zip(a) {
        plane.scaled_add(row[column], &blob);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs the ONNX session on exactly this image (no padding, no tiling): `[8, H, W]`.
fn run_session(model: &mut SkinModel, img: &Rgb32FImage) -> Array3<f32> {
    let (w, h) = img.dimensions();
    let input = Array4::from_shape_fn((1, 3, h as usize, w as usize), |(_, c, y, x)| {
        img.get_pixel(x as u32, y as u32).0[c]
    });
    let tensor = ort::value::Tensor::from_array(input).unwrap();
    let input_name = model.manifest.input.name.clone();
    let output_name = model.manifest.outputs.name.clone();
    let outputs = model
        .session
        .session
        .run(ort::inputs![input_name.as_str() => tensor])
        .unwrap();
    outputs[output_name.as_str()]
        .try_extract_array::<f32>()
        .unwrap()
        .into_dimensionality::<Ix4>()
        .unwrap()
        .index_axis(Axis(0), 0)
        .to_owned()
}

/// NumPy-style reflect padding (edge not repeated, repeated reflection for long pads): the image
/// at (margin, margin) of a `pw × ph` canvas. Written independently of `model.rs`.
fn mirror_pad(img: &Rgb32FImage, margin: u32, pw: u32, ph: u32) -> Rgb32FImage {
    fn reflect(i: i64, n: u32) -> u32 {
        let period = 2 * (i64::from(n) - 1);
        let r = i.rem_euclid(period);
        (if r < i64::from(n) { r } else { period - r }) as u32
    }
    let (w, h) = img.dimensions();
    Rgb32FImage::from_fn(pw, ph, |x, y| {
        *img.get_pixel(
            reflect(i64::from(x) - i64::from(margin), w),
            reflect(i64::from(y) - i64::from(margin), h),
        )
    })
}

/// Max |a − b| per channel.
fn max_diffs(a: &Array3<f32>, b: &Array3<f32>) -> Vec<f32> {
    assert_eq!(a.dim(), b.dim());
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(p, q)| {
            p.iter()
                .zip(q.iter())
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        })
        .collect()
}

fn range(plane: ndarray::ArrayView2<f32>) -> f32 {
    let (lo, hi) = plane
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    hi - lo
}

fn assert_all_within(label: &str, diffs: &[f32], tolerance: f32) {
    let report: Vec<String> = CHANNELS
        .iter()
        .zip(diffs)
        .map(|(n, d)| format!("{n} {d:.2e}"))
        .collect();
    println!("{label}: {}", report.join(", "));
    for (name, &d) in CHANNELS.iter().zip(diffs) {
        assert!(
            d <= tolerance,
            "{label}: {name} differs by {d:e} (allowed {tolerance:e})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn manifest_sha256_is_the_onnx_file() {
    let manifest = SkinManifest::load(&models_dir().join("skin-v1.json")).unwrap();
    let digest = dermatrack::io::sha256_file(&models_dir().join("skin-v1.onnx")).unwrap();
    assert_eq!(digest, manifest.sha256);
}

/// The ONNX graph computes what the manifest says: on an input of exactly the model's size
/// contract it equals the independent Rust reference on every channel.
#[test]
fn onnx_graph_equals_rust_reference() {
    let mut model = load_model();
    let reference = SkinReference::from_manifest(&model.manifest).unwrap();
    let a = chromophore_matrix(&model.manifest);
    let img = to_srgb(&synthetic_skin_od(&a, 256, 320, 1), 1.0);
    assert_eq!(img.dimensions(), (320, 256));

    let want = reference.run(&img).unwrap();
    let got = run_session(&mut model, &img);
    assert_all_within(
        "ONNX vs reference, 320×256 exact input",
        &max_diffs(&got, &want),
        REFERENCE_TOLERANCE,
    );

    // The minimum size exercises the largest reflect pads (12 px at the 1/8 level of 128 px).
    let small = to_srgb(&synthetic_skin_od(&a, 128, 128, 2), 1.0);
    assert_all_within(
        "ONNX vs reference, 128×128 exact input",
        &max_diffs(
            &run_session(&mut model, &small),
            &reference.run(&small).unwrap(),
        ),
        REFERENCE_TOLERANCE,
    );
}

/// `SkinModel::infer` (mirror padding by the tile margin, window, crop) on one untiled window
/// equals the reference run on the same mirror-padded image, cropped back.
#[test]
fn skin_model_infer_equals_reference_on_the_padded_image() {
    let mut model = load_model();
    model.tile = 4096;
    let reference = SkinReference::from_manifest(&model.manifest).unwrap();
    let a = chromophore_matrix(&model.manifest);
    let (w, h) = (320u32, 256u32);
    let img = to_srgb(&synthetic_skin_od(&a, h as usize, w as usize, 3), 1.0);

    let m = model.manifest.input.size_multiple;
    let margin = model.manifest.tile_overlap_px.div_ceil(m) * m;
    let (pw, ph) = (
        (w + 2 * margin).div_ceil(m) * m,
        (h + 2 * margin).div_ceil(m) * m,
    );
    let padded = reference.run(&mirror_pad(&img, margin, pw, ph)).unwrap();
    let (mu, hu, wu) = (margin as usize, h as usize, w as usize);
    let want = padded.slice(s![.., mu..mu + hu, mu..mu + wu]).to_owned();

    let got = model.infer(&img).unwrap();
    assert_all_within(
        "SkinModel::infer vs reference on the mirror-padded image",
        &max_diffs(&got, &want),
        REFERENCE_TOLERANCE,
    );
}

#[test]
fn tiled_inference_equals_untiled() {
    let mut model = load_model();
    let a = chromophore_matrix(&model.manifest);
    let img = to_srgb(&synthetic_skin_od(&a, 500, 700, 4), 1.0);
    assert_eq!(img.dimensions(), (700, 500));
    model.tile = 4096;
    let untiled = model.infer(&img).unwrap();
    model.tile = 64;
    let tiled = model.infer(&img).unwrap();
    assert_all_within(
        "tile 64 vs untiled, 700×500",
        &max_diffs(&tiled, &untiled),
        TILING_TOLERANCE,
    );

    // Control, so the equality above is not vacuous: a margin of 32 px, well under the
    // 107-px dependency reach, must make the wide-kernel channels differ.
    model.manifest.tile_overlap_px = 32;
    let short = model.infer(&img).unwrap();
    let d = max_diffs(&short, &untiled)[channel("melanin_excess")];
    println!("control: tile 64 with a 32-px margin, melanin_excess differs by {d:.2e}");
    assert!(d > 1e-3, "a too-small margin went unnoticed ({d:e})");
}

/// Exposure ×k multiplies linear light, adds −ln k to every optical density, and so moves
/// shading by −ln k and nothing else; every band-pass and excess channel is unchanged.
#[test]
fn exposure_changes_only_shading() {
    let mut model = load_model();
    let a = chromophore_matrix(&model.manifest);
    let od = synthetic_skin_od(&a, 256, 256, 5);
    let lin_range = od
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min((-v).exp()), hi.max((-v).exp()))
        });
    assert!(lin_range.0 > 0.02 && lin_range.1 < 0.76, "{lin_range:?}");
    let base = model.infer(&to_srgb(&od, 1.0)).unwrap();

    for k in [0.7, 1.3] {
        let out = model.infer(&to_srgb(&od, k)).unwrap();
        let diffs = max_diffs(&out, &base);
        let mut report = Vec::new();
        for name in [
            "pore_response",
            "scar_response",
            "melanin_excess",
            "hemoglobin_excess",
            "scar_energy",
        ] {
            let c = channel(name);
            let limit = INVARIANCE_RELATIVE * range(base.index_axis(Axis(0), c));
            report.push(format!("{name} {:.2e} (limit {limit:.1e})", diffs[c]));
            assert!(
                diffs[c] < limit,
                "exposure ×{k}: {name} changed by {:e}, more than 1e-3 of its range",
                diffs[c]
            );
        }
        let shift = (&out.index_axis(Axis(0), 2) - &base.index_axis(Axis(0), 2))
            .iter()
            .fold(0.0f32, |m, d| m.max((d + (k as f32).ln()).abs()));
        println!(
            "exposure ×{k}: {}; shading − (−ln k) {shift:.2e}",
            report.join(", ")
        );
        assert!(
            shift < 1e-4,
            "exposure ×{k}: shading shift off −ln k by {shift:e}"
        );
    }
}

/// A melanin-only macule shows in melanin_excess and not in the scar band (the Tsumura
/// shading rejects it exactly); the pore band, which trades that rejection for lower noise,
/// sees it exactly as a grey spot of depth `u · s_mel` times its amplitude. A grey
/// (shading-only) pore-sized dip shows in pore_response and not in the chromophore excesses.
#[test]
fn melanin_and_shading_do_not_leak_into_each_other() {
    let mut model = load_model();
    let a = chromophore_matrix(&model.manifest);
    let (h, w) = (256usize, 256usize);
    let od = synthetic_skin_od(&a, h, w, 6);
    let base = model.infer(&to_srgb(&od, 1.0)).unwrap();
    let centre = |maps: &Array3<f32>, name: &str| maps[[channel(name), h / 2, w / 2]];
    let max_change = |maps: &Array3<f32>, name: &str| max_diffs(maps, &base)[channel(name)];

    // Melanin +0.3 OD, 3 mm macule (column 0 of A).
    let mel = model
        .infer(&to_srgb(&with_spot(&od, &a, 0, 15.0, 0.3), 1.0))
        .unwrap();
    let gain = centre(&mel, "melanin_excess") - centre(&base, "melanin_excess");
    let (pore, scar) = (
        max_change(&mel, "pore_response"),
        max_change(&mel, "scar_response"),
    );
    println!(
        "melanin spot: melanin_excess +{gain:.4} at centre; max |Δ pore_response| {pore:.2e}, \
         max |Δ scar_response| {scar:.2e}"
    );
    assert!(gain > 0.2, "melanin spot: melanin_excess rose only {gain}");
    assert!(
        scar < LEAK_TOLERANCE,
        "melanin spot leaks into scar_response: {scar:e}"
    );
    let u = SkinReference::from_manifest(&model.manifest)
        .unwrap()
        .pore_weights();
    let leak: f64 = (0..3).map(|c| f64::from(u[c]) * a[c][0]).sum();
    let grey_twin = model
        .infer(&to_srgb(&with_spot(&od, &a, 2, 15.0, 0.3 * leak), 1.0))
        .unwrap();
    let pore_mismatch = (&mel.index_axis(Axis(0), channel("pore_response"))
        - &grey_twin.index_axis(Axis(0), channel("pore_response")))
        .iter()
        .fold(0f32, |m, d| m.max(d.abs()));
    println!(
        "melanin spot vs grey twin (depth {:.3}): pore_response max |Δ| {pore_mismatch:.2e} (max change {pore:.2e})",
        0.3 * leak
    );
    assert!(
        pore_mismatch < LEAK_TOLERANCE,
        "pore_response of a melanin spot differs from its u·s_mel grey twin by {pore_mismatch:e}"
    );

    // Grey dip +0.15 OD, 0.5 mm (column 2 of A = (1,1,1)).
    let grey = model
        .infer(&to_srgb(&with_spot(&od, &a, 2, 2.5, 0.15), 1.0))
        .unwrap();
    let gain = centre(&grey, "pore_response") - centre(&base, "pore_response");
    let (me, he) = (
        max_change(&grey, "melanin_excess"),
        max_change(&grey, "hemoglobin_excess"),
    );
    println!(
        "grey dip: pore_response +{gain:.4} at centre; max |Δ melanin_excess| {me:.2e}, \
         max |Δ hemoglobin_excess| {he:.2e}"
    );
    assert!(gain > 0.05, "grey dip: pore_response rose only {gain}");
    assert!(me < LEAK_TOLERANCE && he < LEAK_TOLERANCE);
}

/// The pore band's predicted noise (`SkinMaps::pore_noise`: the photo's measured noise level
/// functions carried through chromaticity filter, resampling and band) against the spread the
/// ONNX model actually puts into `pore_response`, on flat photos with σ 0.002 linear noise per
/// channel: grey, and the dark phantom's skin colour (blue 0.6% of white, where the
/// chromaticity path adds 22% to the band's noise), at 0.5×, 1× and 2× resampling. Measured
/// 0.96–1.00 when written; tolerance 6%.
#[test]
fn the_pore_noise_predicts_the_models_own_pore_band() {
    let mut model = load_model();
    for colour in [[0.2f32; 3], [0.117, 0.0315, 0.0064]] {
        for zoom in [0.5, 1.0, 2.0] {
            let n = 256u32;
            let mut rng = Rng(7);
            let photo = Rgb32FImage::from_fn(n, n, |_, _| {
                Rgb([0, 1, 2].map(|c| {
                    dermatrack::model::linear_to_srgb(
                        (colour[c] + 0.002 * rng.normal() as f32).clamp(0.0, 1.0),
                    )
                }))
            });
            let maps = model.measure(&photo, (0, 0, n, n), 10.0 / zoom).unwrap();
            let band = maps.channel("pore_response").unwrap();
            let (h, w) = band.dim();
            let inner = band.slice(s![20..h - 20, 20..w - 20]);
            let mean = inner.mean().unwrap();
            let sd = inner.mapv(|v| (v - mean).powi(2)).mean().unwrap().sqrt();
            let noise = maps.pore_noise().unwrap();
            let predicted = noise.slice(s![20..h - 20, 20..w - 20]).mean().unwrap();
            println!("{colour:?} zoom {zoom}: band sd {sd:.5}, predicted {predicted:.5}");
            assert!(
                (sd / predicted - 1.0).abs() < 0.06,
                "{colour:?} zoom {zoom}: band sd {sd}, predicted {predicted}"
            );
        }
    }
}

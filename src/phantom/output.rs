//! Writing phantoms to disk, and the standard phantom set behind `dermatrack phantom`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, ImageFormat, Rgb};
use rayon::prelude::*;
use serde::Serialize;

use super::rng::mix_seed;
use super::spec::{NuisanceSpec, PhantomSpec, TonePreset};
use super::{Phantom, render};
use crate::error::{Error, Result};

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_err(path: &Path) -> impl FnOnce(image::ImageError) -> Error + '_ {
    move |e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Writes one phantom into `dir` (created if missing) and returns the paths written:
///
/// * `NAME.png` — the final image as 16-bit RGB PNG, or `NAME.jpg` (the exact JPEG bytes the
///   phantom's `image` was decoded from) when `jpeg_quality` is set;
/// * `NAME.truth.json` — the [`super::PhantomTruth`], pretty-printed;
/// * `NAME.mask-pores.png`, `NAME.mask-pigment.png`, `NAME.mask-scars.png`,
///   `NAME.mask-erythema.png` — 8-bit grayscale masks, 255 inside.
///
/// `name` must be a plain file-name stem (no path separators).
pub fn write_phantom(phantom: &Phantom, dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(Error::InvalidSetting {
            name: "name",
            message: format!("{name:?} must be a non-empty file-name stem without '/' or '\\'"),
        });
    }
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let mut written = Vec::with_capacity(6);

    let image_path = match &phantom.jpeg {
        Some(bytes) => {
            let path = dir.join(format!("{name}.jpg"));
            std::fs::write(&path, bytes).map_err(write_err(&path))?;
            path
        }
        None => {
            let path = dir.join(format!("{name}.png"));
            let img = &phantom.image;
            let data: Vec<u16> = img
                .as_raw()
                .iter()
                .map(|&v| (f64::from(v).clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect();
            let buf: ImageBuffer<Rgb<u16>, Vec<u16>> =
                ImageBuffer::from_raw(img.width(), img.height(), data).expect("w×h×3 samples");
            let mut out = Cursor::new(Vec::new());
            buf.write_to(&mut out, ImageFormat::Png)
                .map_err(encode_err(&path))?;
            std::fs::write(&path, out.into_inner()).map_err(write_err(&path))?;
            path
        }
    };
    written.push(image_path);

    let truth_path = dir.join(format!("{name}.truth.json"));
    let mut text = serde_json::to_string_pretty(&phantom.truth)
        .map_err(|e| write_err(&truth_path)(std::io::Error::other(e)))?;
    text.push('\n');
    std::fs::write(&truth_path, text).map_err(write_err(&truth_path))?;
    written.push(truth_path);

    for (kind, mask) in phantom.masks.iter() {
        let path = dir.join(format!("{name}.mask-{kind}.png"));
        let mut out = Cursor::new(Vec::new());
        mask.write_to(&mut out, ImageFormat::Png)
            .map_err(encode_err(&path))?;
        std::fs::write(&path, out.into_inner()).map_err(write_err(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Options of [`generate_set`], one per `dermatrack phantom` flag.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOptions {
    /// Scenes (independent feature layouts) per tone (`--count K`). Default: 1. Allowed:
    /// 1–1000.
    pub count: u32,
    /// Tones to render (`--tone T` gives one). Default: all six presets.
    pub tones: Vec<TonePreset>,
    /// Pixels per millimetre (`--px-per-mm F`). Default: 10. Allowed: 2–200. At coarse
    /// sampling the lower ends of the size ranges are raised to the minima
    /// [`PhantomSpec::validate`] accepts (1.5 px for pores, 2 px for other features).
    pub px_per_mm: f64,
    /// Side of the square phantom in mm (`--size-mm W`). Default: 50. Allowed: 30–500.
    /// Feature counts scale with the area relative to the 50 × 50 mm default (each kind
    /// keeps at least one).
    pub size_mm: f64,
    /// Also render the nuisance variants of each scene (exposure, white balance, gradient,
    /// noise, JPEG, all combined). Default: true. When false, only `clean` and `blank`.
    pub nuisance_variants: bool,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            count: 1,
            tones: TonePreset::ALL.to_vec(),
            px_per_mm: 10.0,
            size_mm: 50.0,
            nuisance_variants: true,
        }
    }
}

/// The variants rendered for each scene: `(name, features present, nuisances)`.
fn variants(nuisance_variants: bool) -> Vec<(&'static str, bool, NuisanceSpec)> {
    let id = NuisanceSpec::default;
    let mut v = vec![("clean", true, id()), ("blank", false, id())];
    if nuisance_variants {
        v.extend([
            (
                "dim",
                true,
                NuisanceSpec {
                    exposure: 0.7,
                    ..id()
                },
            ),
            (
                "bright",
                true,
                NuisanceSpec {
                    exposure: 1.3,
                    ..id()
                },
            ),
            (
                "warm",
                true,
                NuisanceSpec {
                    white_balance: [1.15, 1.0, 0.85],
                    ..id()
                },
            ),
            (
                "cool",
                true,
                NuisanceSpec {
                    white_balance: [0.87, 1.0, 1.13],
                    ..id()
                },
            ),
            (
                "gradient",
                true,
                NuisanceSpec {
                    gradient_strength: 0.4,
                    gradient_direction_deg: 30.0,
                    ..id()
                },
            ),
            (
                "noise",
                true,
                NuisanceSpec {
                    noise_sigma: 0.01,
                    ..id()
                },
            ),
            (
                "jpeg",
                true,
                NuisanceSpec {
                    jpeg_quality: Some(85),
                    ..id()
                },
            ),
            (
                "combined",
                true,
                NuisanceSpec {
                    exposure: 0.85,
                    white_balance: [1.08, 1.0, 0.93],
                    gradient_strength: 0.3,
                    gradient_direction_deg: 120.0,
                    noise_sigma: 0.006,
                    jpeg_quality: Some(90),
                },
            ),
        ]);
    }
    v
}

/// The spec of one scene of a set: defaults scaled to the size, the tone, and a seed derived
/// from `(seed, tone, scene)` — so `light-00` is the same whether rendered alone (`--tone
/// light`) or with all tones. Derived seeds have 53 bits, exact in every JSON reader.
pub(crate) fn scene_spec(
    seed: u64,
    tone: TonePreset,
    scene: u32,
    options: &SetOptions,
) -> PhantomSpec {
    let mut spec = PhantomSpec::with_tone(tone).at_px_per_mm(options.px_per_mm);
    spec.width_mm = options.size_mm;
    spec.height_mm = options.size_mm;
    // 53 bits, so the seed survives JSON readers that hold numbers as doubles.
    spec.seed = mix_seed(seed, &[tone as u64, u64::from(scene)]) >> 11;
    let area_ratio = options.size_mm * options.size_mm / (50.0 * 50.0);
    let scale = |n: &mut u32| *n = ((f64::from(*n) * area_ratio).round() as u32).max(1);
    scale(&mut spec.pores.count);
    scale(&mut spec.pigment.count);
    scale(&mut spec.scars.icepick.count);
    scale(&mut spec.scars.boxcar.count);
    scale(&mut spec.scars.rolling.count);
    scale(&mut spec.erythema.count);
    spec
}

/// One entry of `manifest.json`.
#[derive(Debug, Serialize)]
struct ManifestEntry {
    name: String,
    tone: TonePreset,
    scene: u32,
    variant: &'static str,
    seed: u64,
    /// File names, relative to the set's directory.
    files: Vec<String>,
}

/// Renders the standard phantom set into `out` and returns every path written.
///
/// For each tone in `options.tones` and each scene `0..count`, one layout is drawn and rendered
/// as these variants (named `TONE-SCENE-VARIANT`, e.g. `light-00-clean`):
///
/// | variant | content |
/// |---|---|
/// | `clean` | all features, no nuisances |
/// | `blank` | same background and texture, no features (false-positive control) |
/// | `dim` / `bright` | exposure × 0.7 / × 1.3 |
/// | `warm` / `cool` | white balance (1.15, 1, 0.85) / (0.87, 1, 1.13) |
/// | `gradient` | illumination ramp, strength 0.4, brightening towards 30° |
/// | `noise` | Gaussian noise σ = 0.01 (linear) |
/// | `jpeg` | JPEG quality 85 |
/// | `combined` | exposure 0.85, white balance (1.08, 1, 0.93), ramp 0.3 at 120°, noise 0.006, JPEG 90 |
///
/// All variants of a scene share the seed, hence identical features, truth (apart from the
/// `nuisances` section) and masks. A `manifest.json` listing every phantom (name, tone, scene,
/// variant, seed, file names relative to `out`) is written last.
/// Phantoms are rendered in parallel (this is a batch boundary).
pub fn generate_set(out: &Path, seed: u64, options: &SetOptions) -> Result<Vec<PathBuf>> {
    if !(1..=1000).contains(&options.count) {
        return Err(Error::InvalidSetting {
            name: "count",
            message: format!("{} is outside the allowed range [1, 1000]", options.count),
        });
    }
    if options.tones.is_empty() {
        return Err(Error::InvalidSetting {
            name: "tone",
            message: "at least one tone is needed".into(),
        });
    }
    if !(options.size_mm.is_finite() && (30.0..=500.0).contains(&options.size_mm)) {
        return Err(Error::InvalidSetting {
            name: "size-mm",
            message: format!("{} is outside the allowed range [30, 500]", options.size_mm),
        });
    }
    let variants = variants(options.nuisance_variants);
    let mut jobs = Vec::new();
    for &tone in &options.tones {
        for scene in 0..options.count {
            let base = scene_spec(seed, tone, scene, options);
            base.validate()?;
            for (variant, with_features, nuisances) in &variants {
                let mut spec = base.clone();
                if !with_features {
                    spec = spec.without_features();
                }
                spec.nuisances = nuisances.clone();
                let name = format!("{}-{scene:02}-{variant}", tone.name());
                jobs.push((name, tone, scene, *variant, spec));
            }
        }
    }
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let entries = jobs
        .into_par_iter()
        .map(|(name, tone, scene, variant, spec)| {
            let phantom = render(&spec)?;
            let files = write_phantom(&phantom, out, &name)?;
            let entry = ManifestEntry {
                name,
                tone,
                scene,
                variant,
                seed: spec.seed,
                files: files
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect(),
            };
            Ok((entry, files))
        })
        .collect::<Result<Vec<_>>>()?;
    let (entries, files): (Vec<ManifestEntry>, Vec<Vec<PathBuf>>) = entries.into_iter().unzip();
    let mut paths: Vec<PathBuf> = files.into_iter().flatten().collect();
    let manifest_path = out.join("manifest.json");
    let manifest = serde_json::json!({
        "schema_version": super::PHANTOM_SCHEMA_VERSION,
        "generator": format!("{} {} phantom", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        "seed": seed,
        "px_per_mm": options.px_per_mm,
        "size_mm": options.size_mm,
        "phantoms": entries,
    });
    let mut text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| write_err(&manifest_path)(std::io::Error::other(e)))?;
    text.push('\n');
    std::fs::write(&manifest_path, text).map_err(write_err(&manifest_path))?;
    paths.push(manifest_path);
    Ok(paths)
}

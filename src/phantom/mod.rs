//! Phantoms: synthetic skin images whose pores, pigment, scars, redness and tone are known
//! exactly, used to prove the analysis accurate.
//!
//! Why a module of its own, written apart from the analysis: a measurement is only as
//! trustworthy as the test that checks it against ground truth, and a phantom that reused the
//! analysis code would agree with it by construction. This module shares nothing with the
//! analysis stages but the published physics, re-implemented here ([`SIGMA_MELANIN`],
//! [`SIGMA_HEMOGLOBIN`], [`OD_BASE`], [`skin_reflectance`]).
//!
//! # How a phantom is formed
//!
//! For every pixel (centre at `((i + ½), (j + ½))/px_per_mm` mm):
//!
//! 1. **Chromophores.** Melanin `m = m0 + texture + Σ macule excess` and hemoglobin
//!    `h = h0 + texture + Σ erythema excess` ([`BaseTone`], [`TextureSpec`], [`PigmentSpec`],
//!    [`ErythemaSpec`]).
//! 2. **Shading.** `S = S_relief · S_texture · Π pore darkening`, where `S_relief` lights the
//!    scar height map with one directional source plus occluded ambient light
//!    ([`LightingSpec`], [`ScarSpec`]) and equals 1 on flat skin; pores are achromatic
//!    darkenings ([`PoreSpec`]).
//! 3. **Camera.** Linear sRGB `R_c = S·exp(−(OD_base_c + m·σ_mel_c + h·σ_hb_c))` (Tsumura et al.
//!    1999/2003; [`skin_reflectance`]). This is the **clean** image.
//! 4. **Nuisances** ([`NuisanceSpec`]): exposure × white balance × illumination ramp, additive
//!    Gaussian noise, clipping, then sRGB encoding (IEC 61966-2-1) and 16-bit quantization, or an
//!    8-bit JPEG round trip.
//!
//! The clean image is also sRGB-encoded and quantized to 16 bits, so `Phantom::clean` is
//! exactly what a lossless 16-bit PNG of it would hold.
//!
//! # Features and their masks
//!
//! Features never overlap: each is placed by rejection sampling so that its *extent* (where its
//! effect falls below 0.1% of its peak) keeps `gap_mm` from every other extent and `margin_mm`
//! (≥ 3 mm) from the border. Each mask is a binary image (0/255) of pixel centres:
//!
//! | mask | a pixel is set when | nominal size |
//! |---|---|---|
//! | pores | inside the disk of the nominal diameter (darkening ≥ 50% of the pore's peak) | diameter = full width at half darkening |
//! | pigment | melanin excess ≥ 50% of the macule's peak | equivalent-circle diameter of that boundary |
//! | scars | depth ≥ 10% of the scar's maximum depth | diameter of that footprint |
//! | erythema | hemoglobin excess ≥ 50% of the patch's peak | equivalent-circle diameter of that boundary |
//!
//! Truth areas are mask pixel counts divided by all pixels ([`PhantomTruth`]).
//!
//! # Reproducibility
//!
//! All randomness comes from one seed through a fixed xoshiro256** generator, split into
//! independent streams (layout, three texture fields, noise): changing a nuisance never moves a
//! feature, and the same spec renders the same bytes. Feature positions, sizes, depths and
//! amplitudes use only exactly-rounded arithmetic (`+ − × ÷ √` on the generator's output), so
//! they are identical on every platform; pixel values (and macule
//! outlines, whose phases go through `sin`/`cos`) use the platform's math library and may,
//! rarely, differ by one quantization step between platforms.

mod features;
mod optics;
mod output;
mod perturb;
mod rng;
mod spec;
mod texture;
mod truth;

use std::collections::BTreeMap;
use std::path::PathBuf;

use image::{GrayImage, Rgb32FImage, RgbImage};

use crate::error::{Error, Result};
use features::{Feature, Fields, Layer, Shape};
use rng::Rng;

pub use optics::{
    D65_WHITE, OD_BASE, OpticalModel, SIGMA_HEMOGLOBIN, SIGMA_MELANIN, ita_category, ita_deg,
    linear_srgb_to_lab, skin_reflectance, skin_reflectance_with, srgb_decode, srgb_encode,
};
pub use output::{SetOptions, generate_set, write_phantom};
pub use perturb::{InsertedMacule, Perturbation, insert_macule, perturb};
pub use spec::{
    BaseTone, ErythemaSpec, LightingSpec, NuisanceSpec, PhantomSpec, PigmentSpec, PoreSpec,
    ScarKind, ScarKindSpec, ScarSpec, TextureSpec, TonePreset,
};
pub use truth::{
    BlobItem, ErythemaTruth, NuisanceTruth, PHANTOM_SCHEMA_VERSION, PhantomTruth, PigmentTruth,
    PoreItem, PoreTruth, ScarItem, ScarTruth, ToneTruth,
};

/// Independent random streams of one seed.
const STREAM_LAYOUT: u64 = 1;
const STREAM_TEXTURE_MELANIN: u64 = 2;
const STREAM_TEXTURE_HEMOGLOBIN: u64 = 3;
const STREAM_TEXTURE_SHADING: u64 = 4;
const STREAM_NOISE: u64 = 5;

/// A rendered phantom: the image to analyse, its clean twin, the truth and the masks.
#[derive(Debug, Clone)]
pub struct Phantom {
    /// The final image, sRGB-encoded in `[0, 1]`, including nuisances: exactly the pixel values
    /// of the file [`write_phantom`] writes (16-bit PNG, or the decoded JPEG when
    /// `jpeg_quality` is set).
    pub image: Rgb32FImage,
    /// The same scene without nuisances (16-bit quantized sRGB).
    pub clean: Rgb32FImage,
    /// Ground truth.
    pub truth: PhantomTruth,
    /// Where each feature kind is.
    pub masks: PhantomMasks,
    /// The JPEG file's bytes when `jpeg_quality` is set (`image` is their decoding).
    pub jpeg: Option<Vec<u8>>,
}

impl Phantom {
    /// The final image as an in-memory [`crate::io::Photo`] named `name`, ready for the
    /// pipeline without a trip through the file system. A JPEG phantom's photo says so (format
    /// `jpeg`, 8 bits), as its file's would: the report's provenance and the capture notes
    /// (shallow blue in an 8-bit photo, see [`crate::quality`]) go by them.
    pub fn to_photo(&self, name: impl Into<PathBuf>) -> crate::io::Photo {
        let mut photo = crate::io::Photo::from_pixels(name, self.image.clone());
        if self.jpeg.is_some() {
            photo.format = "jpeg";
            photo.bits_per_channel = 8;
        }
        photo
    }
}

/// One binary mask (0 or 255) per feature kind, defined in the module docs. The four are
/// disjoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomMasks {
    /// Pore disks.
    pub pores: GrayImage,
    /// Macules (melanin excess ≥ 50% of peak).
    pub pigment: GrayImage,
    /// Scar footprints (depth ≥ 10% of max).
    pub scars: GrayImage,
    /// Erythema patches (hemoglobin excess ≥ 50% of peak).
    pub erythema: GrayImage,
}

impl PhantomMasks {
    /// `(name, mask)` pairs in a fixed order; the names are those of the mask files.
    pub fn iter(&self) -> [(&'static str, &GrayImage); 4] {
        [
            ("pores", &self.pores),
            ("pigment", &self.pigment),
            ("scars", &self.scars),
            ("erythema", &self.erythema),
        ]
    }
}

/// Renders one phantom from its spec (validated first).
///
/// Fails with [`Error::InvalidSetting`] when a field is out of range or the requested features
/// cannot all be placed without overlap.
pub fn render(spec: &PhantomSpec) -> Result<Phantom> {
    spec.validate()?;
    let (w, h) = (spec.width_px() as usize, spec.height_px() as usize);
    let ppm = spec.px_per_mm;
    let (width_mm, height_mm) = (w as f64 / ppm, h as f64 / ppm);
    let seed = spec.seed;

    let features = features::place(
        spec,
        width_mm,
        height_mm,
        &mut Rng::new(seed, STREAM_LAYOUT),
    )?;

    // Background: base tone plus texture.
    let (m0, h0) = spec.tone.densities();
    let t = &spec.texture;
    let scale_px = t.scale_mm * ppm;
    let field = |std: f64, stream: u64, offset: f64| -> Vec<f32> {
        texture::noise_field(w, h, scale_px, std, &mut Rng::new(seed, stream))
            .into_iter()
            .map(|v| (offset + v) as f32)
            .collect()
    };
    let mut fields = Fields {
        width: w,
        height: h,
        px_per_mm: ppm,
        melanin: field(t.melanin_std, STREAM_TEXTURE_MELANIN, m0),
        hemoglobin: field(t.hemoglobin_std, STREAM_TEXTURE_HEMOGLOBIN, h0),
        shade: field(t.shading_std, STREAM_TEXTURE_SHADING, 1.0),
        grad_x: vec![0.0; w * h],
        grad_y: vec![0.0; w * h],
        occlusion: vec![1.0; w * h],
        masks: std::array::from_fn(|_| vec![0u8; w * h]),
    };
    let drawn: Vec<u64> = features
        .iter()
        .map(|f| fields.draw(f).mask_pixels)
        .collect();

    let relief = relief_shading(&fields, &spec.lighting);
    let (clean, image, jpeg, clipped_fraction) = compose(spec, &fields, &relief)?;

    let [pores, pigment, scars, erythema] = fields
        .masks
        .map(|m| GrayImage::from_raw(w as u32, h as u32, m).expect("mask has w×h pixels"));
    let masks = PhantomMasks {
        pores,
        pigment,
        scars,
        erythema,
    };
    let truth = build_truth(
        spec,
        (w, h),
        &features,
        &drawn,
        &relief,
        &masks,
        clipped_fraction,
    );
    Ok(Phantom {
        image,
        clean,
        truth,
        masks,
        jpeg,
    })
}

/// Unit vector towards the light in image coordinates (x right, y down, z towards the camera).
fn light_direction(l: &LightingSpec) -> [f64; 3] {
    let (az, el) = (l.azimuth_deg.to_radians(), l.elevation_deg.to_radians());
    [el.cos() * az.cos(), -el.cos() * az.sin(), el.sin()]
}

/// `S_relief = (k_a·AO + k_d·max(0, n·l)) / (k_a + k_d·l_z)` per pixel (see [`LightingSpec`]).
fn relief_shading(fields: &Fields, lighting: &LightingSpec) -> Vec<f32> {
    let l = light_direction(lighting);
    let ka = lighting.ambient;
    let kd = 1.0 - ka;
    let norm = ka + kd * l[2];
    (0..fields.width * fields.height)
        .map(|p| {
            let (gx, gy) = (f64::from(fields.grad_x[p]), f64::from(fields.grad_y[p]));
            let ao = f64::from(fields.occlusion[p]);
            let n_dot_l = (-gx * l[0] - gy * l[1] + l[2]) / (1.0 + gx * gx + gy * gy).sqrt();
            ((ka * ao + kd * n_dot_l.max(0.0)) / norm) as f32
        })
        .collect()
}

/// 16-bit quantization of an encoded value, returned as the `f32` a 16-bit file decodes to.
fn quantize16(v: f64) -> f32 {
    ((v.clamp(0.0, 1.0) * 65535.0).round() / 65535.0) as f32
}

/// Forms the clean and final images. Returns `(clean, image, jpeg bytes, clipped fraction)`.
fn compose(
    spec: &PhantomSpec,
    fields: &Fields,
    relief: &[f32],
) -> Result<(Rgb32FImage, Rgb32FImage, Option<Vec<u8>>, f64)> {
    let (w, h) = (fields.width, fields.height);
    let nz = &spec.nuisances;
    let nuisances = nz.any();
    let mut clean = Vec::with_capacity(w * h * 3);
    let mut fin: Vec<f64> = Vec::with_capacity(if nuisances { w * h * 3 } else { 0 });
    let mut noise = Rng::new(spec.seed, STREAM_NOISE);
    let phi = nz.gradient_direction_deg.to_radians();
    let (dx, dy) = (phi.cos(), -phi.sin());
    let span = (w as f64 * dx).abs() + (h as f64 * dy).abs();
    let gains: [f64; 3] = std::array::from_fn(|c| nz.exposure * nz.white_balance[c]);
    let mut clipped = 0u64;
    let sigma_hemoglobin = spec.hemoglobin_unit();
    for j in 0..h {
        for i in 0..w {
            let p = j * w + i;
            let s = f64::from(relief[p]) * f64::from(fields.shade[p]);
            let lin = skin_reflectance_with(
                sigma_hemoglobin,
                f64::from(fields.melanin[p]),
                f64::from(fields.hemoglobin[p]),
                s,
            );
            clean.extend(lin.map(|v| quantize16(srgb_encode(v))));
            if nuisances {
                let t = ((i as f64 + 0.5 - 0.5 * w as f64) * dx
                    + (j as f64 + 0.5 - 0.5 * h as f64) * dy)
                    / span;
                let ramp = 1.0 + nz.gradient_strength * t;
                for c in 0..3 {
                    let mut v = lin[c] * gains[c] * ramp;
                    if nz.noise_sigma > 0.0 {
                        v += nz.noise_sigma * noise.normal();
                    }
                    if !(0.0..=1.0).contains(&v) {
                        clipped += 1;
                    }
                    fin.push(srgb_encode(v));
                }
            }
        }
    }
    let clean = Rgb32FImage::from_raw(w as u32, h as u32, clean).expect("w×h×3 samples");
    if !nuisances {
        return Ok((clean.clone(), clean, None, 0.0));
    }
    let clipped_fraction = clipped as f64 / (w * h * 3) as f64;
    let (image, jpeg) = match nz.jpeg_quality {
        None => {
            let data = fin.into_iter().map(quantize16).collect();
            (
                Rgb32FImage::from_raw(w as u32, h as u32, data).expect("w×h×3 samples"),
                None,
            )
        }
        Some(q) => {
            let data: Vec<u8> = fin
                .into_iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let rgb8 = RgbImage::from_raw(w as u32, h as u32, data).expect("w×h×3 samples");
            let bytes = jpeg_round_trip(&rgb8, q)?;
            let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                .map_err(|e| Error::Decode {
                    path: PathBuf::from("<phantom>.jpg"),
                    message: e.to_string(),
                })?
                .into_rgb32f();
            (decoded, Some(bytes))
        }
    };
    Ok((clean, image, jpeg, clipped_fraction))
}

/// Encodes 8-bit sRGB as baseline JPEG at `quality`.
pub(crate) fn jpeg_round_trip(rgb8: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(rgb8)
        .map_err(|e| Error::Write {
            path: PathBuf::from("<phantom>.jpg"),
            source: std::io::Error::other(e),
        })?;
    Ok(bytes)
}

/// The flat base color of a tone, and its CIELAB and ITA°.
pub fn tone_truth(tone: &BaseTone) -> ToneTruth {
    tone_truth_with(tone, SIGMA_HEMOGLOBIN)
}

/// [`tone_truth`] with hemoglobin along `sigma_hemoglobin` (unit norm).
fn tone_truth_with(tone: &BaseTone, sigma_hemoglobin: [f64; 3]) -> ToneTruth {
    let (melanin, hemoglobin) = tone.densities();
    let linear_rgb = skin_reflectance_with(sigma_hemoglobin, melanin, hemoglobin, 1.0);
    let [l, a, b] = linear_srgb_to_lab(linear_rgb);
    let ita = ita_deg(l, b);
    ToneTruth {
        preset: match tone {
            BaseTone::Preset(p) => Some(*p),
            BaseTone::Custom { .. } => None,
        },
        melanin,
        hemoglobin,
        linear_rgb,
        srgb: linear_rgb.map(srgb_encode),
        l,
        a,
        b,
        ita_deg: ita,
        ita_category: ita_category(ita).into(),
    }
}

fn count_set(mask: &GrayImage) -> u64 {
    mask.as_raw().iter().filter(|&&v| v != 0).count() as u64
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// Min, max over the scar's extent and mean over its mask of the relief shading.
fn scar_shading(f: &Feature, a: f64, relief: &[f32], (w, h): (usize, usize), ppm: f64) -> [f64; 3] {
    let (mut lo, mut hi, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for (i, j, _, _, r2) in f.pixels(ppm, w, h) {
        let s = f64::from(relief[j * w + i]);
        lo = lo.min(s);
        hi = hi.max(s);
        if r2 <= a * a {
            sum += s;
            n += 1;
        }
    }
    [lo, hi, if n == 0 { 1.0 } else { sum / n as f64 }]
}

fn build_truth(
    spec: &PhantomSpec,
    (w, h): (usize, usize),
    features: &[Feature],
    drawn: &[u64],
    relief: &[f32],
    masks: &PhantomMasks,
    clipped_fraction: f64,
) -> PhantomTruth {
    let ppm = spec.px_per_mm;
    let total = (w * h) as f64;
    let px_area = 1.0 / (ppm * ppm);
    let (width_mm, height_mm) = (w as f64 / ppm, h as f64 / ppm);
    let macule_mean = features::mean_over_mask(features::MACULE_ORDER);
    let erythema_mean = features::mean_over_mask(features::ERYTHEMA_ORDER);

    let mut pores = Vec::new();
    let mut spots = Vec::new();
    let mut patches = Vec::new();
    let mut scars = Vec::new();
    for (f, &px) in features.iter().zip(drawn) {
        match &f.shape {
            Shape::Pore { diameter, contrast } => pores.push(PoreItem {
                x_mm: f.x,
                y_mm: f.y,
                diameter_mm: *diameter,
                contrast: *contrast,
                od_contrast: -(1.0 - contrast).ln(),
                mask_pixels: px,
            }),
            Shape::Macule {
                diameter, excess, ..
            }
            | Shape::Erythema {
                diameter, excess, ..
            } => {
                let is_macule = f.layer() == Layer::Pigment;
                let item = BlobItem {
                    x_mm: f.x,
                    y_mm: f.y,
                    diameter_mm: *diameter,
                    peak_excess: *excess,
                    mean_excess_in_mask: excess
                        * if is_macule {
                            macule_mean
                        } else {
                            erythema_mean
                        },
                    mask_area_mm2: px as f64 * px_area,
                    mask_pixels: px,
                };
                if is_macule {
                    spots.push(item);
                } else {
                    patches.push(item);
                }
            }
            Shape::Scar {
                kind,
                diameter,
                depth,
            } => {
                let [shading_min, shading_max, shading_mean_in_mask] =
                    scar_shading(f, 0.5 * diameter, relief, (w, h), ppm);
                scars.push(ScarItem {
                    kind: *kind,
                    x_mm: f.x,
                    y_mm: f.y,
                    diameter_mm: *diameter,
                    depth_mm: *depth,
                    mask_area_mm2: px as f64 * px_area,
                    mask_pixels: px,
                    shading_min,
                    shading_max,
                    shading_mean_in_mask,
                });
            }
        }
    }
    // Report pores and scars in a stable, readable order: kind order of the spec, then as drawn.
    scars.sort_by_key(|s| match s.kind {
        ScarKind::Icepick => 0,
        ScarKind::Boxcar => 1,
        ScarKind::Rolling => 2,
    });
    let kind_count = |k: ScarKind| scars.iter().filter(|s| s.kind == k).count() as u32;
    let nz = &spec.nuisances;
    let mask_px = |m: &GrayImage| count_set(m);

    let mut mask_definitions = BTreeMap::new();
    mask_definitions.insert(
        "pores".to_string(),
        "pixel centre within the pore's nominal disk (darkening >= 50% of its peak)".to_string(),
    );
    mask_definitions.insert(
        "pigment".to_string(),
        "melanin excess >= 50% of the macule's peak".to_string(),
    );
    mask_definitions.insert(
        "scars".to_string(),
        "depth >= 10% of the scar's maximum depth (its nominal footprint disk)".to_string(),
    );
    mask_definitions.insert(
        "erythema".to_string(),
        "hemoglobin excess >= 50% of the patch's peak".to_string(),
    );

    PhantomTruth {
        schema_version: PHANTOM_SCHEMA_VERSION,
        generator: format!(
            "{} {} phantom",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION")
        ),
        seed: spec.seed,
        px_per_mm: ppm,
        width_px: w as u32,
        height_px: h as u32,
        width_mm,
        height_mm,
        spec: spec.clone(),
        model: OpticalModel::for_spec(spec),
        base_tone: tone_truth_with(&spec.tone, spec.hemoglobin_unit()),
        pores: PoreTruth {
            count: pores.len() as u32,
            diameters_mm: pores.iter().map(|p| p.diameter_mm).collect(),
            mean_diameter_mm: mean(pores.iter().map(|p| p.diameter_mm)),
            area_fraction: mask_px(&masks.pores) as f64 / total,
            density_per_cm2: pores.len() as f64 / (width_mm * height_mm / 100.0),
            mask_pixels: mask_px(&masks.pores),
            items: pores,
        },
        pigment: PigmentTruth {
            spot_count: spots.len() as u32,
            area_fraction: mask_px(&masks.pigment) as f64 / total,
            mean_melanin_excess: mean(spots.iter().map(|s| s.peak_excess)),
            mean_melanin_excess_in_mask: mean(spots.iter().map(|s| s.mean_excess_in_mask)),
            mask_pixels: mask_px(&masks.pigment),
            spots,
        },
        scars: ScarTruth {
            count: scars.len() as u32,
            icepick: kind_count(ScarKind::Icepick),
            boxcar: kind_count(ScarKind::Boxcar),
            rolling: kind_count(ScarKind::Rolling),
            area_fraction: mask_px(&masks.scars) as f64 / total,
            mask_pixels: mask_px(&masks.scars),
            items: scars,
        },
        erythema: ErythemaTruth {
            patch_count: patches.len() as u32,
            area_fraction: mask_px(&masks.erythema) as f64 / total,
            mean_hemoglobin_excess: mean(patches.iter().map(|s| s.peak_excess)),
            mean_hemoglobin_excess_in_mask: mean(patches.iter().map(|s| s.mean_excess_in_mask)),
            mask_pixels: mask_px(&masks.erythema),
            patches,
        },
        nuisances: NuisanceTruth {
            applied: nz.any(),
            exposure: nz.exposure,
            white_balance: nz.white_balance,
            gradient_strength: nz.gradient_strength,
            gradient_direction_deg: nz.gradient_direction_deg,
            noise_sigma: nz.noise_sigma,
            jpeg_quality: nz.jpeg_quality,
            clipped_fraction,
        },
        mask_definitions,
    }
}

#[cfg(test)]
mod tests;

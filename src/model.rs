//! Stage 5: the skin model — resampling to physical scale, tiling, ONNX inference → [`SkinMaps`].
//!
//! Why physical scale: a pore is 0.1–0.5 mm whatever the camera distance, so the photo is
//! resampled to the model's working scale (px/mm, from its manifest) before inference; the
//! same skin photographed at 15 cm and at 45 cm then yields the same maps. Resampling is done in
//! linear light (averaging encoded sRGB values darkens edges and would bias pore contrast).
//!
//! Why tiles: a 12-MP face photo at 10 px/mm is tens of megapixels; the model runs on tiles
//! whose margins (from the manifest) exceed the reach of its largest blur, and whose origins sit
//! on the model's size multiple so its internal pyramid sees the same grid as an untiled run.
//! The stitched result equals the untiled one (tested).
//!
//! The model contract (input `srgb` `[1,3,H,W]`, output `maps` `[1,C,H,W]`) and the meaning of
//! each channel are in `models/skin-v1.json`; `src/reference.rs` re-implements the same maps in
//! Rust so the ONNX file can be checked against an independent implementation.

use std::path::{Path, PathBuf};

use fast_image_resize as fr;
use image::Rgb32FImage;
use ndarray::{Array2, Array3, Array4, s};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::ModelSession;

/// The parts of a skin-model manifest (`models/<name>.json`) the pipeline relies on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkinManifest {
    /// Model name, e.g. "skin-v1".
    pub name: String,
    /// Model version string.
    pub version: String,
    /// sha256 of the `.onnx` file; the session refuses a file that does not match.
    pub sha256: String,
    /// Input tensor description.
    pub input: ManifestInput,
    /// Output channels in tensor order.
    pub outputs: ManifestOutputs,
    /// Margin in working-scale pixels a tile needs on each side so that its interior equals
    /// an untiled run.
    pub tile_overlap_px: u32,
    /// Everything else in the manifest (chromophore vectors, σ values, thresholds, citations),
    /// kept so reports can quote it.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Input tensor description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// Tensor name, "srgb".
    pub name: String,
    /// Working scale in pixels per millimetre.
    pub working_px_per_mm: f64,
    /// Height and width must be multiples of this.
    pub size_multiple: u32,
    /// Other keys (layout, dtype, encoding).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Output tensor description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestOutputs {
    /// Tensor name, "maps".
    pub name: String,
    /// The channels, in order.
    pub channels: Vec<ManifestChannel>,
}

/// One output channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestChannel {
    /// Channel name, e.g. "melanin_excess".
    pub name: String,
    /// Other keys (meaning, units, sign, σ).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl SkinManifest {
    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<SkinManifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: format!("cannot read manifest: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: format!("invalid manifest: {e}"),
        })
    }

    /// Index of a channel by name.
    pub fn channel(&self, name: &str) -> Option<usize> {
        self.outputs.channels.iter().position(|c| c.name == name)
    }
}

/// Where the models live: `DERMATRACK_MODELS`, then `models/` beside the executable, then this
/// repository's `models/`.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DERMATRACK_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.join("models")))
        .filter(|d| d.join("skin-v1.json").is_file())
    {
        return dir;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The skin model: an ONNX session plus its manifest. Not `Sync` — one per worker.
#[derive(Debug)]
pub struct SkinModel {
    /// The session.
    pub session: ModelSession,
    /// The manifest.
    pub manifest: SkinManifest,
    /// Interior tile side in working pixels (a multiple of the size multiple).
    /// Default: 1024 (with 128-px margins a tile then computes 1.56× its interior instead of
    /// 2.25× at 512, and stays around 60 MB of activations).
    pub tile: u32,
}

/// Dense per-pixel maps at working scale over a crop of the photo.
#[derive(Debug, Clone)]
pub struct SkinMaps {
    /// `[channel, y, x]`, channels as in the manifest.
    pub maps: Array3<f32>,
    /// Channel names, in order.
    pub channels: Vec<String>,
    /// Working scale (px/mm) of `maps`.
    pub px_per_mm: f64,
    /// The crop of the photo the maps cover, `(x0, y0, x1, y1)` in photo pixels.
    pub crop: (u32, u32, u32, u32),
    /// Working pixels per photo pixel.
    pub zoom: f64,
    /// The model input (sRGB at working scale) the maps were computed from.
    pub srgb: Rgb32FImage,
    /// How to form the model's low-noise shading from `srgb`, when its manifest says.
    pub low_noise: Option<LowNoiseShading>,
    /// `u · OD` per working pixel, computed on first use.
    low_noise_map: std::sync::OnceLock<Array2<f32>>,
    /// Scar-band maps for the metrics' chromophore leak fit, computed on first use.
    leak_bands: std::sync::OnceLock<crate::metrics::LeakBands>,
    /// Gaussian-smoothed channels the metrics asked for, computed on first use.
    smoothed: SmoothedChannels,
}

/// Gaussian-smoothed channels by (channel index, σ in px), computed on first request and
/// shared by a photo's regions.
///
/// Why: every region is measured on the maps of the whole crop, and the pigment and redness
/// patch ladders smooth whole maps (up to three σ per channel). Done per region, those blurs
/// took about 40% of a face's analysis (eight regions); the maps are the same for all of them.
#[derive(Debug, Default)]
struct SmoothedChannels(std::sync::Mutex<Vec<SmoothedChannel>>);

type SmoothedChannel = ((usize, u32), std::sync::Arc<Array2<f32>>);

impl Clone for SmoothedChannels {
    fn clone(&self) -> SmoothedChannels {
        SmoothedChannels(std::sync::Mutex::new(self.lock().clone()))
    }
}

impl SmoothedChannels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SmoothedChannel>> {
        // A panic while smoothing leaves only a shorter cache behind, never a wrong entry.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The model's noise-weighted shading estimate `u · OD` (`graph.decomposition.pore_weights`)
/// and what melanin and hemoglobin contribute to it.
///
/// Why the metrics need it: the chromophore maps lean on the blue channel, the darkest and
/// noisiest one on pigmented skin, where JPEG's Y/Cb/Cr rounding leaves ±1-code contours and
/// sensor noise is largest. A real macule or erythema patch darkens the skin in every channel,
/// so it also darkens `u · OD` by `melanin_gain` (or `hemoglobin_gain`) per unit of excess; a
/// colour excursion of the blue channel alone barely moves it. The metrics use this to refuse
/// patches the low-noise shading does not confirm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowNoiseShading {
    /// Channel weights `u` (R, G, B), summing to 1.
    pub weights: [f32; 3],
    /// `u · s_mel`: darkening of `u · OD` per unit of melanin.
    pub melanin_gain: f32,
    /// `u · s_hb`: darkening of `u · OD` per unit of hemoglobin.
    pub hemoglobin_gain: f32,
}

impl LowNoiseShading {
    /// Reads the weights and chromophore vectors from the manifest's `graph.decomposition`
    /// (`pore_weights`, `matrix`); `None` for a model that does not describe them.
    pub fn from_manifest(manifest: &SkinManifest) -> Option<LowNoiseShading> {
        let dec = manifest.extra.get("graph")?.get("decomposition")?;
        let numbers = |v: &serde_json::Value| -> Option<Vec<f64>> {
            v.as_array()?
                .iter()
                .map(serde_json::Value::as_f64)
                .collect()
        };
        let u = numbers(dec.get("pore_weights")?)?;
        let rows: Vec<Vec<f64>> = dec
            .get("matrix")?
            .as_array()?
            .iter()
            .map(numbers)
            .collect::<Option<_>>()?;
        if u.len() != 3 || rows.len() != 3 || rows.iter().any(|r| r.len() < 2) {
            return None;
        }
        let gain = |col: usize| (0..3).map(|c| u[c] * rows[c][col]).sum::<f64>() as f32;
        Some(LowNoiseShading {
            weights: [u[0] as f32, u[1] as f32, u[2] as f32],
            melanin_gain: gain(0),
            hemoglobin_gain: gain(1),
        })
    }
}

impl SkinMaps {
    /// The map of one channel, by name.
    pub fn channel(&self, name: &str) -> Option<ndarray::ArrayView2<'_, f32>> {
        let i = self.channels.iter().position(|c| c == name)?;
        Some(self.maps.index_axis(ndarray::Axis(0), i))
    }

    /// The low-noise shading `u · OD` of the model input (see [`LowNoiseShading`]), computed
    /// once; `None` when the model does not define it.
    pub fn low_noise_shading(&self) -> Option<&Array2<f32>> {
        let u = self.low_noise?.weights;
        Some(self.low_noise_map.get_or_init(|| {
            let (w, h) = self.srgb.dimensions();
            Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
                let p = self.srgb.get_pixel(x as u32, y as u32).0;
                (0..3).map(|c| u[c] * optical_density(p[c])).sum()
            })
        }))
    }
}

impl SkinMaps {
    /// One channel smoothed by a Gaussian of `sigma_px` working pixels (see
    /// [`crate::metrics::smooth`]), computed once per photo and shared by its regions.
    pub(crate) fn smoothed(
        &self,
        name: &str,
        sigma_px: f32,
    ) -> Option<std::sync::Arc<Array2<f32>>> {
        let i = self.channels.iter().position(|c| c == name)?;
        let key = (i, sigma_px.to_bits());
        let mut cache = self.smoothed.lock();
        if let Some((_, map)) = cache.iter().find(|(k, _)| *k == key) {
            return Some(map.clone());
        }
        let map = std::sync::Arc::new(crate::metrics::smooth(
            self.maps.index_axis(ndarray::Axis(0), i),
            sigma_px,
        ));
        cache.push((key, map.clone()));
        Some(map)
    }

    /// The melanin, hemoglobin and shading scar-band maps the metrics fit the colour leak on,
    /// computed once per photo and shared by its regions (each fits its own coefficients).
    pub(crate) fn leak_bands(&self) -> &crate::metrics::LeakBands {
        self.leak_bands
            .get_or_init(|| crate::metrics::LeakBands::compute(self))
    }
}

impl SkinModel {
    /// Loads `<dir>/<name>.json` and `<dir>/<name>.onnx`, checking the file's sha256.
    pub fn load(dir: &Path, name: &str, intra_threads: usize) -> Result<SkinModel> {
        let manifest = SkinManifest::load(&dir.join(format!("{name}.json")))?;
        let session = ModelSession::builder(dir.join(format!("{name}.onnx")))
            .intra_threads(intra_threads)
            .expect_sha256(&manifest.sha256)
            .build()?;
        Ok(SkinModel {
            session,
            manifest,
            tile: 1024,
        })
    }

    /// Runs the model on an sRGB image already at working scale, tiling as needed.
    /// Returns `[C, H, W]`.
    pub fn infer(&mut self, srgb: &Rgb32FImage) -> Result<Array3<f32>> {
        let m = self.manifest.input.size_multiple.max(1);
        // Every window is at least 2·margin wide; the model's internal reflect padding needs
        // at least `min_size_px`, whatever the manifest's overlap says.
        let min_size = self
            .manifest
            .input
            .extra
            .get("min_size_px")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32;
        let margin = round_up(self.manifest.tile_overlap_px.max(min_size.div_ceil(2)), m);
        let tile = round_up(self.tile.max(m), m);
        let (w, h) = srgb.dimensions();
        let channels = self.manifest.outputs.channels.len();
        // Pad by `margin` on every side (mirror), then up to the size multiple.
        let pw = round_up(w + 2 * margin, m);
        let ph = round_up(h + 2 * margin, m);
        let padded = mirror_pad_chw(srgb, margin, pw, ph);
        let mut out = Array3::<f32>::zeros((channels, h as usize, w as usize));
        for ty in (0..h).step_by(tile as usize) {
            for tx in (0..w).step_by(tile as usize) {
                // Window in padded coordinates: [t, t + tile + 2·margin), clipped to the padded
                // image; every bound is a multiple of `m`, so pyramids stay grid-aligned.
                let (x1, y1) = (
                    (tx + tile + 2 * margin).min(pw),
                    (ty + tile + 2 * margin).min(ph),
                );
                let window = padded
                    .slice(s![.., ty as usize..y1 as usize, tx as usize..x1 as usize])
                    .to_owned()
                    .insert_axis(ndarray::Axis(0));
                let maps = self.run_window(window)?;
                let (iw, ih) = (tile.min(w - tx) as usize, tile.min(h - ty) as usize);
                let (mu, tyu, txu) = (margin as usize, ty as usize, tx as usize);
                out.slice_mut(s![.., tyu..tyu + ih, txu..txu + iw])
                    .assign(&maps.slice(s![0, .., mu..mu + ih, mu..mu + iw]));
            }
        }
        Ok(out)
    }

    fn run_window(&mut self, window: Array4<f32>) -> Result<Array4<f32>> {
        let err = |e: ort::Error| Error::Inference(e.to_string());
        let input = ort::value::Tensor::from_array(window).map_err(err)?;
        let input_name = self.manifest.input.name.clone();
        let outputs = self
            .session
            .session
            .run(ort::inputs![input_name.as_str() => input])
            .map_err(err)?;
        let maps = outputs[self.manifest.outputs.name.as_str()]
            .try_extract_array::<f32>()
            .map_err(err)?;
        maps.into_dimensionality::<ndarray::Ix4>()
            .map(|v| v.to_owned())
            .map_err(|e| Error::Inference(format!("model output is not 4-D: {e}")))
    }

    /// Crops the photo, resamples it to working scale and runs the model.
    ///
    /// `crop` is `(x0, y0, x1, y1)` in photo pixels; `px_per_mm` is the photo's scale.
    pub fn measure(
        &mut self,
        photo: &Rgb32FImage,
        crop: (u32, u32, u32, u32),
        px_per_mm: f64,
    ) -> Result<SkinMaps> {
        let working = self.manifest.input.working_px_per_mm;
        let zoom = working / px_per_mm;
        let band_limited = smooth_chromaticity(photo, crop, CHROMATICITY_SIGMA_PX)?;
        let (cw, ch) = band_limited.dimensions();
        let srgb = resample_linear_light(&band_limited, (0, 0, cw, ch), zoom)?;
        let maps = self.infer(&srgb)?;
        Ok(SkinMaps {
            maps,
            channels: self
                .manifest
                .outputs
                .channels
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            px_per_mm: working,
            crop,
            zoom,
            srgb,
            low_noise: LowNoiseShading::from_manifest(&self.manifest),
            low_noise_map: std::sync::OnceLock::new(),
            leak_bands: std::sync::OnceLock::new(),
            smoothed: SmoothedChannels::default(),
        })
    }
}

fn round_up(v: u32, m: u32) -> u32 {
    v.div_ceil(m) * m
}

/// Index into `0..n` reflecting about the edges without repeating the edge sample
/// (NumPy/ONNX "reflect"), repeated for pads longer than the image.
pub(crate) fn mirror_index(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as i64 - 1);
    let r = i.rem_euclid(period);
    (if r < n as i64 { r } else { period - r }) as usize
}

/// `[3, ph, pw]` planes with the image placed at `(margin, margin)` and mirrored around it.
fn mirror_pad_chw(img: &Rgb32FImage, margin: u32, pw: u32, ph: u32) -> Array3<f32> {
    let (w, h) = img.dimensions();
    let xs: Vec<usize> = (0..pw)
        .map(|x| mirror_index(i64::from(x) - i64::from(margin), w as usize))
        .collect();
    let mut out = Array3::<f32>::zeros((3, ph as usize, pw as usize));
    let raw = img.as_raw();
    for py in 0..ph as usize {
        let sy = mirror_index(py as i64 - i64::from(margin), h as usize);
        let row = &raw[sy * w as usize * 3..(sy + 1) * w as usize * 3];
        for (px, &sx) in xs.iter().enumerate() {
            for c in 0..3 {
                out[[c, py, px]] = row[sx * 3 + c];
            }
        }
    }
    out
}

/// Fails unless `crop` (`x0, y0, x1, y1`) is a non-empty rectangle inside `photo`.
fn check_crop(photo: &Rgb32FImage, crop: (u32, u32, u32, u32)) -> Result<()> {
    let (x0, y0, x1, y1) = crop;
    if x1 <= x0 || y1 <= y0 || x1 > photo.width() || y1 > photo.height() {
        return Err(Error::InvalidSetting {
            name: "crop",
            message: format!(
                "crop {crop:?} is empty or outside the {}×{} photo",
                photo.width(),
                photo.height()
            ),
        });
    }
    Ok(())
}

/// Standard deviation, in source pixels, of the Gaussian [`smooth_chromaticity`] applies.
pub const CHROMATICITY_SIGMA_PX: f32 = 1.5;

/// Crops `crop` out of `photo` and low-passes its chromaticity (linear R, G, B each divided by
/// linear luminance) with a Gaussian of `sigma_px` source pixels, keeping every pixel's own
/// luminance exactly.
///
/// Why: nearly every photo stores colour at half resolution (JPEG and HEIF 4:2:0; a Bayer
/// sensor's demosaicing has less colour than luminance detail). A pore or an icepick scar is a
/// dip in luminance only (shading darkens all channels alike), but after 4:2:0 its sharp luma
/// sits on its neighbours' blurred colour, and the chromophore decomposition reads the mismatch
/// as melanin and hemoglobin texture at the pore scale: on dark skin the adaptive thresholds then
/// rose above the pores themselves (a dark phantom saved as JPEG q95 kept 10 of its 79 pores;
/// with this filter 64 to 75, and the uncompressed phantom's numbers do not move). Smoothing
/// chromaticity rather than chroma (Cb, Cr) matters: chroma scales with luminance, so blurring
/// it would smear every pore's darkening, while a pure shading feature has constant
/// chromaticity and passes untouched. Colour features the metrics measure (macules ≥ 1 mm,
/// erythema) are many times wider than `sigma_px`. Not removed: on very dark skin JPEG's
/// Y/Cb/Cr rounding leaves ±1-code contours in blue that are millimetres wide (the same at
/// q90 and q100), as wide as macules (see the README's known gaps and [`LowNoiseShading`]).
pub fn smooth_chromaticity(
    photo: &Rgb32FImage,
    crop: (u32, u32, u32, u32),
    sigma_px: f32,
) -> Result<Rgb32FImage> {
    check_crop(photo, crop)?;
    let (x0, y0, x1, y1) = crop;
    let (w, h) = (x1 - x0, y1 - y0);
    let linear = |x: u32, y: u32| photo.get_pixel(x0 + x, y0 + y).0.map(srgb_to_linear);
    let luma = |[r, g, b]: [f32; 3]| (0.2126 * r + 0.7152 * g + 0.0722 * b).max(1e-5);
    if sigma_px <= 0.0 {
        return Ok(image::imageops::crop_imm(photo, x0, y0, w, h).to_image());
    }
    let plane = |c: usize| {
        let img = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_fn(w, h, |x, y| {
            let p = linear(x, y);
            image::Luma([p[c] / luma(p)])
        });
        imageproc::filter::gaussian_blur_f32(&img, sigma_px)
    };
    let planes = [plane(0), plane(1), plane(2)];
    Ok(Rgb32FImage::from_fn(w, h, |x, y| {
        let p = linear(x, y);
        let l = luma(p);
        let c = [0, 1, 2].map(|k| planes[k].get_pixel(x, y).0[0]);
        // Renormalise so the smoothed chromaticity keeps this pixel's luminance exactly.
        let norm = luma(c);
        image::Rgb(c.map(|v| linear_to_srgb((v / norm * l).max(0.0))))
    }))
}

/// Optical density `−ln(linear)` of an sRGB value, the linear value clipped to the model's
/// range `[1e-4, 1]` (`graph.decomposition.clip_min`, `clip_max` of skin-v1).
pub(crate) fn optical_density(srgb: f32) -> f32 {
    -srgb_to_linear(srgb).clamp(1e-4, 1.0).ln()
}

/// sRGB decoding (IEC 61966-2-1).
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// sRGB encoding (IEC 61966-2-1).
pub fn linear_to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

/// Crops `crop` out of `photo` and scales it by `zoom`, averaging in linear light.
///
/// Downscaling uses a Catmull-Rom convolution (anti-aliased); upscaling the same filter,
/// which keeps edges without ringing strong enough to invent pores.
pub fn resample_linear_light(
    photo: &Rgb32FImage,
    crop: (u32, u32, u32, u32),
    zoom: f64,
) -> Result<Rgb32FImage> {
    check_crop(photo, crop)?;
    let (x0, y0, x1, y1) = crop;
    let (cw, ch) = (x1 - x0, y1 - y0);
    let linear = Rgb32FImage::from_fn(cw, ch, |x, y| {
        let p = photo.get_pixel(x0 + x, y0 + y);
        image::Rgb(p.0.map(srgb_to_linear))
    });
    let (dw, dh) = (
        ((f64::from(cw) * zoom).round() as u32).max(1),
        ((f64::from(ch) * zoom).round() as u32).max(1),
    );
    const MAX_WORKING_PIXELS: u64 = 400_000_000;
    if u64::from(dw) * u64::from(dh) > MAX_WORKING_PIXELS {
        return Err(Error::InvalidSetting {
            name: "px-per-mm",
            message: format!(
                "resampling {cw}×{ch} by {zoom:.2} gives {dw}×{dh} working pixels (limit \
                 {MAX_WORKING_PIXELS}); is the scale right?"
            ),
        });
    }
    let mut dst = Rgb32FImage::new(dw, dh);
    if (dw, dh) == (cw, ch) {
        dst = linear;
    } else {
        let options = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom));
        fr::Resizer::new()
            .resize(&linear, &mut dst, &options)
            .map_err(|e| Error::Inference(format!("resampling failed: {e}")))?;
    }
    for p in dst.pixels_mut() {
        p.0 = p.0.map(|v| linear_to_srgb(v.clamp(0.0, 1.0)));
    }
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_index_reflects_without_repeating_edges() {
        let got: Vec<usize> = (-3..7).map(|i| mirror_index(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(mirror_index(-5, 1), 0);
    }

    #[test]
    fn smoothed_channels_are_computed_once_and_equal_a_direct_blur() {
        let maps = Array3::from_shape_fn((2, 30, 40), |(c, y, x)| {
            ((c * 7 + y * 3 + x * x) % 11) as f32 / 11.0
        });
        let skin = SkinMaps {
            maps: maps.clone(),
            channels: vec!["a".into(), "b".into()],
            px_per_mm: 10.0,
            crop: (0, 0, 40, 30),
            zoom: 1.0,
            srgb: Rgb32FImage::new(40, 30),
            low_noise: None,
            low_noise_map: std::sync::OnceLock::new(),
            leak_bands: std::sync::OnceLock::new(),
            smoothed: SmoothedChannels::default(),
        };
        let first = skin.smoothed("b", 2.5).unwrap();
        let direct = crate::metrics::smooth(maps.index_axis(ndarray::Axis(0), 1), 2.5);
        assert_eq!(*first, direct);
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &skin.smoothed("b", 2.5).unwrap()
        ));
        // Another σ or channel is another map, and a clone keeps what was computed.
        let wider = skin.smoothed("b", 5.0).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&first, &wider));
        assert_ne!(*first, *wider);
        let other = skin.smoothed("a", 2.5).unwrap();
        assert_eq!(
            *other,
            crate::metrics::smooth(maps.index_axis(ndarray::Axis(0), 0), 2.5)
        );
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &skin.clone().smoothed("b", 2.5).unwrap()
        ));
        assert!(skin.smoothed("c", 2.5).is_none());
    }

    #[test]
    fn srgb_round_trip() {
        for i in 0..=100 {
            let v = i as f32 / 100.0;
            assert!((linear_to_srgb(srgb_to_linear(v)) - v).abs() < 1e-5);
        }
    }

    #[test]
    fn resampling_preserves_flat_color_and_scales_size() {
        let img = Rgb32FImage::from_pixel(60, 40, image::Rgb([0.7, 0.5, 0.4]));
        let out = resample_linear_light(&img, (10, 0, 50, 40), 2.5).unwrap();
        assert_eq!(out.dimensions(), (100, 100));
        for p in out.pixels() {
            for (a, b) in p.0.iter().zip([0.7, 0.5, 0.4]) {
                assert!((a - b).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn chromaticity_smoothing_keeps_shading_dips_and_flat_colour_and_removes_colour_blocks() {
        let skin = [0.45f32, 0.30, 0.22];
        // A luminance-only dip (a pore: all channels × 0.6) on skin, plus 2×2 blocks of
        // colour error elsewhere, as a 4:2:0 decoder leaves them.
        let img = Rgb32FImage::from_fn(40, 40, |x, y| {
            let dip = if (18..21).contains(&x) && (18..21).contains(&y) {
                0.6
            } else {
                1.0
            };
            let cast = if x < 10 && (x / 2 + y / 2) % 2 == 0 {
                [1.1, 1.0, 0.9]
            } else {
                [1.0; 3]
            };
            image::Rgb(std::array::from_fn(|c| {
                linear_to_srgb(skin[c] * dip * cast[c])
            }))
        });
        let out = smooth_chromaticity(&img, (0, 0, 40, 40), CHROMATICITY_SIGMA_PX).unwrap();
        // The dip keeps its depth in every channel (within 1%).
        let centre = out.get_pixel(19, 19).0.map(srgb_to_linear);
        for c in 0..3 {
            assert!((centre[c] / skin[c] - 0.6).abs() < 0.006, "{c}: {centre:?}");
        }
        // Colour blocks are flattened: R/G varies ≥ 4× less than before in the blocky strip.
        let spread = |im: &Rgb32FImage| {
            let ratios: Vec<f32> = (2..8)
                .flat_map(|x| (2..38).map(move |y| (x, y)))
                .map(|(x, y)| {
                    let p = im.get_pixel(x, y).0.map(srgb_to_linear);
                    p[0] / p[1]
                })
                .collect();
            let max = ratios.iter().copied().fold(f32::MIN, f32::max);
            let min = ratios.iter().copied().fold(f32::MAX, f32::min);
            max - min
        };
        assert!(
            spread(&out) < 0.25 * spread(&img),
            "{} vs {}",
            spread(&out),
            spread(&img)
        );
        // Luminance is kept exactly everywhere.
        let luma = |p: [f32; 3]| 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2];
        for (a, b) in img.pixels().zip(out.pixels()) {
            let (a, b) = (luma(a.0.map(srgb_to_linear)), luma(b.0.map(srgb_to_linear)));
            assert!((a - b).abs() < 1e-4 * a.max(1e-3) + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn empty_crop_is_an_error() {
        let img = Rgb32FImage::new(10, 10);
        assert!(resample_linear_light(&img, (5, 5, 5, 9), 1.0).is_err());
        assert!(resample_linear_light(&img, (0, 0, 11, 9), 1.0).is_err());
    }
}

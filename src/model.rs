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
    /// How to weigh the input's channels by their noise for the pigment and redness maps, when
    /// the manifest describes the decomposition.
    pub weighting: Option<ChromophoreWeighting>,
    /// Each channel's noise in the photo, 8-bit code values ([`channel_noise_codes`]).
    pub photo_noise_codes: [f64; 3],
    /// Blue's noise in the photo, read on 2 × 2 means too, codes ([`blue_noise_codes`]).
    pub blue_noise_codes: f64,
    /// Each channel's noise at each level in the photo ([`crate::noise::NoiseLevels`]).
    pub noise_levels: [crate::noise::NoiseLevels; 3],
    /// σ (working pixels) of the pore band's centre and surround Gaussians, when the manifest
    /// gives them.
    pub pore_band_px: Option<[f32; 2]>,
    /// The pore band's noise per working pixel, computed on first use.
    pore_noise: std::sync::OnceLock<Option<Array2<f32>>>,
    /// Each channel's density band at pore scale ([`crate::pore_band::DensityBands`]),
    /// computed on first use.
    density_bands: std::sync::OnceLock<Option<crate::pore_band::DensityBands>>,
    /// The pore band's noise gain ([`crate::noise::BandGain`]), computed on first use.
    pore_band_gain: std::sync::OnceLock<Option<crate::noise::BandGain>>,
    /// The noise-weighted `[melanin_excess, hemoglobin_excess]`, computed on first use.
    weighted_excess: std::sync::OnceLock<Option<WeightedExcess>>,
    /// The noise-weighted relief band, computed on first use.
    relief: std::sync::OnceLock<Option<crate::relief::Relief>>,
    /// Channel levels and noise per level-grid block, computed on first use.
    block_noise: std::sync::OnceLock<Array2<([f32; 3], [f32; 3])>>,
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

/// The least uncertainty of an 8-bit sRGB code value, in codes: its rounding, `1/√12`.
const QUANTIZATION_CODES: f64 = 0.288_675_13;

/// The spread allowed to the shading's excess over its local background (natural-log OD) when
/// a channel cannot tell it: about the darkening of a boxcar scar's floor. Where every channel
/// is unbiased its data outweigh it many times, and the model's three-channel solution stands.
const SHADING_PRIOR_OD: f64 = 0.2;

/// Smoothing of the channel levels the weights are read from, mm: the finest pigment smoothing
/// ([`crate::metrics::MetricSettings::excess_smoothing_mm`]'s default), so a macule's centre is
/// weighed by its own level and not by the skin around it.
const LEVEL_SMOOTHING_MM: f64 = 0.3;

/// The lowest level (code values) a channel's density is evaluated at: below half a code it
/// carries nothing.
const MIN_LEVEL_CODES: f64 = 0.5;

/// Noise-weighted melanin and hemoglobin excess: the model's three-channel excess corrected,
/// pixel by pixel, by how much each channel can be trusted there.
///
/// Why: the Tsumura decomposition solves three densities for three components, and its melanin
/// leans hardest on blue (`inverse_matrix` row 1: 3.6 × blue, 3.7 × green). On dark skin the
/// blue channel is a few codes deep and a macule's centre one or two: sensor noise there is
/// as large as the signal and, clipped at 0, biased (σ = 4 codes on a true 1 reads about 2.1,
/// half the macule's blue density). The independent renderer's dark macules lost half their
/// contrast under noise and none was found.
///
/// The estimate: generalised least squares of the excess densities `d = A·(m, h, s)`, each
/// channel weighted by the inverse square of its density's uncertainty at the pixel, with a
/// Gaussian prior of width `SHADING_PRIOR_OD` on the shading excess `s`. The uncertainty
/// ([`density_uncertainty`]) is mostly the clip bias: the photo's noise in that channel
/// ([`channel_noise_codes`]) against the channel's local level. On a clean photo, or where a
/// channel is well above its noise, the bias is nil, the data outweigh the prior and the result
/// is the model's; where blue sits within its noise of 0 the shading excess is pulled toward 0
/// and melanin and hemoglobin come from red and green, where a macule's melanin still shows in
/// full. Written as the closed form `x̂ = x₀ − M⁻¹·e₃ · s₀ / σ_s²` on the model's own excess
/// maps (`x₀`; `s₀` the shading's excess over the model's background), `M = AᵀWA + e₃e₃ᵀ/σ_s²`.
///
/// Reference: Tsumura N., Haneishi H., Miyake Y. (1999), "Independent-component analysis of
/// skin color image", JOSA A 16(9):2169–2176, for the decomposition; the weighting is the
/// textbook Gauss–Markov estimator with a Gaussian prior (Tikhonov) on one component.
#[derive(Debug, Clone, PartialEq)]
pub struct ChromophoreWeighting {
    /// `graph.decomposition.matrix`: rows R, G, B; columns melanin, hemoglobin, shading.
    matrix: [[f64; 3]; 3],
    /// The model's parameters, for its chromophore background.
    reference: crate::reference::SkinReference,
}

impl ChromophoreWeighting {
    /// Reads the decomposition matrix and the background filter; `None` for a model that does
    /// not describe them.
    pub fn from_manifest(manifest: &SkinManifest) -> Option<ChromophoreWeighting> {
        let reference = crate::reference::SkinReference::from_manifest(manifest).ok()?;
        let rows = manifest
            .extra
            .get("graph")?
            .get("decomposition")?
            .get("matrix")?
            .as_array()?;
        let mut matrix = [[0.0; 3]; 3];
        for (row, values) in matrix.iter_mut().zip(rows) {
            for (m, v) in row.iter_mut().zip(values.as_array()?) {
                *m = v.as_f64()?;
            }
        }
        (rows.len() == 3).then_some(ChromophoreWeighting { matrix, reference })
    }

    /// `graph.decomposition.matrix`: rows R, G, B; columns melanin, hemoglobin, shading.
    pub fn matrix(&self) -> &[[f64; 3]; 3] {
        &self.matrix
    }

    /// The model's parameters (its filters, for maps the metrics form beside the model's).
    pub fn reference(&self) -> &crate::reference::SkinReference {
        &self.reference
    }

    /// How much of the shading excess to take out of melanin and hemoglobin at a pixel whose
    /// channel densities (R, G, B) are uncertain by `sigmas` (natural-log OD): `M⁻¹·e₃ / σ_s²`,
    /// first two entries.
    pub fn shading_coefficients(&self, sigmas: [f64; 3]) -> [f64; 2] {
        let mut m = [[0.0f64; 3]; 3];
        for (row, &sigma) in self.matrix.iter().zip(&sigmas) {
            let w = 1.0 / (sigma * sigma).max(1e-12);
            for i in 0..3 {
                for j in 0..3 {
                    m[i][j] += w * row[i] * row[j];
                }
            }
        }
        let prior = 1.0 / (SHADING_PRIOR_OD * SHADING_PRIOR_OD);
        m[2][2] += prior;
        // Third column of M⁻¹ by cofactors (M is symmetric).
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        let c0 = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det;
        let c1 = -(m[0][0] * m[1][2] - m[0][2] * m[1][0]) / det;
        [c0 * prior, c1 * prior]
    }

    /// The noise-weighted `[melanin_excess, hemoglobin_excess]` of `maps`; `None` when the
    /// model lacks one of the channels it needs.
    fn excess(&self, maps: &SkinMaps) -> Option<WeightedExcess> {
        let melanin = maps.channel("melanin_excess")?;
        let hemoglobin = maps.channel("hemoglobin_excess")?;
        let shading = maps.channel("shading")?.to_owned();
        let shading_excess = &shading - &self.reference.chromophore_background(&shading);
        // The weights vary no faster than the levels' smoothing (0.3 mm): a `LevelGrid`.
        let sigma_px = LEVEL_SMOOTHING_MM * maps.px_per_mm;
        let grid = LevelGrid::new(shading_excess.dim(), sigma_px);
        let (f, (bh, bw)) = (grid.f, grid.blocks);
        let blocks = |value: &dyn Fn(usize, usize) -> f32| grid.levels(value);
        let levels: Vec<Array2<f32>> = (0..3)
            .map(|c| blocks(&|y, x| 255.0 * maps.srgb.get_pixel(x as u32, y as u32).0[c]))
            .collect();
        // Red and green density excess, for the relief test: each channel's density is
        // `A·(m, h, s)`, and so is its excess.
        let excess_of = |c: usize| {
            let [a_m, a_h, a_s] = self.matrix[c].map(|v| v as f32);
            blocks(&|y, x| {
                a_m * melanin[[y, x]] + a_h * hemoglobin[[y, x]] + a_s * shading_excess[[y, x]]
            })
        };
        let (red, green) = (excess_of(0), excess_of(1));
        let noise = maps.photo_noise_codes;
        // Photo pixels averaged into a level: the random part of its uncertainty shrinks by
        // their number; the clip bias does not.
        let photo_sigma = sigma_px / maps.zoom;
        let samples = (4.0 * std::f64::consts::PI * photo_sigma * photo_sigma).max(1.0);
        let sigma = |c: usize, b: (usize, usize)| {
            density_uncertainty(f64::from(levels[c][b]), noise[c], samples)
        };
        let blue_left_out = noise_limited_blue(&levels[2], maps.blue_noise_codes);
        let coefficients = Array2::from_shape_fn((bh, bw), |b| {
            let prior = prior_weight(red[b], green[b]);
            if prior == 0.0 {
                return [0.0; 2];
            }
            let blue = if blue_left_out {
                f64::INFINITY
            } else {
                sigma(2, b)
            };
            self.shading_coefficients([sigma(0, b), sigma(1, b), blue])
                .map(|k| (prior * k) as f32)
        });
        let mut out = [melanin.to_owned(), hemoglobin.to_owned()];
        for ((y, x), &s) in shading_excess.indexed_iter() {
            let [cm, ch] = coefficients[[y / f, x / f]];
            out[0][[y, x]] -= cm * s;
            out[1][[y, x]] -= ch * s;
        }
        Some(WeightedExcess {
            maps: out,
            blue_left_out,
        })
    }
}

/// The noise-weighted `[melanin_excess, hemoglobin_excess]` ([`ChromophoreWeighting`]).
#[derive(Debug, Clone)]
struct WeightedExcess {
    maps: [Array2<f32>; 2],
    /// Whether blue was left out everywhere ([`noise_limited_blue`]).
    blue_left_out: bool,
}

/// The skin's blue level, in units of blue's noise, below which blue is left out of the
/// chromophore estimate everywhere in the photo (see [`noise_limited_blue`]).
///
/// Why 8: a macule darkens blue threefold or more (the independent renderer's dark macules:
/// 10 codes of skin to 1–2), so below 8 σ of skin its blue lies within about 2.7 σ of 0,
/// where clipping biases it. Measured (a temporary debug print) as median blue level over
/// [`blue_noise_codes`] (`scripts/independent_phantoms.py`, seeds 1 and 2, tan to dark skin,
/// 5–20 px/mm): dark
/// skin under 4 codes of noise 2.6, under 3 codes of noise and JPEG q85 4.6–5.1; brown skin
/// under noise 11.8; dark JPEG-only 13–14.5; every clean, exposure and cast photo 21 or more;
/// the 13 portraits in `../shared/photos` 13–34.
const NOISE_LIMITED_BLUE_LEVEL: f64 = 8.0;

/// Whether blue is too noisy to be used anywhere in the photo: its median level over the
/// level grid's blocks (`blue_levels`, codes) below [`NOISE_LIMITED_BLUE_LEVEL`] times its
/// noise (`blue_noise`, codes, [`blue_noise_codes`]).
///
/// Why the whole photo and not pixel by pixel: a macule is found against the spread of the
/// skin around it. At a dark macule's centre, where blue sits within its noise of 0, the
/// weighting leaves blue out and measures the macule in red and green. In the skin around it
/// blue is a few codes deeper, its uncertainty (0.03–0.1 OD under 4 codes of noise) is
/// below the shading prior's 0.2, and the weighting keeps it, so its noise reaches the
/// melanin map 3.6-fold. The threshold then comes from a noisier estimate than the macule's.
/// On the independent dark phantoms under noise the macules read 1.1–2.4 melanin units either
/// way, and the skin's spread 0.40 with blue against 0.33 without. Two of three macules fell
/// below the threshold: 1.6–1.8% pigmented area for 3.1–4.5%, and 0.1–1.5% under noise and
/// JPEG. Leaving blue out of the whole photo measures macule and skin alike. It is not done on
/// clean photos: there blue sees a dark macule best, and red and green alone read the
/// independent renderer's clean dark macules up to 2 points lower.
fn noise_limited_blue(blue_levels: &Array2<f32>, blue_noise: f64) -> bool {
    // An empty grid's median is NaN, which no comparison admits.
    let median = crate::stats::median(blue_levels.iter().map(|&v| f64::from(v)));
    blue_noise > 0.0 && median < NOISE_LIMITED_BLUE_LEVEL * blue_noise
}

/// Local levels over a smoothing of σ working pixels, computed on a grid of `f × f` blocks
/// (f ≈ σ) smoothed by σ/f, each pixel taking its block's: a ninth of the work at 10 px/mm,
/// for what varies no faster than that smoothing (channel weights, noise).
pub(crate) struct LevelGrid {
    /// The full map's `(h, w)`.
    pub(crate) dim: (usize, usize),
    /// Block side, working pixels.
    pub(crate) f: usize,
    /// The grid's `(h, w)`.
    pub(crate) blocks: (usize, usize),
    /// σ in working pixels.
    sigma_px: f64,
}

impl LevelGrid {
    fn new((h, w): (usize, usize), sigma_px: f64) -> LevelGrid {
        let f = (sigma_px.round() as usize).max(1);
        LevelGrid {
            dim: (h, w),
            f,
            blocks: (h.div_ceil(f), w.div_ceil(f)),
            sigma_px,
        }
    }

    /// Each block's mean of `value(y, x)`, smoothed over the grid.
    fn levels(&self, value: &dyn Fn(usize, usize) -> f32) -> Array2<f32> {
        let ((h, w), f) = (self.dim, self.f);
        let small = Array2::from_shape_fn(self.blocks, |(by, bx)| {
            let (y1, x1) = (((by + 1) * f).min(h), ((bx + 1) * f).min(w));
            let mut sum = 0.0;
            for y in by * f..y1 {
                for x in bx * f..x1 {
                    sum += value(y, x);
                }
            }
            sum / ((y1 - by * f) * (x1 - bx * f)) as f32
        });
        crate::metrics::smooth(small.view(), (self.sigma_px / f as f64) as f32)
    }
}

/// Red/green excess ratio at and above which a darkening (or brightening) is taken for relief,
/// where the shading prior does not hold: relief changes red and green alike (ratio 1).
const RELIEF_RED_GREEN: f64 = 0.9;

/// Red/green excess ratio at and below which the prior holds in full: melanin changes red 0.67
/// as much as green (the model's melanin vector), hemoglobin 0.19.
const CHROMOPHORE_RED_GREEN: f64 = 0.75;

/// Green excess (natural-log OD) below which the ratio is not read: plain skin, where the
/// prior holds.
const MIN_GREEN_EXCESS: f32 = 0.05;

/// How much of the shading prior applies at a pixel whose red and green density excesses are
/// `red` and `green`: 1 where they change in a chromophore's proportion, 0 where alike.
///
/// Why: the prior says the shading does not change at a macule's scale, which is false at a
/// scar or a pore. There the prior would hand the relief's darkening to melanin (measured on
/// our dark phantoms under σ 0.004–0.006 noise: 1–4 scars per image counted as pigment spots).
/// Red and green are deep enough on every skin to tell relief (ratio 1) from pigment (0.67)
/// without blue.
fn prior_weight(red: f32, green: f32) -> f64 {
    if green.abs() < MIN_GREEN_EXCESS {
        return 1.0;
    }
    let ratio = f64::from(red / green);
    ((RELIEF_RED_GREEN - ratio) / (RELIEF_RED_GREEN - CHROMOPHORE_RED_GREEN)).clamp(0.0, 1.0)
}

/// The noise of each channel of `photo` inside `crop`, in 8-bit code values: the robust spread
/// (1.4826 × median absolute deviation) of each pixel's difference from the mean of its four
/// neighbours, divided by that difference's gain for independent noise, √(1 + 1/4).
///
/// Why the photo's own pixels: a dark channel's bias comes from noise clipped at 0 pixel by
/// pixel, before any smoothing or resampling, so its weight must follow the noise there (the
/// working image's chromaticity is low-passed, [`smooth_chromaticity`], and hides it). Skin
/// is smooth over a photo pixel, so the four-neighbour residual is mostly noise and JPEG
/// rounding; the median ignores the pores, hair and edges that make its tails.
pub fn channel_noise_codes(photo: &Rgb32FImage, crop: (u32, u32, u32, u32)) -> [f64; 3] {
    [0, 1, 2].map(|c| residual_noise_codes(photo, crop, c, 1))
}

/// Blue's noise in `photo` inside `crop`, codes, read on the means of 2 × 2 pixels (times 2)
/// as well as on single pixels (`pixel_noise`, blue's [`channel_noise_codes`]): the larger of
/// the two.
///
/// Why the 2 × 2 means: JPEG removes the finest scale of the noise after the camera clipped
/// it at 0, so the clip bias stays and the pixel residual no longer shows its cause. On the
/// independent renderer's dark phantoms with 3 codes of noise saved at JPEG q85 the pixels read
/// 0.63 codes and the 2 × 2 means 1.8 (a temporary debug print; the unit test
/// `blue_noise_is_read_where_jpeg_smoothed_it_away` checks the same effect). For white noise the two agree. Only the decision of
/// `noise_limited_blue` reads it: on the portraits the means read 3–6 codes (texture and
/// demosaicing as much as noise), which would move the pixel weights of every photo.
pub fn blue_noise_codes(photo: &Rgb32FImage, crop: (u32, u32, u32, u32), pixel_noise: f64) -> f64 {
    pixel_noise.max(residual_noise_codes(photo, crop, 2, 2))
}

/// The four-neighbour residual noise of channel `c` on the means of `bin × bin` pixels of
/// `crop`, scaled back to one pixel's noise (× `bin`), in codes (see [`channel_noise_codes`]
/// and [`blue_noise_codes`]).
fn residual_noise_codes(
    photo: &Rgb32FImage,
    crop: (u32, u32, u32, u32),
    c: usize,
    bin: u32,
) -> f64 {
    let (x0, y0, x1, y1) = crop;
    let (w, h) = (x1.saturating_sub(x0) / bin, y1.saturating_sub(y0) / bin);
    if w < 3 || h < 3 {
        return 0.0;
    }
    // A quarter of a million samples are plenty for a median.
    let area = f64::from(w) * f64::from(h);
    let step = (area / 2.5e5).sqrt().ceil().max(1.0) as usize;
    let at = |bx: u32, by: u32| {
        let (px, py) = (x0 + bx * bin, y0 + by * bin);
        let sum: f32 = (py..py + bin)
            .flat_map(|y| (px..px + bin).map(move |x| photo.get_pixel(x, y).0[c]))
            .sum();
        255.0 * sum / (bin * bin) as f32
    };
    // The residual of means of `bin²` integer codes is a multiple of 1/(4·bin²) code; it is
    // put back on that grid, which the photo's float values miss by rounding.
    let step_codes = 0.25 / f64::from(bin * bin);
    let grid = step_codes as f32;
    let mut residuals: Vec<f32> = (1..h - 1)
        .step_by(step)
        .flat_map(|y| {
            (1..w - 1).step_by(step).map(move |x| {
                let r =
                    at(x, y) - 0.25 * (at(x, y - 1) + at(x, y + 1) + at(x - 1, y) + at(x + 1, y));
                (r.abs() / grid).round() * grid
            })
        })
        .collect();
    f64::from(bin) * 1.4826 * grouped_median(&mut residuals, step_codes) / 1.25f64.sqrt()
}

/// The median of residuals of 8-bit codes (or of means of them), interpolated within their
/// `step` (a quarter code for single pixels).
///
/// Why: the four-neighbour residual of integer codes is a multiple of ¼ code, so on a photo
/// with a code or two of noise a plain median jumps by a third of the estimate; the grouped
/// median (the median's position within the run of equal values, spread over the step) moves
/// smoothly with the noise.
fn grouped_median(values: &mut [f32], step: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, &mut v, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let lo = values.iter().filter(|&&x| x < v).count();
    let hi = values.iter().filter(|&&x| x <= v).count();
    let within = (values.len() as f64 / 2.0 - lo as f64) / (hi - lo) as f64;
    (f64::from(v) + (within - 0.5) * step).max(0.0)
}

/// How uncertain (natural-log OD) the density of a channel is whose local mean level reads
/// `level` codes, in a photo whose noise in that channel is `noise` codes, the level being the
/// mean of `samples` photo pixels: `√(bias² + (δ² / samples))`, `δ = noise · dOD/dv` one
/// pixel's density spread.
///
/// The bias has two parts, both of which smoothing keeps:
/// - clipping: noise clipped at code 0 raises a dark channel's mean, so its density reads too
///   low. The level is the mean of a rectified Gaussian, `μΦ(μ/σ) + σφ(μ/σ)`; inverting it
///   (`unclipped_level`) gives the true level μ, and this part is the density between the
///   two (ln 2.1 ≈ 0.75 OD for a macule's blue at one code under 4-code noise);
/// - the log: the model takes each pixel's density before any smoothing, and the mean of
///   `−ln v` over noisy `v` exceeds `−ln` of the mean by about `δ²/2`.
///
/// Both vanish for a channel many σ above 0, and δ is then a few thousandths of OD.
pub fn density_uncertainty(level: f64, noise: f64, samples: f64) -> f64 {
    let density = |v: f64| f64::from(optical_density((v.max(MIN_LEVEL_CODES) / 255.0) as f32));
    // Beyond 6σ the clipped tail is below 1e-9 of σ.
    let clipped = if noise > 0.0 && level < 6.0 * noise {
        density(unclipped_level(level, noise)) - density(level)
    } else {
        0.0
    };
    let random = (noise * density_per_code(level)).max(rounding_density(level));
    let bias = clipped + 0.5 * random * random;
    (bias * bias + random * random / samples).sqrt()
}

/// The mean μ of a Gaussian of spread `noise` whose values clipped at 0 average `level`
/// (both in codes): the inverse of `μΦ(μ/σ) + σφ(μ/σ)`, by bisection in units of σ.
fn unclipped_level(level: f64, noise: f64) -> f64 {
    let t = level / noise;
    if t >= 6.0 {
        return level;
    }
    let rectified =
        |u: f64| u * normal_cdf(u) + (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let (mut lo, mut hi) = (-8.0f64, t.max(-8.0));
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if rectified(mid) < t {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi) * noise
}

/// The standard normal distribution function, through Abramowitz & Stegun's 7.1.26 rational
/// approximation of erf (absolute error below 1.5e-7).
fn normal_cdf(u: f64) -> f64 {
    let x = u.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if u >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The spread (natural-log OD) that 8-bit rounding alone gives the density of a channel whose
/// level is `level` codes: a rounding error is uniform over one code (σ = 1/√12 code), times
/// the density of one code there (`1/v` on sRGB's linear segment, `2.4/(v + 14)` above it).
/// The least random part of [`density_uncertainty`]; the scar detector's red-and-green relief
/// test weighs its clearance by it where blue is unmeasured.
pub fn rounding_density(level: f64) -> f64 {
    QUANTIZATION_CODES * density_per_code(level)
}

/// `|dOD/dv|` of one sRGB channel at code value `v` (0–255): how much density one code of noise
/// is. `1/v` on the linear segment (the density of a dark channel is as uncertain as the
/// channel is shallow), `2.4/(v + 14.0)` on the power segment.
pub(crate) fn density_per_code(v: f64) -> f64 {
    let v = v.max(MIN_LEVEL_CODES);
    if v <= 0.04045 * 255.0 {
        1.0 / v
    } else {
        2.4 / (v + 0.055 * 255.0)
    }
}

impl SkinMaps {
    /// The map the metrics measure as `name`: for `melanin_excess` and `hemoglobin_excess` the
    /// noise-weighted excess ([`ChromophoreWeighting`]) and for `scar_response` and
    /// `scar_energy` the noise-weighted relief ([`crate::relief::Relief`]) when the model
    /// describes its decomposition and the photo's noise calls for it; otherwise, and for
    /// every other name, the model's channel.
    pub fn measured(&self, name: &str) -> Option<ndarray::ArrayView2<'_, f32>> {
        if let Some(relief) = self.relief() {
            match name {
                "scar_response" => return Some(relief.response.view()),
                "scar_energy" => return Some(relief.energy.view()),
                _ => {}
            }
        }
        let index = ["melanin_excess", "hemoglobin_excess"]
            .iter()
            .position(|n| *n == name);
        if let (Some(i), Some(weighted)) = (index, self.weighted_excess()) {
            return Some(weighted.maps[i].view());
        }
        self.channel(name)
    }

    /// The noise-weighted excess maps, computed once; `None` without a weighting.
    fn weighted_excess(&self) -> Option<&WeightedExcess> {
        let weighting = self.weighting.as_ref()?;
        self.weighted_excess
            .get_or_init(|| weighting.excess(self))
            .as_ref()
    }

    /// Whether the chromophore maps the metrics measure were estimated without blue (see
    /// `noise_limited_blue`): they then tell pigment from relief by red and green alone.
    pub fn blue_left_out(&self) -> bool {
        self.weighted_excess().is_some_and(|w| w.blue_left_out)
    }

    /// The noise-weighted relief band (see [`crate::relief::Relief`]), computed once; `None`
    /// where the model's own `scar_response` stands.
    pub fn relief(&self) -> Option<&crate::relief::Relief> {
        self.relief
            .get_or_init(|| crate::relief::Relief::compute(self))
            .as_ref()
    }

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
    /// The noise (standard deviation, natural-log OD) the photo's own noise puts into
    /// `pore_response` at each working pixel; `None` when the manifest does not describe the
    /// pore band or the photo's noise could not be measured.
    ///
    /// Each channel's noise at the pixel's level ([`crate::noise::NoiseLevels`]) goes through
    /// the chromaticity filter, the resampling and the band ([`crate::noise::BandGain`]). The
    /// levels are the working image's smoothed over `LEVEL_SMOOTHING_MM`, so a pore does not
    /// raise its own noise; like the chromophore weights they are computed on `f × f` blocks.
    pub fn pore_noise(&self) -> Option<&Array2<f32>> {
        self.pore_noise
            .get_or_init(|| {
                let (h, w) = self.level_grid().dim;
                self.pore_noise_with(self.low_noise?.weights, (0, 0), (h, w))
            })
            .as_ref()
    }

    /// The noise the photo's own noise puts into the pore band of `weights · OD` (weights
    /// summing to 1) at each working pixel of the `dim` window at `origin`, as
    /// [`SkinMaps::pore_noise`] does for the model's weights over the whole crop; for the
    /// metrics' grey pore band ([`crate::pore_band`]), whose weights are a region's own.
    pub fn pore_noise_with(
        &self,
        weights: [f32; 3],
        (y0, x0): (usize, usize),
        dim: (usize, usize),
    ) -> Option<Array2<f32>> {
        let gain = (*self.pore_band_gain.get_or_init(|| {
            let [center, surround] = self.pore_band_px?;
            if self
                .noise_levels
                .iter()
                .any(crate::noise::NoiseLevels::is_empty)
            {
                return None;
            }
            Some(crate::noise::BandGain::compute(
                self.zoom,
                CHROMATICITY_SIGMA_PX,
                center,
                surround,
            ))
        }))?;
        let f = self.level_grid().f;
        let blocks = self.block_noise();
        let (by1, bx1) = ((y0 + dim.0).div_ceil(f), (x0 + dim.1).div_ceil(f));
        let noise = blocks
            .slice(ndarray::s![y0 / f..by1, x0 / f..bx1])
            .mapv(|(v, sigma)| gain.band_noise(v, sigma, weights));
        Some(Array2::from_shape_fn(dim, |(y, x)| {
            noise[[(y0 + y) / f - y0 / f, (x0 + x) / f - x0 / f]]
        }))
    }

    /// The pore band of each channel's density ([`crate::pore_band::DensityBands`]),
    /// computed once and shared by the photo's regions; `None` when the model does not
    /// describe its filters.
    pub fn density_bands(&self) -> Option<&crate::pore_band::DensityBands> {
        self.density_bands
            .get_or_init(|| crate::pore_band::DensityBands::compute(self))
            .as_ref()
    }

    /// The grid of [`LEVEL_SMOOTHING_MM`] blocks over the working image, on which channel
    /// levels and what follows from them (noise, channel weights) are computed.
    pub(crate) fn level_grid(&self) -> LevelGrid {
        let (w, h) = self.srgb.dimensions();
        LevelGrid::new(
            (h as usize, w as usize),
            LEVEL_SMOOTHING_MM * self.px_per_mm,
        )
    }

    /// Each [`SkinMaps::level_grid`] block's linear channel levels and the photo's noise at
    /// those levels (linear, one photo pixel; 0 where a channel's noise level function has no
    /// bin), computed once: the pore band's noise and the relief's weights both read it.
    pub(crate) fn block_noise(&self) -> &Array2<([f32; 3], [f32; 3])> {
        self.block_noise.get_or_init(|| {
            let grid = self.level_grid();
            let lut = linear_lut();
            let levels: Vec<Array2<f32>> = (0..3)
                .map(|c| {
                    grid.levels(&|y, x| {
                        lut_linear(&lut, self.srgb.get_pixel(x as u32, y as u32).0[c])
                    })
                })
                .collect();
            Array2::from_shape_fn(grid.blocks, |b| {
                let v = [levels[0][b], levels[1][b], levels[2][b]];
                let sigma = [0, 1, 2].map(|c| self.noise_levels[c].at(v[c]).unwrap_or(0.0));
                (v, sigma)
            })
        })
    }

    /// One measured map ([`SkinMaps::measured`]) smoothed by a Gaussian of `sigma_px` working
    /// pixels (see [`crate::metrics::smooth`]), computed once per photo and shared by its
    /// regions.
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
        let map = std::sync::Arc::new(crate::metrics::smooth(self.measured(name)?, sigma_px));
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
        let photo_noise_codes = channel_noise_codes(photo, crop);
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
            weighting: ChromophoreWeighting::from_manifest(&self.manifest),
            photo_noise_codes,
            blue_noise_codes: blue_noise_codes(photo, crop, photo_noise_codes[2]),
            noise_levels: crate::noise::NoiseLevels::measure(photo, crop),
            pore_band_px: pore_band_px(&self.manifest),
            pore_noise: std::sync::OnceLock::new(),
            density_bands: std::sync::OnceLock::new(),
            pore_band_gain: std::sync::OnceLock::new(),
            weighted_excess: std::sync::OnceLock::new(),
            relief: std::sync::OnceLock::new(),
            block_noise: std::sync::OnceLock::new(),
            leak_bands: std::sync::OnceLock::new(),
            smoothed: SmoothedChannels::default(),
        })
    }
}

/// σ (working pixels) of the pore band's centre and surround, from the `pore_response`
/// channel's `sigmas` in the manifest.
fn pore_band_px(manifest: &SkinManifest) -> Option<[f32; 2]> {
    let channel = manifest
        .outputs
        .channels
        .iter()
        .find(|c| c.name == "pore_response")?;
    let sigmas = channel.extra.get("sigmas")?.as_array()?;
    let sigma = |i: usize| Some(sigmas.get(i)?.get("sigma_px")?.as_f64()? as f32);
    Some([sigma(0)?, sigma(1)?])
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

/// Rec. 709 luminance weights of linear R, G, B: the luminance [`smooth_chromaticity`] keeps.
pub(crate) const LUMA: [f32; 3] = [0.2126, 0.7152, 0.0722];

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
    let luma = |p: [f32; 3]| (0..3).map(|c| LUMA[c] * p[c]).sum::<f32>().max(1e-5);
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

const LUT_SIZE: usize = 16384;

/// sRGB → linear lookup table (16385 entries over 0..1, nearest entry; error < 2·10⁻⁴, below
/// 8-bit quantization): a 24 MP photo needs 72 M conversions and `powf` would dominate the
/// registration time (and the noise measurement reads 30 pixels per sample).
pub(crate) fn linear_lut() -> Vec<f32> {
    (0..=LUT_SIZE)
        .map(|i| srgb_to_linear(i as f32 / LUT_SIZE as f32))
        .collect()
}

/// Branch-free lookup: the saturating float → integer cast sends NaN and negatives to entry 0
/// (black), and `min` sends values above 1 to white.
#[inline]
pub(crate) fn lut_linear(lut: &[f32], v: f32) -> f32 {
    lut[((v * LUT_SIZE as f32 + 0.5) as usize).min(LUT_SIZE)]
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

    fn weighting() -> ChromophoreWeighting {
        let manifest =
            SkinManifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/skin-v1.json"))
                .unwrap();
        ChromophoreWeighting::from_manifest(&manifest).expect("skin-v1 describes its matrix")
    }

    /// The noise-weighted estimate of an excess whose blue reads `blue_error` too light, with
    /// channel uncertainties `sigmas`: `(melanin, hemoglobin)`.
    fn weighted_estimate(
        w: &ChromophoreWeighting,
        truth: [f64; 3],
        blue_error: f64,
        sigmas: [f64; 3],
    ) -> (f64, f64) {
        let mut d = [0.0; 3];
        for (c, dc) in d.iter_mut().enumerate() {
            *dc = (0..3).map(|k| w.matrix[c][k] * truth[k]).sum::<f64>();
        }
        d[2] -= blue_error;
        // The model's exact three-channel solution x₀ = A⁻¹d, then the closed-form correction.
        let inv = invert3(w.matrix);
        let x0: Vec<f64> = (0..3)
            .map(|i| (0..3).map(|c| inv[i][c] * d[c]).sum())
            .collect();
        let [cm, ch] = w.shading_coefficients(sigmas);
        (x0[0] - cm * x0[2], x0[1] - ch * x0[2])
    }

    fn invert3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        let mut inv = [[0.0; 3]; 3];
        for (i, row) in inv.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let (r0, r1) = ((j + 1) % 3, (j + 2) % 3);
                let (c0, c1) = ((i + 1) % 3, (i + 2) % 3);
                *v = (m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]) / det;
            }
        }
        inv
    }

    #[test]
    fn trusted_channels_keep_the_three_channel_solution() {
        let w = weighting();
        // A macule with a little relief, every channel known to 0.01 OD: the prior (0.2 OD)
        // is negligible and melanin, hemoglobin are the model's.
        let (m, h) = weighted_estimate(&w, [1.5, 0.2, 0.1], 0.0, [0.01; 3]);
        assert!((m - 1.5).abs() < 0.01 && (h - 0.2).abs() < 0.01, "{m} {h}");
    }

    #[test]
    fn a_biased_blue_gives_way_to_red_and_green() {
        let w = weighting();
        // A macule's melanin excess 1.5 whose blue reads 0.8 OD light (noise clipped at 0):
        // the three-channel melanin loses most of it, the weighted estimate keeps it.
        let truth = [1.5, 0.0, 0.0];
        let inv = invert3(w.matrix);
        let three_channel = 1.5 - inv[0][2] * 0.8;
        assert!(
            three_channel < 0.0,
            "the bias alone erases it: {three_channel}"
        );
        let (m, h) = weighted_estimate(&w, truth, 0.8, [0.01, 0.01, 0.9]);
        assert!((m - 1.5).abs() < 0.2, "melanin {m}");
        assert!(h.abs() < 0.1, "hemoglobin {h}");
    }

    #[test]
    fn the_clip_bias_inverts_the_rectified_mean() {
        // Mean of max(0, μ + σZ) by a fine quadrature, for μ from below 0 to well above σ.
        let rectified_mean = |mu: f64, sigma: f64| {
            let n = 20_000;
            (0..n)
                .map(|i| {
                    let z = -8.0 + 16.0 * (i as f64 + 0.5) / n as f64;
                    let density = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
                    (mu + sigma * z).max(0.0) * density * 16.0 / n as f64
                })
                .sum::<f64>()
        };
        for mu in [-2.0, 0.0, 1.0, 3.0, 10.0, 30.0] {
            let level = rectified_mean(mu, 4.0);
            let back = unclipped_level(level, 4.0);
            assert!((back - mu).abs() < 0.01, "μ {mu}: level {level} → {back}");
        }
        // A macule's blue at one code under 4-code noise reads about 2.1 codes: its density is
        // ln(2.1) ≈ 0.75 OD too light from the clipping alone, and its pixels' densities spread
        // wider still, so the channel counts for nothing; 120 codes are a few thousandths of OD.
        let level = rectified_mean(1.0, 4.0);
        assert!((level - 2.15).abs() < 0.05, "{level}");
        let at_macule = density_uncertainty(level, 4.0, 1e9);
        assert!(at_macule > 1.0, "{at_macule}");
        let bright = density_uncertainty(120.0, 4.0, 1e9);
        assert!(bright < 0.01, "{bright}");
    }

    #[test]
    fn rounding_is_a_twelfth_root_of_a_code_in_density() {
        // Linear segment of sRGB: one code at level c is 1/c of density, and its rounding
        // spreads 1/√12 of that.
        assert!((rounding_density(2.0) - 0.5 / 12f64.sqrt()).abs() < 1e-6);
        // Below half a code a channel carries nothing: held at the half-code density.
        assert_eq!(rounding_density(0.0), rounding_density(0.5));
        // Power segment (gamma 2.4): near code 200 a code is 2.4 / (200 + 14) of density.
        assert!((rounding_density(200.0) - 2.4 / 214.025 / 12f64.sqrt()).abs() < 1e-6);
        assert!(rounding_density(50.0) > rounding_density(51.0));
        // It is the least random part of a density's uncertainty: a clean bright channel.
        let clean = density_uncertainty(120.0, 0.0, 1.0);
        assert!((clean - rounding_density(120.0)).abs() < 1e-4, "{clean}");
    }

    /// Standard normal deviates, Box–Muller from a fixed LCG seeded with `seed`.
    fn gaussian_source(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        move || {
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn channel_noise_is_read_from_the_photo() {
        // A smooth gradient with Gaussian noise of σ 3 codes.
        let mut gauss = gaussian_source(12345);
        let (w, h) = (300u32, 200u32);
        let mut photo = Rgb32FImage::new(w, h);
        for (x, y, p) in photo.enumerate_pixels_mut() {
            let base = 60.0 + 0.2 * f64::from(x) + 0.1 * f64::from(y);
            for (value, sigma) in p.0.iter_mut().zip([3.0, 1.0, 0.0]) {
                let v = (base + sigma * gauss()).round().clamp(0.0, 255.0);
                *value = (v / 255.0) as f32;
            }
        }
        let noise = channel_noise_codes(&photo, (0, 0, w, h));
        assert!((noise[0] - 3.0).abs() < 0.15, "{noise:?}");
        assert!((noise[1] - 1.0).abs() < 0.1, "{noise:?}");
        // Rounding alone: about 1/√12 code, read through the quarter-code steps.
        assert!(noise[2] < 0.4, "{noise:?}");
    }

    #[test]
    fn blue_noise_is_read_where_jpeg_smoothed_it_away() {
        // Dark skin's blue, 8 codes, under σ 3 codes of noise clipped at 0, then saved as JPEG
        // q85.
        let mut gauss = gaussian_source(777);
        let (w, h) = (320u32, 240u32);
        let mut noisy = image::RgbImage::new(w, h);
        for p in noisy.pixels_mut() {
            for (value, level) in p.0.iter_mut().zip([60.0, 30.0, 8.0]) {
                *value = (level + 3.0 * gauss()).round().clamp(0.0, 255.0) as u8;
            }
        }
        let crop = (0, 0, w, h);
        let float =
            |img: &image::RgbImage| image::DynamicImage::ImageRgb8(img.clone()).into_rgb32f();
        // Unsmoothed noise: pixels and 2 × 2 means agree.
        let white = float(&noisy);
        let fine = channel_noise_codes(&white, crop)[2];
        let binned = blue_noise_codes(&white, crop, fine);
        assert!(
            (binned - fine).abs() < 0.25 && fine > 2.0,
            "{fine} {binned}"
        );
        // JPEG removes the finest scale: the pixels read far less than the noise that was
        // clipped, the 2 × 2 means much more of it.
        let bytes = crate::phantom::jpeg_round_trip(&noisy, 85).unwrap();
        let jpeg = image::load_from_memory(&bytes).unwrap().into_rgb32f();
        let fine = channel_noise_codes(&jpeg, crop)[2];
        let binned = blue_noise_codes(&jpeg, crop, fine);
        assert!(binned > 1.5 * fine, "{fine} {binned}");
        // Skin whose blue is 8 codes is noise-limited under that noise, not under rounding.
        let skin = Array2::from_elem((20, 20), 8.0f32);
        assert!(noise_limited_blue(&skin, binned));
        assert!(!noise_limited_blue(&skin, QUANTIZATION_CODES));
        assert!(!noise_limited_blue(
            &Array2::from_elem((20, 20), 120.0f32),
            binned
        ));
    }

    #[test]
    fn relief_does_not_take_the_shading_prior() {
        // Relief darkens red and green alike; melanin red 0.67 as much; plain skin is let be.
        assert_eq!(prior_weight(0.3, 0.3), 0.0);
        assert_eq!(prior_weight(0.2, 0.3), 1.0);
        assert_eq!(prior_weight(0.001, 0.01), 1.0);
        let between = prior_weight(0.25, 0.3);
        assert!(between > 0.0 && between < 1.0, "{between}");
    }

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
            weighting: None,
            photo_noise_codes: [0.0; 3],
            blue_noise_codes: 0.0,
            noise_levels: Default::default(),
            pore_band_px: None,
            pore_noise: std::sync::OnceLock::new(),
            density_bands: std::sync::OnceLock::new(),
            pore_band_gain: std::sync::OnceLock::new(),
            weighted_excess: std::sync::OnceLock::new(),
            relief: std::sync::OnceLock::new(),
            block_noise: std::sync::OnceLock::new(),
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

//! A second, plain-Rust implementation of the `skin-v1` model, used to check the ONNX file.
//!
//! Why it exists: `models/skin-v1.onnx` is a graph of generic operators (Pad, Conv,
//! AveragePool, Resize, MatMul, ...) assembled by a Python script. Nothing in the graph says
//! that it computes the maps its manifest (`models/skin-v1.json`) describes — a wrong pad mode,
//! a transposed matrix or a kernel from another σ would still produce plausible-looking maps.
//! This module recomputes the same maps from the manifest alone, serially and op by op as
//! written in `models/skin_reference.py`, so the integration tests can demand that ONNX Runtime
//! and this code agree to float rounding (`tests/skin_model.rs`). It is not used in the
//! pipeline; it is a check, and a readable statement of what the maps are.
//!
//! The model (every number below comes from the manifest's `graph` section, not from this file,
//! except the sRGB transfer-function constants, which are a standard):
//!
//! 1. sRGB → linear light, IEC 61966-2-1: `c ≤ 0.04045 ? c/12.92 : ((c+0.055)/1.055)^2.4`.
//! 2. Optical density `OD = −ln(clip(linear, clip_min, clip_max))`: densities of absorbers add
//!    (Beer–Lambert), intensities do not.
//! 3. Per pixel `[m, h, s] = A⁻¹ · OD`, where `A`'s columns are the melanin and hemoglobin
//!    density vectors and (1,1,1) for shading: Tsumura, Haneishi & Miyake, "Independent-component
//!    analysis of skin color image", J Opt Soc Am A 16(9):2169–2176, 1999, with the shading
//!    term of Tsumura et al., ACM SIGGRAPH 2003. An exposure change adds a constant to all three
//!    densities, which lands entirely in `s`.
//! 4. Separable Gaussian blurs with reflect padding (the edge sample is not repeated: index −1
//!    reads 1, index n reads n−2; NumPy `mode="reflect"` = ONNX Pad `mode="reflect"`). Large
//!    σ use a pyramid: AveragePool f×f → blur at σ′ = √(σ²/f² − 1/4) → bilinear Resize ×f with
//!    `half_pixel` coordinates.
//! 5. `pore_response = G(0.8)·u − G(4)·u` of the noise-weighted shading `u = Σ u_c·OD_c`
//!    (`graph.decomposition.pore_weights`, summing to 1), `scar_response = G(4)·s − G(20)·s`,
//!    `{melanin,hemoglobin}_excess = x − G(32)·x`, `scar_energy = √(G(8)·scar_response²)`.
//!    Why two shadings: the Tsumura row `s` rejects melanin and hemoglobin exactly, which
//!    scars need (macules are scar-sized), but it weighs the darkest, noisiest channel (blue)
//!    heavily; pores are far smaller than any chromophore feature, so their band takes the
//!    minimum-noise inverse-variance mean of the three densities instead.
//!
//! Floating-point operations are done in `f32` in the order the Python reference uses (taps
//! left to right, pool samples row-major, bilinear terms in a fixed order), so the two differ
//! only where their `pow`/`ln` differ. ONNX Runtime vectorises and may reorder sums; it agrees
//! with this module within 2e-6 on every channel (the tests allow 1e-4).
//!
//! The stored kernels are checked against the Gaussian formula when the manifest is read
//! ([`SkinReference::from_manifest`]): a manifest whose weights were corrupted, or whose σ was
//! edited without regenerating the weights, is refused rather than silently followed.

use std::path::PathBuf;

use image::Rgb32FImage;
use ndarray::{Array2, Array3, Axis};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::SkinManifest;

/// Output channels, in the order the graph concatenates them (`[m, h] ‖ s ‖ pore ‖ scar ‖
/// excess(m, h) ‖ energy`). The manifest must list the same names in the same order.
pub const CHANNELS: [&str; 8] = [
    "melanin",
    "hemoglobin",
    "shading",
    "pore_response",
    "scar_response",
    "melanin_excess",
    "hemoglobin_excess",
    "scar_energy",
];

/// Largest allowed difference between a stored kernel weight and the Gaussian formula.
pub const KERNEL_TOLERANCE: f64 = 1e-6;

/// Largest allowed entry of `A·A⁻¹ − I` for the manifest's matrix and its stored inverse.
const INVERSE_TOLERANCE: f64 = 1e-5;

/// The filters the graph uses, by manifest key.
const FILTERS: [&str; 5] = [
    "pore_center",
    "pore_surround",
    "scar_surround",
    "scar_energy",
    "chromophore_background",
];

/// One Gaussian smoothing step as the graph realises it.
#[derive(Debug, Clone, PartialEq)]
pub struct Smoothing {
    /// Manifest key, e.g. "scar_surround".
    pub name: String,
    /// Nominal σ in full-resolution pixels.
    pub sigma_px: f64,
    /// 1 for a direct blur; f > 1 for AveragePool f → blur → Resize ×f.
    pub pyramid_factor: usize,
    /// The kernel (σ′ at 1/f scale), `2r + 1` taps, as stored in the manifest.
    pub weights: Vec<f32>,
}

impl Smoothing {
    /// Kernel half-width r (reflect padding applied before the blur).
    pub fn radius(&self) -> usize {
        (self.weights.len() - 1) / 2
    }
}

/// The `skin-v1` parameters read from a manifest and checked; [`SkinReference::run`] computes
/// the maps.
#[derive(Debug, Clone, PartialEq)]
pub struct SkinReference {
    size_multiple: usize,
    min_size: usize,
    clip_min: f32,
    clip_max: f32,
    inverse: [[f32; 3]; 3],
    pore_weights: [f32; 3],
    pore_center: Smoothing,
    pore_surround: Smoothing,
    scar_surround: Smoothing,
    scar_energy: Smoothing,
    chromophore_background: Smoothing,
}

/// Computes the `skin-v1` maps `[8, H, W]` of an sRGB image with the plain-Rust reference.
///
/// Shorthand for [`SkinReference::from_manifest`] followed by [`SkinReference::run`]; parse once
/// and call `run` when computing many images.
pub fn reference_maps(manifest: &SkinManifest, srgb: &Rgb32FImage) -> Result<Array3<f32>> {
    SkinReference::from_manifest(manifest)?.run(srgb)
}

/// Kernel half-width for σ: r = ⌈3σ⌉ (with the Python reference's 1e-9 slack, so that an exact
/// multiple of 1/3 does not gain a tap from rounding).
pub fn gaussian_radius(sigma: f64) -> usize {
    (3.0 * sigma - 1e-9).ceil().max(0.0) as usize
}

/// Normalised sampled Gaussian `w_k ∝ exp(−k²/2σ²)`, k = −r..=r, in `f64` (the manifest stores
/// these values rounded to `f32`).
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let r = gaussian_radius(sigma) as i64;
    let w: Vec<f64> = (-r..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// σ′ (in 1/f-scale pixels) of the blur between AveragePool f and Resize ×f such that the
/// composite filter has variance σ² (full-resolution px²): box (f²−1)/12 plus half-pixel tent
/// (2f²+1)/12 is f²/4, so σ′² = σ²/f² − 1/4. For f = 1 it is σ.
pub fn pyramid_sigma(sigma: f64, f: usize) -> f64 {
    if f == 1 {
        sigma
    } else {
        let f = f as f64;
        (sigma * sigma / (f * f) - 0.25).sqrt()
    }
}

impl SkinReference {
    /// Reads the manifest's `graph` section (size multiple, clip range, inverse matrix, kernels
    /// and pyramid factors) and checks it: the channels are the ones this reference computes,
    /// the inverse matrix inverts `graph.decomposition.matrix`, and every stored kernel equals
    /// the normalised Gaussian of its σ′ within [`KERNEL_TOLERANCE`].
    pub fn from_manifest(manifest: &SkinManifest) -> Result<SkinReference> {
        let bad = |message: String| Error::Model {
            path: PathBuf::from(format!("{}.json", manifest.name)),
            message,
        };
        let names: Vec<&str> = manifest
            .outputs
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        if names != CHANNELS {
            return Err(bad(format!(
                "output channels are {names:?}; the Rust reference computes {CHANNELS:?}"
            )));
        }
        let graph = manifest
            .extra
            .get("graph")
            .ok_or_else(|| bad("no \"graph\" section (kernels and matrix)".into()))?;
        let size_multiple = as_usize(graph, "graph", "size_multiple").map_err(bad)?;
        if size_multiple != manifest.input.size_multiple as usize {
            return Err(bad(format!(
                "graph.size_multiple is {size_multiple} but input.size_multiple is {}",
                manifest.input.size_multiple
            )));
        }
        let min_size = match manifest.input.extra.get("min_size_px") {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad("input.min_size_px must be a whole number".into()))?
                as usize,
            None => 0,
        };

        let dec = field(graph, "graph", "decomposition").map_err(bad)?;
        let clip_min = as_f64(dec, "graph.decomposition", "clip_min").map_err(bad)?;
        let clip_max = as_f64(dec, "graph.decomposition", "clip_max").map_err(bad)?;
        if !(clip_min > 0.0 && clip_min < clip_max) {
            return Err(bad(format!(
                "graph.decomposition clip range [{clip_min}, {clip_max}] must satisfy 0 < min < max"
            )));
        }
        let inverse64 = matrix3(dec, "inverse_matrix").map_err(bad)?;
        let inverse = inverse64.map(|row| row.map(|v| v as f32));
        if dec.get("matrix").is_some() {
            let a = matrix3(dec, "matrix").map_err(bad)?;
            let worst = (0..3)
                .flat_map(|i| (0..3).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let p: f64 = (0..3).map(|k| a[i][k] * f64::from(inverse[k][j])).sum();
                    (p - if i == j { 1.0 } else { 0.0 }).abs()
                })
                .fold(0.0, f64::max);
            if worst > INVERSE_TOLERANCE {
                return Err(bad(format!(
                    "graph.decomposition.inverse_matrix is not the inverse of .matrix \
                     (max |A·A⁻¹ − I| = {worst:.2e}, allowed {INVERSE_TOLERANCE:e})"
                )));
            }
        }

        let pore_weights = pore_weights(dec).map_err(bad)?;

        let filters = field(graph, "graph", "filters").map_err(bad)?;
        let mut parsed = Vec::with_capacity(FILTERS.len());
        for name in FILTERS {
            let s = read_smoothing(filters, name).map_err(bad)?;
            if !size_multiple.is_multiple_of(s.pyramid_factor) {
                return Err(bad(format!(
                    "graph.filters.{name}.pyramid_factor {} does not divide the size multiple \
                     {size_multiple}",
                    s.pyramid_factor
                )));
            }
            parsed.push(s);
        }
        let mut it = parsed.into_iter();
        let mut next = || it.next().expect("one Smoothing per filter name");
        Ok(SkinReference {
            size_multiple,
            min_size,
            clip_min: clip_min as f32,
            clip_max: clip_max as f32,
            inverse,
            pore_weights,
            pore_center: next(),
            pore_surround: next(),
            scar_surround: next(),
            scar_energy: next(),
            chromophore_background: next(),
        })
    }

    /// The decomposition's background smoothing (`graph.filters.chromophore_background`, the
    /// `G(σ) * x` of the excess channels) of a plane of any size: mirrored by the filter's
    /// reach (and up to the pyramid's multiple), smoothed as the graph does, cropped back.
    ///
    /// Why: the metrics' noise-weighted chromophore excess
    /// ([`crate::model::ChromophoreWeighting`]) needs the shading's excess over the same
    /// background the model takes for melanin and hemoglobin.
    pub(crate) fn chromophore_background(&self, x: &Array2<f32>) -> Array2<f32> {
        padded_smooth(x, &self.chromophore_background)
    }

    /// The scar band-pass `G(pore_surround) * x − G(scar_surround) * x` of a plane of any
    /// size, as the graph forms `scar_response` from the shading.
    ///
    /// Why: the metrics' noise-weighted relief ([`crate::relief::Relief`]) adds the melanin
    /// and hemoglobin maps' band-passes to the model's `scar_response`; they must pass the
    /// same filter for the photo's noise in them to cancel.
    pub(crate) fn scar_band(&self, x: &Array2<f32>) -> Array2<f32> {
        padded_smooth(x, &self.pore_surround) - padded_smooth(x, &self.scar_surround)
    }

    /// The pore band-pass `G(pore_center) * x − G(pore_surround) * x` of a plane of any size,
    /// as the graph forms `pore_response` from `u · OD`.
    ///
    /// Why: the metrics' grey pore band ([`crate::pore_band`]) mixes the channels' density
    /// bands with weights of its own; `Σ u_c` times them is the model's band.
    pub(crate) fn pore_band(&self, x: &Array2<f32>) -> Array2<f32> {
        padded_smooth(x, &self.pore_center) - padded_smooth(x, &self.pore_surround)
    }

    /// `√(G(scar_energy) * band²)`: the local RMS of a scar band-pass, as the graph forms
    /// `scar_energy`.
    pub(crate) fn scar_energy(&self, band: &Array2<f32>) -> Array2<f32> {
        padded_smooth(&band.mapv(|v| v * v), &self.scar_energy).mapv(f32::sqrt)
    }

    /// The smoothing steps, in graph order:
    /// pore_center, pore_surround, scar_surround, scar_energy, chromophore_background.
    pub fn filters(&self) -> [&Smoothing; 5] {
        [
            &self.pore_center,
            &self.pore_surround,
            &self.scar_surround,
            &self.scar_energy,
            &self.chromophore_background,
        ]
    }

    /// The melanin/hemoglobin/shading inverse matrix (rows) applied to (OD_R, OD_G, OD_B).
    pub fn inverse_matrix(&self) -> [[f32; 3]; 3] {
        self.inverse
    }

    /// The pore band's channel weights `u` (its shading estimate is `u · OD`).
    pub fn pore_weights(&self) -> [f32; 3] {
        self.pore_weights
    }

    /// Computes the maps `[8, H, W]` (channels as in [`CHANNELS`]) of gamma-encoded sRGB in
    /// [0, 1], exactly as the ONNX graph would for the same input.
    ///
    /// Like the ONNX model, the input must have sides that are multiples of the manifest's
    /// size multiple (32) and at least its minimum size (128); borders are handled by reflect
    /// padding inside each blur. [`crate::model::SkinModel::infer`] is what lifts that
    /// restriction for the pipeline (it mirror-pads and tiles).
    pub fn run(&self, srgb: &Rgb32FImage) -> Result<Array3<f32>> {
        let (w, h) = (srgb.width() as usize, srgb.height() as usize);
        self.check_size(w, h)?;

        // 1–3: EOTF, optical density, decomposition; per pixel, no neighbours.
        let mut mhs = Array3::<f32>::zeros((3, h, w));
        let mut su = Array2::<f32>::zeros((h, w));
        let a = &self.inverse;
        for (i, px) in srgb.as_raw().chunks_exact(3).enumerate() {
            let od = [0, 1, 2].map(|c| {
                let lin = srgb_to_linear(px[c]);
                -(lin.clamp(self.clip_min, self.clip_max)).ln()
            });
            let (y, x) = (i / w, i % w);
            for (o, row) in a.iter().enumerate() {
                // Graph: MatMul(A⁻¹, OD); summed i = 0, 1, 2 as in the Python reference.
                let mut acc = 0.0f32;
                for (ai, odi) in row.iter().zip(od) {
                    acc += ai * odi;
                }
                mhs[[o, y, x]] = acc;
            }
            // Graph: the fourth MatMul row, the pore band's u · OD.
            let mut acc = 0.0f32;
            for (ui, odi) in self.pore_weights.iter().zip(od) {
                acc += ui * odi;
            }
            su[[y, x]] = acc;
        }
        let mel = mhs.index_axis(Axis(0), 0).to_owned();
        let hb = mhs.index_axis(Axis(0), 1).to_owned();
        let s = mhs.index_axis(Axis(0), 2).to_owned();

        // 4–5: band-passes of shading, local energy, excess over background.
        let s_pore = smooth(&su, &self.pore_center);
        let su_mid = smooth(&su, &self.pore_surround);
        let s_mid = smooth(&s, &self.pore_surround);
        let s_wide = smooth(&s, &self.scar_surround);
        let pore = &s_pore - &su_mid;
        let scar = &s_mid - &s_wide;
        let energy = smooth(&scar.mapv(|v| v * v), &self.scar_energy).mapv(f32::sqrt);
        let mel_excess = &mel - &smooth(&mel, &self.chromophore_background);
        let hb_excess = &hb - &smooth(&hb, &self.chromophore_background);

        let mut out = Array3::<f32>::zeros((CHANNELS.len(), h, w));
        for (c, plane) in [
            &mel,
            &hb,
            &s,
            &pore,
            &scar,
            &mel_excess,
            &hb_excess,
            &energy,
        ]
        .into_iter()
        .enumerate()
        {
            out.index_axis_mut(Axis(0), c).assign(plane);
        }
        Ok(out)
    }

    fn check_size(&self, w: usize, h: usize) -> Result<()> {
        let invalid = |message: String| Error::InvalidSetting {
            name: "reference input size",
            message,
        };
        let m = self.size_multiple;
        if !w.is_multiple_of(m) || !h.is_multiple_of(m) || w < self.min_size || h < self.min_size {
            return Err(invalid(format!(
                "{w}×{h}: sides must be multiples of {m} and at least {} (the model's own \
                 contract; pad the image first, as SkinModel::infer does)",
                self.min_size
            )));
        }
        for f in self.filters() {
            let (lw, lh) = (w / f.pyramid_factor, h / f.pyramid_factor);
            if f.radius() >= lw.min(lh) {
                return Err(invalid(format!(
                    "{w}×{h}: filter {} pads its 1/{} level ({lw}×{lh}) by {}, which reflect \
                     padding cannot do; the input is too small",
                    f.name,
                    f.pyramid_factor,
                    f.radius()
                )));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest reading
// ---------------------------------------------------------------------------------------------

fn field<'a>(v: &'a Value, at: &str, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("{at}.{key} is missing"))
}

fn as_f64(v: &Value, at: &str, key: &str) -> Result<f64, String> {
    field(v, at, key)?
        .as_f64()
        .ok_or_else(|| format!("{at}.{key} must be a number"))
}

fn as_usize(v: &Value, at: &str, key: &str) -> Result<usize, String> {
    field(v, at, key)?
        .as_u64()
        .filter(|&n| n >= 1)
        .map(|n| n as usize)
        .ok_or_else(|| format!("{at}.{key} must be a positive whole number"))
}

fn matrix3(dec: &Value, key: &str) -> Result<[[f64; 3]; 3], String> {
    let expected = || format!("graph.decomposition.{key} must be a 3×3 array of numbers");
    let rows = field(dec, "graph.decomposition", key)?
        .as_array()
        .filter(|r| r.len() == 3)
        .ok_or_else(expected)?;
    let mut m = [[0.0; 3]; 3];
    for (i, row) in rows.iter().enumerate() {
        let row = row
            .as_array()
            .filter(|r| r.len() == 3)
            .ok_or_else(expected)?;
        for (j, v) in row.iter().enumerate() {
            m[i][j] = v.as_f64().ok_or_else(expected)?;
        }
    }
    Ok(m)
}

/// Reads `graph.decomposition.pore_weights`: three finite weights summing to 1 (a shading
/// change must pass with gain 1, and exposure or white balance must cancel in the band-pass).
fn pore_weights(dec: &Value) -> Result<[f32; 3], String> {
    let expected = || "graph.decomposition.pore_weights must be 3 numbers".to_string();
    let values = field(dec, "graph.decomposition", "pore_weights")?
        .as_array()
        .filter(|v| v.len() == 3)
        .ok_or_else(expected)?;
    let mut u = [0f32; 3];
    for (ui, v) in u.iter_mut().zip(values) {
        *ui = v.as_f64().filter(|x| x.is_finite()).ok_or_else(expected)? as f32;
    }
    let sum: f64 = u.iter().map(|&x| f64::from(x)).sum();
    if (sum - 1.0).abs() > 1e-5 {
        return Err(format!(
            "graph.decomposition.pore_weights {u:?} sum to {sum}, not 1: the pore band would \
             scale shading and keep exposure changes"
        ));
    }
    Ok(u)
}

/// Reads `graph.filters.<name>` and checks its stored weights against the Gaussian formula.
fn read_smoothing(filters: &Value, name: &str) -> Result<Smoothing, String> {
    let at = format!("graph.filters.{name}");
    let filt = field(filters, "graph.filters", name)?;
    let sigma_px = as_f64(filt, &at, "sigma_px")?;
    let f = as_usize(filt, &at, "pyramid_factor")?;
    let sigma_low = pyramid_sigma(sigma_px, f);
    if !(sigma_low.is_finite() && sigma_low > 0.0) {
        return Err(format!(
            "{at}: σ = {sigma_px} px is too small for pyramid factor {f} (σ′² = σ²/f² − 1/4 ≤ 0)"
        ));
    }
    let weights: Vec<f32> = field(filt, &at, "weights")?
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect())
        .ok_or_else(|| format!("{at}.weights must be an array of numbers"))?;
    let expected = gaussian_kernel(sigma_low);
    let r = gaussian_radius(sigma_low);
    if weights.len() != expected.len() {
        return Err(format!(
            "{at}.weights has {} taps, but σ′ = {sigma_low:.6} (σ = {sigma_px} px, f = {f}) needs \
             2·⌈3σ′⌉ + 1 = {}",
            weights.len(),
            expected.len()
        ));
    }
    for (k, (&got, want)) in weights.iter().zip(&expected).enumerate() {
        if (f64::from(got) - want).abs() > KERNEL_TOLERANCE {
            return Err(format!(
                "{at}.weights[{k}] is {got}, but the normalised Gaussian of σ′ = {sigma_low:.6} \
                 (σ = {sigma_px} px, f = {f}) has {want:.9} there (tolerance \
                 {KERNEL_TOLERANCE:e}): the manifest's kernels do not match its σ; rebuild it with \
                 models/build_skin_model.py"
            ));
        }
    }
    // Descriptive fields, when present, must agree with what the weights encode.
    if let Some(v) = filt.get("kernel_sigma_px") {
        let stored = v
            .as_f64()
            .ok_or_else(|| format!("{at}.kernel_sigma_px must be a number"))?;
        if (stored - sigma_low).abs() > KERNEL_TOLERANCE {
            return Err(format!(
                "{at}.kernel_sigma_px is {stored}, but √(σ²/f² − 1/4) = {sigma_low:.6}"
            ));
        }
    }
    for (key, want) in [("radius", r), ("taps", 2 * r + 1)] {
        if let Some(v) = filt.get(key)
            && v.as_u64() != Some(want as u64)
        {
            return Err(format!("{at}.{key} is {v}, but the kernel needs {want}"));
        }
    }
    Ok(Smoothing {
        name: name.to_string(),
        sigma_px,
        pyramid_factor: f,
        weights,
    })
}

// ---------------------------------------------------------------------------------------------
// Operators, one per ONNX op (or small fixed group), f32, in the Python reference's order
// ---------------------------------------------------------------------------------------------

/// IEC 61966-2-1 EOTF, as the graph computes it: Where(x ≤ 0.04045, x/12.92,
/// Pow((x + 0.055)/1.055, 2.4)).
fn srgb_to_linear(x: f32) -> f32 {
    if x <= 0.04045 {
        x / 12.92
    } else {
        ((x + 0.055) / 1.055).powf(2.4)
    }
}

/// Reflect index (edge not repeated) for an overhang shorter than `n`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let j = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    debug_assert!((0..n).contains(&j), "reflect pad longer than the plane");
    j as usize
}

/// Pad(reflect, r) → Conv [1, K] (valid) → Conv [K, 1] (valid): output has the input's size.
///
/// Rows are filtered first (reflecting along W), then columns read filtered rows at reflected
/// indices; since reflection along H commutes with filtering along W this is the padded
/// computation without materialising the padded plane. Each output accumulates
/// `0 + w₀x₀ + w₁x₁ + …` in tap order.
fn gaussian_blur(x: &Array2<f32>, k: &[f32]) -> Array2<f32> {
    let (h, w) = x.dim();
    let r = (k.len() - 1) / 2;
    let x = x.as_standard_layout();
    let src = x.as_slice().expect("standard layout");

    let mut rows = vec![0.0f32; h * w];
    let mut padded = vec![0.0f32; w + 2 * r];
    for (row, out) in src.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[reflect(i as isize - r as isize, w)];
        }
        for (t, &kt) in k.iter().enumerate() {
            for (o, &v) in out.iter_mut().zip(&padded[t..t + w]) {
                *o += kt * v;
            }
        }
    }

    let mut out = vec![0.0f32; h * w];
    for (y, o) in out.chunks_exact_mut(w).enumerate() {
        for (t, &kt) in k.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r as isize, h);
            for (a, &v) in o.iter_mut().zip(&rows[sy * w..(sy + 1) * w]) {
                *a += kt * v;
            }
        }
    }
    Array2::from_shape_vec((h, w), out).expect("h·w values")
}

/// AveragePool f×f, stride f, no padding: the f² samples summed in row-major order (dy outer,
/// dx inner) in f32, then divided by f².
fn avg_pool(x: &Array2<f32>, f: usize) -> Array2<f32> {
    let (h, w) = x.dim();
    let (lh, lw) = (h / f, w / f);
    let mut acc = Array2::<f32>::zeros((lh, lw));
    for dy in 0..f {
        for dx in 0..f {
            for ((y, xx), a) in acc.indexed_iter_mut() {
                *a += x[[y * f + dy, xx * f + dx]];
            }
        }
    }
    let n = (f * f) as f32;
    acc.mapv_into(|v| v / n)
}

/// Source taps of half-pixel linear up-sampling by f: `src = (x + 0.5)/f − 0.5` clamped to
/// [0, n−1]; `(i0, i1 = min(i0+1, n−1), t = src − i0)`.
fn linear_taps(n: usize, f: usize) -> Vec<(usize, usize, f32)> {
    let (ff, last) = (f as f32, (n - 1) as f32);
    (0..n * f)
        .map(|x| {
            let src = ((x as f32 + 0.5) / ff - 0.5).clamp(0.0, last);
            let i0 = src.floor();
            let t = src - i0;
            let i0 = i0 as usize;
            (i0, (i0 + 1).min(n - 1), t)
        })
        .collect()
}

/// ONNX Resize (linear, half_pixel, scales f×f) as onnxruntime computes it: bilinear with
/// edge clamping, `(1−ty)(1−tx)·a + (1−ty)tx·b + ty(1−tx)·c + ty·tx·d` left to right.
fn resize_linear_half_pixel(x: &Array2<f32>, f: usize) -> Array2<f32> {
    let (h, w) = x.dim();
    let ys = linear_taps(h, f);
    let xs = linear_taps(w, f);
    let mut out = Array2::<f32>::zeros((h * f, w * f));
    for (mut row, &(y0, y1, ty)) in out.rows_mut().into_iter().zip(&ys) {
        for (o, &(x0, x1, tx)) in row.iter_mut().zip(&xs) {
            let (a, b) = (x[[y0, x0]], x[[y0, x1]]);
            let (c, d) = (x[[y1, x0]], x[[y1, x1]]);
            *o = ((1.0 - ty) * (1.0 - tx)) * a
                + ((1.0 - ty) * tx) * b
                + (ty * (1.0 - tx)) * c
                + (ty * tx) * d;
        }
    }
    out
}

/// `G * x` of a plane of any size: mirrored by the filter's reach (and up to the pyramid's
/// multiple), smoothed as the graph does, cropped back. The graph itself sees the photo's crop
/// mirror-padded the same way ([`crate::model::SkinModel::infer`]).
fn padded_smooth(x: &Array2<f32>, filt: &Smoothing) -> Array2<f32> {
    let f = filt.pyramid_factor.max(1);
    let margin = (3.0 * filt.sigma_px).ceil() as usize;
    let margin = margin.div_ceil(f) * f;
    let (h, w) = x.dim();
    let (ph, pw) = (
        (h + 2 * margin).div_ceil(f) * f,
        (w + 2 * margin).div_ceil(f) * f,
    );
    let at = |i: usize, n: usize| crate::model::mirror_index(i as i64 - margin as i64, n);
    let padded = Array2::from_shape_fn((ph, pw), |(y, xx)| x[[at(y, h), at(xx, w)]]);
    smooth(&padded, filt)
        .slice(ndarray::s![margin..margin + h, margin..margin + w])
        .to_owned()
}

/// Gaussian of nominal σ: direct blur (f = 1) or pool → blur → resize (f > 1).
fn smooth(x: &Array2<f32>, filt: &Smoothing) -> Array2<f32> {
    let f = filt.pyramid_factor;
    if f == 1 {
        return gaussian_blur(x, &filt.weights);
    }
    let low = gaussian_blur(&avg_pool(x, f), &filt.weights);
    resize_linear_half_pixel(&low, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> SkinManifest {
        SkinManifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/skin-v1.json"))
            .unwrap()
    }

    fn weights_mut<'a>(m: &'a mut SkinManifest, name: &str) -> &'a mut Vec<Value> {
        m.extra
            .get_mut("graph")
            .and_then(|g| g.pointer_mut(&format!("/filters/{name}/weights")))
            .and_then(Value::as_array_mut)
            .unwrap()
    }

    #[test]
    fn manifest_kernels_are_the_gaussians_they_claim() {
        let r = SkinReference::from_manifest(&manifest()).unwrap();
        let radii: Vec<(usize, usize)> = r
            .filters()
            .iter()
            .map(|f| (f.pyramid_factor, f.radius()))
            .collect();
        assert_eq!(radii, vec![(1, 3), (1, 12), (4, 15), (4, 6), (8, 12)]);
        for f in r.filters() {
            let sum: f32 = f.weights.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "{}: sum {sum}", f.name);
        }
    }

    #[test]
    fn corrupted_kernel_is_refused() {
        let mut m = manifest();
        let w = weights_mut(&mut m, "scar_surround");
        let v = w[15].as_f64().unwrap();
        w[15] = Value::from(v + 5e-6);
        let err = SkinReference::from_manifest(&m).unwrap_err().to_string();
        assert!(err.contains("scar_surround.weights[15]"), "{err}");

        let mut m = manifest();
        weights_mut(&mut m, "pore_center").pop();
        let err = SkinReference::from_manifest(&m).unwrap_err().to_string();
        assert!(err.contains("taps"), "{err}");

        // σ edited without regenerating the weights.
        let mut m = manifest();
        *m.extra
            .get_mut("graph")
            .and_then(|g| g.pointer_mut("/filters/chromophore_background/sigma_px"))
            .unwrap() = Value::from(30.0);
        assert!(SkinReference::from_manifest(&m).is_err());
    }

    #[test]
    fn corrupted_inverse_matrix_is_refused() {
        let mut m = manifest();
        let cell = m
            .extra
            .get_mut("graph")
            .and_then(|g| g.pointer_mut("/decomposition/inverse_matrix/1/0"))
            .unwrap();
        *cell = Value::from(cell.as_f64().unwrap() + 1e-3);
        let err = SkinReference::from_manifest(&m).unwrap_err().to_string();
        assert!(err.contains("inverse"), "{err}");
    }

    #[test]
    fn reflect_does_not_repeat_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn pool_and_resize_match_hand_computation() {
        let x = Array2::from_shape_fn((4, 4), |(y, x)| (4 * y + x) as f32);
        let p = avg_pool(&x, 2);
        assert_eq!(p, ndarray::array![[2.5, 4.5], [10.5, 12.5]]);
        // half_pixel ×2 of [0, 1]: src = -0.25→0, 0.25, 0.75, 1.25→1.
        let r = resize_linear_half_pixel(&ndarray::array![[0.0f32, 1.0]], 2);
        assert_eq!(
            r,
            ndarray::array![[0.0, 0.25, 0.75, 1.0], [0.0, 0.25, 0.75, 1.0]]
        );
    }

    #[test]
    fn blur_keeps_a_constant_and_mirrors_at_the_edge() {
        let k = [0.25f32, 0.5, 0.25];
        let c = Array2::from_elem((5, 6), 0.3f32);
        let b = gaussian_blur(&c, &k);
        assert!(b.iter().all(|&v| (v - 0.3).abs() < 1e-7));
        // Row [1, 0, 0, 0]: reflect pad gives [0, 1, 0, 0, 0, 0] → first output 0.5, second 0.25.
        let mut x = Array2::<f32>::zeros((3, 4));
        x.column_mut(0).fill(1.0);
        let b = gaussian_blur(&x, &k);
        assert_eq!(b.row(1).to_vec(), vec![0.5, 0.25, 0.0, 0.0]);
    }

    /// The manifest's `disk_center_gain` table (made by the Python reference) is reproduced:
    /// a dark disk of OD depth 0.1 in shading (pore/scar) or along the melanin vector.
    #[test]
    fn manifest_disk_center_gains_are_reproduced() {
        let m = manifest();
        let r = SkinReference::from_manifest(&m).unwrap();
        let a = matrix3(&m.extra["graph"]["decomposition"], "matrix").unwrap();
        let rows = m.extra["disk_center_gain"]["rows"].as_array().unwrap();
        let (size, amp, base) = (256u32, 0.1, [0.9f64, 1.1, 1.4]);
        let encode = |lin: f64| {
            let lin = lin.clamp(0.0, 1.0);
            if lin <= 0.003_130_8 {
                lin * 12.92
            } else {
                1.055 * lin.powf(1.0 / 2.4) - 0.055
            }
        };
        for row in rows {
            let r_px = row["diameter_mm"].as_f64().unwrap() * m.input.working_px_per_mm / 2.0;
            let melanin_dir = [a[0][0], a[1][0], a[2][0]];
            for (dir, channels) in [
                ([1.0; 3], &["pore_response", "scar_response"][..]),
                (melanin_dir, &["melanin_excess"][..]),
            ] {
                let img = Rgb32FImage::from_fn(size, size, |x, y| {
                    let c = f64::from(size / 2);
                    let inside = (f64::from(y) - c).hypot(f64::from(x) - c) <= r_px;
                    let d = if inside { amp } else { 0.0 };
                    image::Rgb([0, 1, 2].map(|i| encode((-(base[i] + d * dir[i])).exp()) as f32))
                });
                let maps = r.run(&img).unwrap();
                for name in channels {
                    let c = CHANNELS.iter().position(|n| n == name).unwrap();
                    let got = f64::from(maps[[c, 128, 128]]) / amp;
                    let want = row[*name].as_f64().unwrap();
                    assert!(
                        (got - want).abs() < 6e-4,
                        "{name} at {row}: reference {got:.4}, manifest {want}"
                    );
                }
            }
        }
    }

    /// The model's pore band is `Σ u_c` times the channels' density bands: what lets the
    /// metrics' grey pore band ([`crate::pore_band`]) mix them with weights of its own.
    #[test]
    fn the_pore_band_is_the_weighted_sum_of_the_channel_density_bands() {
        let r = SkinReference::from_manifest(&manifest()).unwrap();
        let (w, h) = (128u32, 160u32);
        // Pigment-like mottle, a few grey dots and a colour gradient, reaching the borders.
        let img = Rgb32FImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32, y as f32);
            let mottle = 0.05 * ((fx * 0.37).sin() * (fy * 0.23).cos());
            let dot = if (x % 17 == 3) && (y % 13 == 5) {
                0.25
            } else {
                0.0
            };
            image::Rgb([
                0.75 - 0.4 * mottle - dot + 0.001 * fx,
                0.55 - 0.8 * mottle - dot,
                0.45 - 1.2 * mottle - dot + 0.0005 * fy,
            ])
        });
        let maps = r.run(&img).unwrap();
        let model = maps.index_axis(Axis(0), 3);
        let bands: Vec<Array2<f32>> = (0..3)
            .map(|c| {
                let od = Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
                    crate::model::optical_density(img.get_pixel(x as u32, y as u32).0[c])
                });
                r.pore_band(&od)
            })
            .collect();
        let u = r.pore_weights();
        let mut worst = 0.0f32;
        let mut spread = 0.0f32;
        for ((y, x), &m) in model.indexed_iter() {
            let sum: f32 = (0..3).map(|c| u[c] * bands[c][[y, x]]).sum();
            worst = worst.max((sum - m).abs());
            spread = spread.max(m.abs());
        }
        assert!(
            spread > 0.05,
            "the test image has no pore-scale contrast: {spread}"
        );
        assert!(worst < 1e-4 * spread.max(1.0), "worst {worst} of {spread}");
    }

    #[test]
    fn uniform_skin_has_no_contrast_and_sizes_are_checked() {
        let r = SkinReference::from_manifest(&manifest()).unwrap();
        let img = Rgb32FImage::from_pixel(128, 160, image::Rgb([0.8, 0.6, 0.5]));
        let maps = r.run(&img).unwrap();
        assert_eq!(maps.dim(), (8, 160, 128));
        for (name, plane) in CHANNELS.iter().zip(maps.outer_iter()).skip(3) {
            let worst = plane.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            assert!(worst < 1e-5, "{name}: {worst}");
        }
        assert!(r.run(&Rgb32FImage::new(96, 128)).is_err());
        assert!(r.run(&Rgb32FImage::new(130, 128)).is_err());
    }
}

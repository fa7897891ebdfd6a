//! What a phantom should contain: [`PhantomSpec`] and its parts, with defaults and validation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything that defines one phantom. Same spec (including `seed`) → the same image, truth and
/// masks, byte for byte.
///
/// Deserializes from partial JSON (missing fields take their defaults) and refuses unknown keys,
/// so a typo in a hand-written spec is an error rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhantomSpec {
    /// Width of the imaged skin in millimetres. Default: 50.
    pub width_mm: f64,
    /// Height of the imaged skin in millimetres. Default: 50.
    pub height_mm: f64,
    /// Sampling density in pixels per millimetre (the scale the analysis is told). Default: 10,
    /// i.e. 0.1 mm pixels, enough to resolve the smallest default pore (0.15 mm) as a ~2 px dot.
    pub px_per_mm: f64,
    /// Seed of every random choice (placements, sizes, texture, noise). Default: 0.
    pub seed: u64,
    /// The skin's constitutive color. Default: the `light` preset.
    pub tone: BaseTone,
    /// Mild natural variation of the background. Default: see [`TextureSpec`].
    pub texture: TextureSpec,
    /// The directional light that turns scar relief into shading. Default: see
    /// [`LightingSpec`].
    pub lighting: LightingSpec,
    /// Enlarged pores. Default: see [`PoreSpec`].
    pub pores: PoreSpec,
    /// Pigmented macules (lentigines, melasma-like spots, post-inflammatory
    /// hyperpigmentation). Default: see [`PigmentSpec`].
    pub pigment: PigmentSpec,
    /// Atrophic (acne) scars. Default: see [`ScarSpec`].
    pub scars: ScarSpec,
    /// Erythema (redness) patches. Default: see [`ErythemaSpec`].
    pub erythema: ErythemaSpec,
    /// No feature's extent comes closer than this to the image border, in mm, so border
    /// handling in the analysis cannot touch a feature. Default: 3 (the minimum allowed).
    pub margin_mm: f64,
    /// Minimum clearance in mm between the extents of any two features (extent = where the
    /// feature's effect has fallen below 0.1% of its peak), so every feature is measured
    /// alone. Default: 0.5.
    pub gap_mm: f64,
    /// Capture nuisances applied after the clean image is formed. Default: none.
    pub nuisances: NuisanceSpec,
    /// Oxy-hemoglobin's direction in the camera's optical-density space (R, G, B); rendered
    /// at unit length. Default: [`crate::phantom::SIGMA_HEMOGLOBIN`], the direction the skin
    /// model assumes. Another direction stands for a camera or skin whose colours differ from
    /// the model's: the analysis must then cope with erythema that its fixed decomposition
    /// does not fully separate from shading. Allowed: non-negative, not all zero.
    pub hemoglobin_direction: [f64; 3],
}

impl Default for PhantomSpec {
    fn default() -> Self {
        PhantomSpec {
            width_mm: 50.0,
            height_mm: 50.0,
            px_per_mm: 10.0,
            seed: 0,
            tone: BaseTone::Preset(TonePreset::Light),
            texture: TextureSpec::default(),
            lighting: LightingSpec::default(),
            pores: PoreSpec::default(),
            pigment: PigmentSpec::default(),
            scars: ScarSpec::default(),
            erythema: ErythemaSpec::default(),
            margin_mm: 3.0,
            gap_mm: 0.5,
            nuisances: NuisanceSpec::default(),
            hemoglobin_direction: crate::phantom::SIGMA_HEMOGLOBIN,
        }
    }
}

impl PhantomSpec {
    /// The default phantom with the given tone preset.
    pub fn with_tone(preset: TonePreset) -> PhantomSpec {
        PhantomSpec {
            tone: BaseTone::Preset(preset),
            ..PhantomSpec::default()
        }
    }

    /// This spec with every feature count set to zero (background, texture and nuisances
    /// only): the false-positive control.
    pub fn without_features(mut self) -> PhantomSpec {
        self.pores.count = 0;
        self.pigment.count = 0;
        self.scars.icepick.count = 0;
        self.scars.boxcar.count = 0;
        self.scars.rolling.count = 0;
        self.erythema.count = 0;
        self
    }

    /// This spec sampled at `px_per_mm`, with the lower end of every feature's size range
    /// raised to what that sampling can draw (the validated minima: 1.5 px for pores, 2 px for
    /// the rest), so the default ranges also render at coarse sampling.
    pub fn at_px_per_mm(mut self, px_per_mm: f64) -> PhantomSpec {
        self.px_per_mm = px_per_mm;
        let raise = |d: &mut [f64; 2], min_px: f64| {
            d[0] = d[0].max(min_px / px_per_mm);
            d[1] = d[1].max(d[0]);
        };
        raise(&mut self.pores.diameter_mm, 1.5);
        raise(&mut self.pigment.diameter_mm, 2.0);
        raise(&mut self.scars.icepick.diameter_mm, 2.0);
        raise(&mut self.scars.boxcar.diameter_mm, 2.0);
        raise(&mut self.scars.rolling.diameter_mm, 2.0);
        raise(&mut self.erythema.diameter_mm, 2.0);
        self
    }

    /// [`PhantomSpec::hemoglobin_direction`] at unit length.
    pub fn hemoglobin_unit(&self) -> [f64; 3] {
        let d = self.hemoglobin_direction;
        if d == crate::phantom::SIGMA_HEMOGLOBIN {
            // Unit length to its six decimals already; renormalising would move every default
            // phantom by a rounding error.
            return d;
        }
        let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
        d.map(|v| v / norm)
    }

    /// Image width in pixels: `round(width_mm · px_per_mm)`.
    pub fn width_px(&self) -> u32 {
        (self.width_mm * self.px_per_mm).round() as u32
    }

    /// Image height in pixels: `round(height_mm · px_per_mm)`.
    pub fn height_px(&self) -> u32 {
        (self.height_mm * self.px_per_mm).round() as u32
    }

    /// Checks every field against its allowed range; the error names the field and the range.
    pub fn validate(&self) -> Result<()> {
        finite_in("px_per_mm", self.px_per_mm, 2.0, 200.0)?;
        finite_in("margin_mm", self.margin_mm, 3.0, 1e4)?;
        finite_in("gap_mm", self.gap_mm, 0.0, 1e4)?;
        let min_side = 2.0 * self.margin_mm + 1.0;
        finite_in("width_mm", self.width_mm, min_side, 1e5)?;
        finite_in("height_mm", self.height_mm, min_side, 1e5)?;
        let pixels = u64::from(self.width_px()) * u64::from(self.height_px());
        if pixels > MAX_PIXELS {
            return Err(invalid(
                "width_mm",
                format!(
                    "{}×{} px = {pixels} pixels; at most {MAX_PIXELS} are rendered \
                     (reduce the size or px_per_mm)",
                    self.width_px(),
                    self.height_px()
                ),
            ));
        }
        match self.tone {
            BaseTone::Preset(_) => {}
            BaseTone::Custom {
                melanin,
                hemoglobin,
            } => {
                finite_in("tone.custom.melanin", melanin, 0.0, 10.0)?;
                finite_in("tone.custom.hemoglobin", hemoglobin, 0.0, 5.0)?;
            }
        }
        for v in self.hemoglobin_direction {
            finite_in("hemoglobin_direction", v, 0.0, 1e3)?;
        }
        if self.hemoglobin_direction.iter().all(|&v| v == 0.0) {
            return Err(invalid(
                "hemoglobin_direction",
                "must not be all zero".to_string(),
            ));
        }
        self.texture.validate()?;
        self.lighting.validate()?;
        let p = &self.pores;
        check_count("pores.count", p.count)?;
        // 1.5 px: a disk that wide always contains at least one pixel centre.
        range_in(
            "pores.diameter_mm",
            p.diameter_mm,
            1.5 / self.px_per_mm,
            5.0,
        )?;
        range_in("pores.contrast", p.contrast, 0.0, 0.95)?;
        let g = &self.pigment;
        check_count("pigment.count", g.count)?;
        range_in(
            "pigment.diameter_mm",
            g.diameter_mm,
            2.0 / self.px_per_mm,
            100.0,
        )?;
        range_in("pigment.melanin_excess", g.melanin_excess, 0.0, 5.0)?;
        finite_in(
            "pigment.irregularity",
            g.irregularity,
            0.0,
            MAX_IRREGULARITY,
        )?;
        for (kind, s) in [
            (ScarKind::Icepick, &self.scars.icepick),
            (ScarKind::Boxcar, &self.scars.boxcar),
            (ScarKind::Rolling, &self.scars.rolling),
        ] {
            let [count, diameter, depth] = match kind {
                ScarKind::Icepick => [
                    "scars.icepick.count",
                    "scars.icepick.diameter_mm",
                    "scars.icepick.depth_mm",
                ],
                ScarKind::Boxcar => [
                    "scars.boxcar.count",
                    "scars.boxcar.diameter_mm",
                    "scars.boxcar.depth_mm",
                ],
                ScarKind::Rolling => [
                    "scars.rolling.count",
                    "scars.rolling.diameter_mm",
                    "scars.rolling.depth_mm",
                ],
            };
            check_count(count, s.count)?;
            range_in(diameter, s.diameter_mm, 2.0 / self.px_per_mm, 50.0)?;
            range_in(depth, s.depth_mm, 0.0, 5.0)?;
        }
        let e = &self.erythema;
        check_count("erythema.count", e.count)?;
        range_in(
            "erythema.diameter_mm",
            e.diameter_mm,
            2.0 / self.px_per_mm,
            200.0,
        )?;
        range_in("erythema.hemoglobin_excess", e.hemoglobin_excess, 0.0, 5.0)?;
        finite_in(
            "erythema.irregularity",
            e.irregularity,
            0.0,
            MAX_IRREGULARITY,
        )?;
        self.nuisances.validate()
    }
}

/// Largest rendered image, in pixels (e.g. 100 × 100 mm at 50 px/mm); rendering holds about
/// 80 bytes per pixel, so this caps memory near 2 GB.
const MAX_PIXELS: u64 = 25_000_000;

/// Largest feature count per kind.
const MAX_COUNT: u32 = 100_000;

/// Largest boundary irregularity (keeps the perturbed radius positive: see
/// [`PigmentSpec::irregularity`]).
pub(crate) const MAX_IRREGULARITY: f64 = 0.3;

fn invalid(name: &'static str, message: String) -> Error {
    Error::InvalidSetting { name, message }
}

fn finite_in(name: &'static str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("{v} is outside the allowed range [{lo}, {hi}]"),
        ))
    }
}

/// A `[min, max]` range: both ends finite, `lo_bound < min ≤ max ≤ hi_bound` (a `min` of 0 is
/// allowed only when `lo_bound` is 0 and means "none").
fn range_in(name: &'static str, [a, b]: [f64; 2], lo: f64, hi: f64) -> Result<()> {
    let ok = a.is_finite() && b.is_finite() && a <= b && a >= lo && b <= hi && b > 0.0;
    if ok {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("[{a}, {b}] must be a range [min, max] with {lo} ≤ min ≤ max ≤ {hi}"),
        ))
    }
}

fn check_count(name: &'static str, n: u32) -> Result<()> {
    if n <= MAX_COUNT {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("{n} exceeds the maximum of {MAX_COUNT}"),
        ))
    }
}

/// The constitutive skin color, as chromophore densities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BaseTone {
    /// One of the six ITA° categories (JSON: `{"preset": "light"}`).
    Preset(TonePreset),
    /// Explicit densities (JSON: `{"custom": {"melanin": 1.0, "hemoglobin": 0.45}}`).
    Custom {
        /// Melanin density `m0` (optical density along σ_mel). Allowed: 0–10.
        melanin: f64,
        /// Hemoglobin density `h0` (optical density along σ_hb). Allowed: 0–5.
        hemoglobin: f64,
    },
}

impl BaseTone {
    /// `(melanin, hemoglobin)` densities of this tone.
    pub fn densities(&self) -> (f64, f64) {
        match *self {
            BaseTone::Preset(p) => p.densities(),
            BaseTone::Custom {
                melanin,
                hemoglobin,
            } => (melanin, hemoglobin),
        }
    }
}

/// Skin-tone presets, one per ITA° category of Del Bino et al. (Br. J. Dermatol. 155, 2006).
///
/// Each preset's melanin was solved by bisection, with hemoglobin set per preset and rising
/// slightly with tone (so a* rises with tone, as in Del Bino's colorimetric survey), to put the
/// rendered flat base color in the middle of its category; the resulting ITA° values, computed
/// by this module from the flat color ([`crate::phantom::tone_truth`]), are:
///
/// | preset | melanin | hemoglobin | sRGB (8-bit) | L* | b* | ITA° |
/// |---|---|---|---|---|---|---|
/// | `very_light` | 0.59 | 0.35 | (209, 179, 162) | 75.2 | 12.8 | 63.2 |
/// | `light` | 0.95 | 0.45 | (197, 160, 138) | 68.7 | 16.7 | 48.2 |
/// | `intermediate` | 1.30 | 0.50 | (186, 145, 119) | 63.5 | 19.7 | 34.4 |
/// | `tan` | 1.73 | 0.55 | (174, 129, 100) | 57.8 | 22.6 | 19.0 |
/// | `brown` | 2.92 | 0.60 | (144, 96, 62) | 45.2 | 27.3 | −10.1 |
/// | `dark` | 5.40 | 0.65 | (97, 50, 19) | 26.4 | 28.2 | −40.0 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TonePreset {
    /// ITA° > 55 (target 63).
    VeryLight,
    /// 41 < ITA° ≤ 55 (target 48).
    Light,
    /// 28 < ITA° ≤ 41 (target 34.5).
    Intermediate,
    /// 10 < ITA° ≤ 28 (target 19).
    Tan,
    /// −30 < ITA° ≤ 10 (target −10).
    Brown,
    /// ITA° ≤ −30 (target −40).
    Dark,
}

impl TonePreset {
    /// All presets, lightest first.
    pub const ALL: [TonePreset; 6] = [
        TonePreset::VeryLight,
        TonePreset::Light,
        TonePreset::Intermediate,
        TonePreset::Tan,
        TonePreset::Brown,
        TonePreset::Dark,
    ];

    /// `(melanin, hemoglobin)` densities (see the table on [`TonePreset`]).
    pub fn densities(self) -> (f64, f64) {
        match self {
            TonePreset::VeryLight => (0.59, 0.35),
            TonePreset::Light => (0.95, 0.45),
            TonePreset::Intermediate => (1.30, 0.50),
            TonePreset::Tan => (1.73, 0.55),
            TonePreset::Brown => (2.92, 0.60),
            TonePreset::Dark => (5.40, 0.65),
        }
    }

    /// The snake_case name used in JSON, file names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TonePreset::VeryLight => "very_light",
            TonePreset::Light => "light",
            TonePreset::Intermediate => "intermediate",
            TonePreset::Tan => "tan",
            TonePreset::Brown => "brown",
            TonePreset::Dark => "dark",
        }
    }
}

impl fmt::Display for TonePreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TonePreset {
    type Err = Error;

    /// Parses a preset name; `-` is accepted for `_` (`very-light`).
    fn from_str(s: &str) -> Result<TonePreset> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        TonePreset::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| {
                invalid(
                    "tone",
                    format!(
                        "unknown tone {s:?}; expected one of {}",
                        TonePreset::ALL.map(TonePreset::name).join(", ")
                    ),
                )
            })
    }
}

/// Mild natural background variation: three independent band-limited noise fields (cubic
/// B-spline value noise, two octaves at `scale_mm` and `scale_mm`/2.5, amplitude ratio 1 : 0.5),
/// each normalized over the image to zero mean and the given standard deviation.
///
/// Why: a perfectly flat background flatters an analysis; real skin is mottled. The amplitudes
/// are kept an order of magnitude below the weakest feature (the default melanin std 0.02 is
/// 1/20 of the smallest default macule excess; shading std 1% is 1/20 of the weakest default pore
/// contrast) and the spatial scale (several mm, smooth) is far from pore size, so the texture by
/// itself must not produce detections. Its zero mean keeps the image-mean chromophore
/// densities equal to the base tone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextureSpec {
    /// Standard deviation of the melanin density field. Default: 0.02. Allowed: 0–0.5 (a tenth
    /// of the dark preset's melanin: real mottle grows with the melanin).
    pub melanin_std: f64,
    /// Standard deviation of the hemoglobin density field. Default: 0.015. Allowed: 0–0.2.
    pub hemoglobin_std: f64,
    /// Standard deviation of the relative shading field (0.01 = ±1%). Default: 0.01.
    /// Allowed: 0–0.1.
    pub shading_std: f64,
    /// Lattice spacing of the coarse octave in mm. Default: 4. Allowed: 0.5–100.
    pub scale_mm: f64,
}

impl Default for TextureSpec {
    fn default() -> Self {
        TextureSpec {
            melanin_std: 0.02,
            hemoglobin_std: 0.015,
            shading_std: 0.01,
            scale_mm: 4.0,
        }
    }
}

impl TextureSpec {
    /// No texture: a perfectly uniform background.
    pub fn none() -> TextureSpec {
        TextureSpec {
            melanin_std: 0.0,
            hemoglobin_std: 0.0,
            shading_std: 0.0,
            ..TextureSpec::default()
        }
    }

    fn validate(&self) -> Result<()> {
        finite_in("texture.melanin_std", self.melanin_std, 0.0, 0.5)?;
        finite_in("texture.hemoglobin_std", self.hemoglobin_std, 0.0, 0.2)?;
        finite_in("texture.shading_std", self.shading_std, 0.0, 0.1)?;
        finite_in("texture.scale_mm", self.scale_mm, 0.5, 100.0)
    }
}

/// The light that shades the scar height map: one directional source plus a uniform ambient
/// (sky) term modulated by ambient occlusion.
///
/// Shading of a surface point with unit normal `n`, ambient occlusion `AO ∈ (0, 1]` and light
/// direction `l` is `S = (k_a·AO + k_d·max(0, n·l)) / (k_a + k_d·l_z)` with `k_a = ambient`,
/// `k_d = 1 − ambient` — Lambert's law (Lambert, Photometria, 1760) plus an accessibility term
/// (Miller, "Efficient algorithms for local and global accessibility shading", SIGGRAPH 1994),
/// normalized so flat skin has `S = 1` exactly. Cast shadows are not modelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightingSpec {
    /// Direction *towards* the light in the image plane, degrees counter-clockwise from the
    /// image's +x axis (right) as seen on screen: 0 = light from the right, 90 = from the top,
    /// 135 = from the upper left (the cartographic hill-shading convention, so depressions read
    /// as depressions). Default: 135.
    pub azimuth_deg: f64,
    /// Elevation of the light above the skin plane in degrees (90 = coaxial with the camera,
    /// giving no directional relief shading). Default: 45. Allowed: 1–90.
    pub elevation_deg: f64,
    /// Fraction `k_a` of flat-skin irradiance that is diffuse ambient light (subject to
    /// occlusion); the rest is the directional source. Default: 0.3. Allowed: 0–1.
    pub ambient: f64,
}

impl Default for LightingSpec {
    fn default() -> Self {
        LightingSpec {
            azimuth_deg: 135.0,
            elevation_deg: 45.0,
            ambient: 0.3,
        }
    }
}

impl LightingSpec {
    fn validate(&self) -> Result<()> {
        finite_in("lighting.azimuth_deg", self.azimuth_deg, -360.0, 720.0)?;
        finite_in("lighting.elevation_deg", self.elevation_deg, 1.0, 90.0)?;
        finite_in("lighting.ambient", self.ambient, 0.0, 1.0)
    }
}

/// Enlarged pores: round, achromatic dark dots (the shadowed, often plugged follicular
/// orifice), each drawn with a uniform diameter and contrast from the ranges.
///
/// Profile: the linear reflectance is multiplied by `1 − c·exp(−ln2·(r/R)⁴)` (a fourth-order
/// super-Gaussian), `R` = half the nominal diameter, so the darkening is exactly half its peak
/// at the nominal edge. Mask: the disk `r ≤ R`. Sizes follow facial pore measurements of
/// roughly 0.1–0.5 mm (Flament et al., "Facial skin pores: a multiethnic study", Clin. Cosmet.
/// Investig. Dermatol. 8, 2015).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoreSpec {
    /// Number of pores. Default: 80.
    pub count: u32,
    /// Nominal diameter range in mm. Default: [0.15, 0.40]. At least 1.5 px (so every pore's
    /// mask holds at least one pixel centre): 0.15 mm at the default 10 px/mm.
    pub diameter_mm: [f64; 2],
    /// Peak fractional darkening `c` of linear reflectance at the pore centre, the same in all
    /// channels; the centre optical-density contrast is `−ln(1 − c)`. Default: [0.20, 0.40]
    /// (OD 0.22–0.51). Allowed: up to 0.95.
    pub contrast: [f64; 2],
}

impl Default for PoreSpec {
    fn default() -> Self {
        PoreSpec {
            count: 80,
            diameter_mm: [0.15, 0.40],
            contrast: [0.20, 0.40],
        }
    }
}

/// Pigmented macules: irregular spots of excess melanin.
///
/// Shape: in polar coordinates about the centre, the boundary radius is
/// `R(θ) = R0·(1 + Σ_{k=2..4} a_k·cos(kθ + φ_k))` with `a_k` uniform in
/// `[0, irregularity·2/k]` and random phases; `R0` is chosen so that the enclosed area equals
/// `π·D²/4` for the drawn equivalent diameter `D`. Profile: melanin excess
/// `A·exp(−ln2·ρ⁶)` with `ρ = r/R(θ)`, i.e. exactly half of `A` on the boundary. Mask: `ρ ≤ 1`,
/// where the excess is ≥ 50% of its peak. Sizes follow solar lentigines and
/// post-inflammatory macules of a few millimetres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PigmentSpec {
    /// Number of macules. Default: 4.
    pub count: u32,
    /// Equivalent-circle diameter range in mm. Default: [1.5, 6.0].
    pub diameter_mm: [f64; 2],
    /// Peak melanin density excess `A` range (added to the base `m0`). Default: [0.4, 0.9].
    pub melanin_excess: [f64; 2],
    /// Boundary irregularity (0 = circles). Default: 0.15. Allowed: 0–0.3, which keeps
    /// `R(θ) > 0.35·R0`.
    pub irregularity: f64,
}

impl Default for PigmentSpec {
    fn default() -> Self {
        PigmentSpec {
            count: 4,
            diameter_mm: [1.5, 6.0],
            melanin_excess: [0.4, 0.9],
            irregularity: 0.15,
        }
    }
}

/// The three atrophic acne-scar types of Jacob, Dover & Kaminer ("Acne scarring: a
/// classification system and review of treatment options", J. Am. Acad. Dermatol. 45, 2001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScarKind {
    /// Narrow (< 2 mm), deep, pointed tract: depth profile `exp(−ln10·(r/a)^1.5)`.
    Icepick,
    /// Round, 1.5–4 mm, flat floor and steep walls: `exp(−ln10·(r/a)^10)`.
    Boxcar,
    /// Broad (4–5 mm), shallow, smooth undulation: `exp(−ln10·(r/a)^2)`.
    Rolling,
}

impl ScarKind {
    /// Exponent `k` of the depth profile `d(r) = D·exp(−ln10·(r/a)^k)`.
    pub fn profile_exponent(self) -> f64 {
        match self {
            ScarKind::Icepick => 1.5,
            ScarKind::Boxcar => 10.0,
            ScarKind::Rolling => 2.0,
        }
    }

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            ScarKind::Icepick => "icepick",
            ScarKind::Boxcar => "boxcar",
            ScarKind::Rolling => "rolling",
        }
    }
}

/// Atrophic scars, rendered as depressions of a height map that the light of
/// [`LightingSpec`] shades (no chromophore change).
///
/// Depth profile of a scar of nominal diameter `2a` and depth `D`:
/// `d(r) = D·exp(−ln10·(r/a)^k)` with `k` from [`ScarKind::profile_exponent`], so the depth is
/// exactly 10% of `D` at the nominal edge. Mask: the footprint `r ≤ a` (depth ≥ 10% of max).
/// Ambient occlusion at a point of depth `d(r)` is `a²/(a² + d(r)²)`: the view factor from the
/// floor of a cylindrical pit of radius `a` and depth `d` to its opening, i.e. from a planar
/// element to a coaxial parallel disk (Howell, "A catalog of radiation heat transfer
/// configuration factors"), so deep narrow pits darken and shallow broad ones barely do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScarSpec {
    /// Icepick scars. Default: 3, diameter [0.3, 1.0] mm, depth [0.3, 0.8] mm.
    pub icepick: ScarKindSpec,
    /// Boxcar scars. Default: 2, diameter [1.5, 4.0] mm, depth [0.15, 0.4] mm.
    pub boxcar: ScarKindSpec,
    /// Rolling scars. Default: 2, diameter [2.0, 5.0] mm, depth [0.05, 0.15] mm.
    pub rolling: ScarKindSpec,
}

impl Default for ScarSpec {
    fn default() -> Self {
        ScarSpec {
            icepick: ScarKindSpec {
                count: 3,
                diameter_mm: [0.3, 1.0],
                depth_mm: [0.3, 0.8],
            },
            boxcar: ScarKindSpec {
                count: 2,
                diameter_mm: [1.5, 4.0],
                depth_mm: [0.15, 0.4],
            },
            rolling: ScarKindSpec {
                count: 2,
                diameter_mm: [2.0, 5.0],
                depth_mm: [0.05, 0.15],
            },
        }
    }
}

/// Count and size ranges of one scar kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScarKindSpec {
    /// Number of scars of this kind.
    pub count: u32,
    /// Nominal (footprint) diameter range in mm.
    pub diameter_mm: [f64; 2],
    /// Maximum depth range in mm.
    pub depth_mm: [f64; 2],
}

/// Erythema patches: irregular areas of excess hemoglobin, with the same boundary model as
/// [`PigmentSpec`] but softer edges: excess `A·exp(−ln2·ρ⁴)`. Mask: `ρ ≤ 1` (excess ≥ 50% of
/// peak).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErythemaSpec {
    /// Number of patches. Default: 2.
    pub count: u32,
    /// Equivalent-circle diameter range in mm. Default: [4, 8].
    pub diameter_mm: [f64; 2],
    /// Peak hemoglobin density excess range (added to the base `h0`). Default: [0.25, 0.5].
    pub hemoglobin_excess: [f64; 2],
    /// Boundary irregularity, as for pigment. Default: 0.1. Allowed: 0–0.3.
    pub irregularity: f64,
}

impl Default for ErythemaSpec {
    fn default() -> Self {
        ErythemaSpec {
            count: 2,
            diameter_mm: [4.0, 8.0],
            hemoglobin_excess: [0.25, 0.5],
            irregularity: 0.1,
        }
    }
}

/// Capture nuisances, applied in this order to the clean linear image: exposure × white
/// balance × illumination ramp, plus Gaussian noise, clip to [0, 1], sRGB encode, then 16-bit
/// quantization (PNG) or an 8-bit JPEG round trip. None of them changes the truth or masks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NuisanceSpec {
    /// Multiplier on linear values (a camera's exposure error; 1.3 ≈ +0.4 EV). Default: 1.
    /// Allowed: 0.05–10.
    pub exposure: f64,
    /// Per-channel linear gains (R, G, B): a white-balance cast, e.g. [1.1, 1, 0.9] is warm.
    /// Default: [1, 1, 1]. Allowed: 0.05–10 each.
    pub white_balance: [f64; 3],
    /// Total relative change of a linear multiplicative illumination ramp across the image:
    /// the factor runs from `1 − s/2` to `1 + s/2` (mean 1). Default: 0. Allowed: 0–1.9.
    pub gradient_strength: f64,
    /// Direction in which the ramp brightens, degrees counter-clockwise from image +x (same
    /// convention as [`LightingSpec::azimuth_deg`]). Default: 0.
    pub gradient_direction_deg: f64,
    /// Standard deviation of additive Gaussian noise on linear values, per channel and pixel
    /// (independent). Default: 0. Allowed: 0–0.5.
    pub noise_sigma: f64,
    /// When set, the image goes through a baseline JPEG at this quality and is written as
    /// `.jpg`. The encoder is the `image` crate's, which writes 4:4:4 (no chroma subsampling:
    /// all sampling factors are 1), so this tests DCT quantization, not the 4:2:0 chroma
    /// blur of most cameras. Default: none (16-bit PNG). Allowed: 1–100; 75–95 is typical of
    /// clinical cameras.
    pub jpeg_quality: Option<u8>,
}

impl Default for NuisanceSpec {
    fn default() -> Self {
        NuisanceSpec {
            exposure: 1.0,
            white_balance: [1.0; 3],
            gradient_strength: 0.0,
            gradient_direction_deg: 0.0,
            noise_sigma: 0.0,
            jpeg_quality: None,
        }
    }
}

impl NuisanceSpec {
    /// True when any nuisance differs from the identity (the image then differs from `clean`).
    pub fn any(&self) -> bool {
        *self != NuisanceSpec::default()
    }

    fn validate(&self) -> Result<()> {
        finite_in("nuisances.exposure", self.exposure, 0.05, 10.0)?;
        for g in self.white_balance {
            finite_in("nuisances.white_balance", g, 0.05, 10.0)?;
        }
        finite_in(
            "nuisances.gradient_strength",
            self.gradient_strength,
            0.0,
            1.9,
        )?;
        finite_in(
            "nuisances.gradient_direction_deg",
            self.gradient_direction_deg,
            -360.0,
            720.0,
        )?;
        finite_in("nuisances.noise_sigma", self.noise_sigma, 0.0, 0.5)?;
        if let Some(q) = self.jpeg_quality
            && !(1..=100).contains(&q)
        {
            return Err(invalid(
                "nuisances.jpeg_quality",
                format!("{q} is outside the allowed range [1, 100]"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_partial_json_fills_defaults() {
        PhantomSpec::default().validate().unwrap();
        let spec: PhantomSpec = serde_json::from_str(
            r#"{"seed": 9, "tone": {"preset": "dark"}, "pores": {"count": 3}}"#,
        )
        .unwrap();
        assert_eq!(spec.seed, 9);
        assert_eq!(spec.tone, BaseTone::Preset(TonePreset::Dark));
        assert_eq!(spec.pores.count, 3);
        assert_eq!(spec.pores.diameter_mm, PoreSpec::default().diameter_mm);
        assert!(serde_json::from_str::<PhantomSpec>(r#"{"sede": 9}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut spec = PhantomSpec::default();
        spec.pores.diameter_mm = [0.5, 0.2];
        match spec.validate().unwrap_err() {
            Error::InvalidSetting { name, .. } => assert_eq!(name, "pores.diameter_mm"),
            e => panic!("{e}"),
        }
        let spec = PhantomSpec {
            margin_mm: 2.0,
            ..PhantomSpec::default()
        };
        assert!(spec.validate().is_err());
        let mut spec = PhantomSpec::default();
        spec.nuisances.jpeg_quality = Some(0);
        assert!(spec.validate().is_err());
    }

    #[test]
    fn tone_names_round_trip() {
        for p in TonePreset::ALL {
            assert_eq!(p.name().parse::<TonePreset>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        assert_eq!(
            "Very-Light".parse::<TonePreset>().unwrap(),
            TonePreset::VeryLight
        );
        assert!("olive".parse::<TonePreset>().is_err());
    }
}

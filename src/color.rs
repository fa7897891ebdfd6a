//! Color and illumination normalization between photos, and absolute color from a chart.
//!
//! Why: `dermatrack compare BEFORE AFTER` reports how tone (L*, a*, b*, ITA°) and the skin
//! metrics changed between two sessions. Two clinic photos of an unchanged face routinely differ
//! by ±30 % in exposure and by a white-balance cast (different lamp, different camera auto white
//! balance); uncorrected, that alone moves L* by several units and b* by more than any treatment
//! does. This module removes those capture differences, in one of two ways, and says what it did
//! in a [`ColorNormalization`] that goes into the compare report.
//!
//! All corrections act on *linear-light* sRGB (IEC 61966-2-1 decoding), because exposure and
//! illuminant changes are multiplicative there and nowhere else: a camera's exposure scales
//! linear values, and a change of illuminant is, to first order, a per-channel scaling
//! (von Kries' coefficient law, von Kries 1902; see Fairchild, *Color Appearance Models*,
//! 3rd ed., 2013, ch. 9). A [`ColorCorrection`] is a 3×3 matrix on linear RGB; diagonal gains are
//! the von Kries special case.
//!
//! # `skin` mode: relative normalization without a chart
//!
//! [`skin_reference`] takes the per-channel median of linear RGB over the face-skin mask of each
//! photo (clipped and crushed pixels excluded), and [`skin_normalization`] gives the diagonal
//! gains that map the AFTER photo's statistic onto the BEFORE photo's. This removes exposure and
//! white balance differences exactly when they are global and multiplicative.
//!
//! The trade-off: pinning AFTER's pooled face-skin median colour to BEFORE's also removes any
//! real *global* change of skin colour — an overall tan, or a generalized lightening from a
//! depigmenting treatment, is normalized away. Regional changes survive: a new macule in one
//! region or post-inflammatory hyperpigmentation in one cheek covers a small fraction of the
//! pooled face mask, so the pooled median barely moves and the regional difference stays. For
//! absolute tone tracking, photograph a colour chart and use `chart` mode. A mild illumination
//! gradient is not modelled: the pooled median corrects its mean effect, and what is left shows
//! up as opposite residuals in opposite regions.
//!
//! Metrics that are contrasts against a local background (pores, pigment, scars, redness) are
//! already largely invariant to exposure, since a ratio of two linear values does not change when
//! both are scaled; normalization matters mostly for tone (L*, a*, b*, ITA°).
//!
//! # `chart` mode: absolute colour from a ColorChecker-style chart
//!
//! With a chart in the photo, [`fit_chart`] fits the correction that maps the photographed
//! patches onto their reference CIELAB values (converted to linear sRGB): per patch, the median
//! linear RGB of the inner 60 % of its rectangle (edges blur into the neighbours); then a
//! weighted least-squares 3×3 matrix (the linear colour correction of e.g. Finlayson, Mackiewicz
//! & Hurlbert, "Color correction using root-polynomial regression", IEEE Trans. Image Process.
//! 24(5), 2015, whose linear baseline this is). Weights approximate the CIELAB lightness
//! sensitivity dL*/dY ∝ Y^(-2/3): squared linear-RGB residuals are weighted by
//! (Y_ref + 0.01)^(-4/3), so dark patches count as much in L* as bright ones instead of the fit
//! being dominated by the white patch. With fewer than [`MIN_MATRIX_PATCHES`] usable patches, or
//! when the patches do not span colour well enough to determine a matrix (e.g. only greys;
//! condition number of the weighted normal matrix above [`MAX_NORMAL_CONDITION`]), the fit falls
//! back to diagonal gains, which need only one well-exposed patch per channel. Patches whose
//! median is clipped (≥ 254/255) or crushed (≤ 2/255) in any channel are left out of the fit:
//! clipping is monotone, so the median is exact unless the median pixel itself is clipped. The
//! fit is reported with CIEDE2000 differences ([`delta_e2000`]; Sharma, Wu & Dalal, "The CIEDE2000
//! color-difference formula: implementation notes, supplementary test data, and mathematical
//! observations", Color Res. Appl. 30(1):21–30, 2005) between corrected patches and references,
//! and, for context, of the uncorrected photo.
//!
//! ## Chart file
//!
//! Rectangles are `[x, y, width, height]` in pixels of the upright photo (after EXIF
//! orientation). Either name a built-in reference and the patches by name:
//!
//! ```json
//! {
//!   "reference": "colorchecker-classic-24",
//!   "patches": [
//!     {"name": "dark_skin",  "rect": [120, 840, 60, 60]},
//!     {"name": "light_skin", "rect": [200, 840, 60, 60]},
//!     {"name": "white_9_5",  "rect": [120, 1080, 60, 60]},
//!     {"name": "patch_24",   "rect": [520, 1080, 60, 60]}
//!   ]
//! }
//! ```
//!
//! or give every patch its CIELAB value under D65 (2° observer), e.g. from measuring the
//! individual chart with a spectrophotometer:
//!
//! ```json
//! {"patches": [{"name": "p1", "rect": [10, 10, 40, 40], "lab": [37.8, 13.3, 14.8]}, ...]}
//! ```
//!
//! At least 4 patches, unique names, non-empty rectangles, L* in 0..=100 and finite a*, b*; the
//! rectangles must lie inside the photo (checked when fitting). Built-in names (reference
//! `colorchecker-classic-24`, see [`COLORCHECKER_CLASSIC_D50`]) are the 24 ColorChecker Classic
//! patches in snake_case — `dark_skin`, `light_skin`, `blue_sky`, `foliage`, `blue_flower`,
//! `bluish_green`, `orange`, `purplish_blue`, `moderate_red`, `purple`, `yellow_green`,
//! `orange_yellow`, `blue`, `green`, `red`, `yellow`, `magenta`, `cyan`, `white_9_5`,
//! `neutral_8`, `neutral_6_5`, `neutral_5`, `neutral_3_5`, `black_2` — or `patch_1` …
//! `patch_24` in the same (row-major) order.
//!
//! The built-in values are X-Rite's published CIELAB values for the ColorChecker Classic
//! manufactured from November 2014 on (new pigment formulation), as tabulated by BabelColor
//! (Danny Pascale, "ColorChecker data", babelcolor.com). They are given for D50 (2° observer); the
//! rest of dermatrack works in D65 (sRGB's white), so they are converted with the Bradford
//! chromatic adaptation transform (Lam 1985; the linearized form used by ICC.1 and tabulated by
//! B. Lindbloom): Lab(D50) → XYZ(D50) → Bradford → XYZ(D65) → Lab(D65). Charts made before
//! November 2014 used other pigments and differ on several patches; give explicit values for
//! those.
//!
//! Colour spaces: sRGB primaries and transfer function per IEC 61966-2-1:1999, CIELAB per
//! CIE 15:2004, D65 white (0.95047, 1, 1.08883), D50 white (0.96422, 1, 0.82521).

use std::path::{Path, PathBuf};

use image::{GrayImage, Rgb32FImage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::linear_srgb_to_lab;
use crate::model::{linear_to_srgb, srgb_to_linear};

/// Setting name used in errors about a chart file (the command-line option's name).
const CHART_SETTING: &str = "color-chart";

/// Encoded values at or above this are treated as clipped highlights (same limit as
/// [`crate::quality`]'s highlight check).
const CLIPPED: f32 = 254.0 / 255.0;
/// Encoded values at or below this are treated as crushed shadows (same limit as
/// [`crate::quality`]'s shadow check).
const CRUSHED: f32 = 2.0 / 255.0;

/// Fewest usable skin pixels for [`skin_reference`] to return a statistic: below this a median
/// is dominated by texture and noise.
pub const MIN_SKIN_PIXELS: usize = 100;

/// Most pixels sampled for one median (skin statistic or chart patch). A 24 MP face holds
/// ~10 M skin pixels; a regular grid subsample of ≤ 200 k pixels gives a median within a small
/// fraction of a percent of the full one, in a fraction of the time, and is deterministic.
pub const MAX_MEDIAN_SAMPLES: u64 = 200_000;

/// Fewest usable chart patches for fitting a full 3×3 matrix (9 unknowns); with fewer, diagonal
/// gains (3 unknowns) are fitted instead.
pub const MIN_MATRIX_PATCHES: usize = 9;

/// Fewest patches in a chart file, and fewest usable patches for any fit.
pub const MIN_CHART_PATCHES: usize = 4;

/// Most patches in a chart file (a guard against a mistaken file, e.g. a dense target exported
/// pixel by pixel).
pub const MAX_CHART_PATCHES: usize = 1000;

/// Largest condition number (Frobenius-norm estimate) of the weighted normal matrix Σ w m mᵀ
/// for which a 3×3 matrix is fitted. Above it the patches are nearly coplanar in RGB (e.g. only
/// greys) and the matrix would amplify noise in the missing direction, so gains are fitted.
pub const MAX_NORMAL_CONDITION: f64 = 1e6;

/// Name of the built-in reference in chart files.
pub const COLORCHECKER_CLASSIC_24: &str = "colorchecker-classic-24";

/// ColorChecker Classic (from November 2014) reference values, CIELAB D50 2°, in chart order
/// (row-major from the brown `dark_skin` patch): X-Rite's published values as tabulated by
/// BabelColor. Use [`colorchecker_classic_lab_d65`] for the D65 values dermatrack works in.
pub const COLORCHECKER_CLASSIC_D50: [(&str, [f64; 3]); 24] = [
    ("dark_skin", [37.54, 14.37, 14.92]),
    ("light_skin", [64.66, 19.27, 17.50]),
    ("blue_sky", [49.32, -3.82, -22.54]),
    ("foliage", [43.46, -12.74, 22.72]),
    ("blue_flower", [54.94, 9.61, -24.79]),
    ("bluish_green", [70.48, -32.26, -0.37]),
    ("orange", [62.73, 35.83, 56.50]),
    ("purplish_blue", [39.43, 10.75, -45.17]),
    ("moderate_red", [50.57, 48.64, 16.67]),
    ("purple", [30.10, 22.54, -20.87]),
    ("yellow_green", [71.77, -24.13, 58.19]),
    ("orange_yellow", [71.51, 18.24, 67.37]),
    ("blue", [28.37, 15.42, -49.80]),
    ("green", [54.38, -39.72, 32.27]),
    ("red", [42.43, 51.05, 28.62]),
    ("yellow", [81.80, 2.67, 80.41]),
    ("magenta", [50.63, 51.28, -14.12]),
    ("cyan", [49.57, -29.71, -28.32]),
    ("white_9_5", [95.19, -1.03, 2.93]),
    ("neutral_8", [81.29, -0.57, 0.44]),
    ("neutral_6_5", [66.89, -0.75, -0.06]),
    ("neutral_5", [50.76, -0.13, 0.14]),
    ("neutral_3_5", [35.63, -0.46, -0.48]),
    ("black_2", [20.64, 0.07, -0.46]),
];

/// D65 reference white (CIE 15:2004, 2°), Y = 1; the same as [`linear_srgb_to_lab`] uses.
const WHITE_D65: [f64; 3] = [0.950_47, 1.0, 1.088_83];
/// D50 reference white (CIE 15:2004, 2°), Y = 1.
const WHITE_D50: [f64; 3] = [0.964_22, 1.0, 0.825_21];

/// Linear sRGB → XYZ (D65), IEC 61966-2-1; the matrix [`linear_srgb_to_lab`] uses. Kept here only
/// to be inverted for [`lab_to_linear_srgb`]; a test checks the two stay exact inverses.
const SRGB_TO_XYZ: [[f64; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175_0],
    [0.019_333_9, 0.119_192_0, 0.950_304_1],
];

/// Bradford cone-response matrix (Lam 1985, linearized as in ICC.1).
const BRADFORD: [[f64; 3]; 3] = [
    [0.895_1, 0.266_4, -0.161_4],
    [-0.750_2, 1.713_5, 0.036_7],
    [0.038_9, -0.068_5, 1.029_6],
];

/// A 3×3 matrix applied to linear-light sRGB (von Kries diagonal gains are a special case).
///
/// Why linear light: exposure and illuminant changes are multiplicative on linear values, so a
/// matrix there can undo them; on encoded values it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColorCorrection {
    /// Row-major matrix: output linear channel `i` = Σⱼ `matrix[i][j]` · input linear channel
    /// `j`, channels in R, G, B order; dimensionless.
    pub matrix: [[f64; 3]; 3],
}

impl Default for ColorCorrection {
    fn default() -> Self {
        Self::identity()
    }
}

impl ColorCorrection {
    /// The correction that changes nothing.
    pub fn identity() -> Self {
        Self::gains([1.0; 3])
    }

    /// Diagonal per-channel gains on linear R, G, B (von Kries adaptation).
    pub fn gains(g: [f64; 3]) -> Self {
        Self {
            matrix: [[g[0], 0.0, 0.0], [0.0, g[1], 0.0], [0.0, 0.0, g[2]]],
        }
    }

    /// True when the matrix is diagonal (a von Kries correction).
    pub fn is_diagonal(&self) -> bool {
        (0..3).all(|i| (0..3).all(|j| i == j || self.matrix[i][j] == 0.0))
    }

    /// The matrix applied to one linear RGB triple (no clamping).
    pub fn apply_linear(&self, rgb: [f64; 3]) -> [f64; 3] {
        mat_vec(&self.matrix, rgb)
    }

    /// The correction that undoes this one, or `None` if the matrix is singular.
    pub fn inverse(&self) -> Option<Self> {
        inv3(&self.matrix).map(|matrix| Self { matrix })
    }

    /// The correction applying `self` first and then `next`.
    pub fn then(&self, next: &ColorCorrection) -> Self {
        Self {
            matrix: mat_mul(&next.matrix, &self.matrix),
        }
    }

    /// sRGB-encoded image in, sRGB-encoded image out (decode → matrix → encode), serial loop.
    ///
    /// Negative results (possible with off-diagonal terms) are clamped to 0, since no encoded
    /// value represents them; values above 1 are kept, because brightening a photo legitimately
    /// pushes highlights past 1 and the skin model handles them (clamping would flatten
    /// highlights and shift their colour).
    pub fn apply(&self, img: &Rgb32FImage) -> Rgb32FImage {
        let m = self.matrix.map(|row| row.map(|v| v as f32));
        let mut out = Rgb32FImage::new(img.width(), img.height());
        for (o, p) in out.pixels_mut().zip(img.pixels()) {
            let lin = p.0.map(srgb_to_linear);
            let row = |r: [f32; 3]| (r[0] * lin[0] + r[1] * lin[1] + r[2] * lin[2]).max(0.0);
            o.0 = [row(m[0]), row(m[1]), row(m[2])].map(linear_to_srgb);
        }
        out
    }
}

/// Whether an encoded pixel may enter a colour statistic: finite, no channel clipped
/// (≥ 254/255), no channel crushed (≤ 2/255). Clipped or crushed channels no longer scale with
/// exposure, so they would bias a statistic meant to measure it.
fn usable(p: [f32; 3]) -> bool {
    p.iter()
        .all(|&c| c.is_finite() && c > CRUSHED && c < CLIPPED)
}

/// Grid step in both directions so that sampling every `step`-th row and column of `count`
/// pixels keeps at most about [`MAX_MEDIAN_SAMPLES`].
fn sample_stride(count: u64) -> u32 {
    if count <= MAX_MEDIAN_SAMPLES {
        1
    } else {
        ((count as f64 / MAX_MEDIAN_SAMPLES as f64).sqrt().ceil() as u32).max(1)
    }
}

/// Median of a non-empty slice (mean of the two middle values for even lengths); reorders it.
fn median(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (lower, &mut upper, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        Some(upper)
    } else {
        let low = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (low + upper))
    }
}

/// Robust skin colour statistic of a photo: per-channel median of linear RGB over the pixels
/// where `mask` is non-zero, ignoring pixels with any channel ≥ 254/255 (clipped) or ≤ 2/255
/// (crushed).
///
/// Why the median: specular highlights, hair, shadowed folds and lesions are a minority of the
/// face and would pull a mean; the median of each channel follows the bulk of the skin and is
/// equivariant under the per-channel scalings it is used to measure. Large masks are subsampled
/// on a regular grid (every `s`-th row and column, `s` chosen so that at most about
/// [`MAX_MEDIAN_SAMPLES`] pixels are read), which is deterministic. Returns `None` if `mask` is
/// not the size of `img`, or fewer than [`MIN_SKIN_PIXELS`] usable pixels are found.
pub fn skin_reference(img: &Rgb32FImage, mask: &GrayImage) -> Option<[f64; 3]> {
    if img.dimensions() != mask.dimensions() {
        return None;
    }
    let count = mask.as_raw().iter().filter(|&&v| v != 0).count();
    if count < MIN_SKIN_PIXELS {
        return None;
    }
    let step = sample_stride(count as u64) as usize;
    let mut channels: [Vec<f64>; 3] = Default::default();
    for y in (0..img.height()).step_by(step) {
        for x in (0..img.width()).step_by(step) {
            if mask.get_pixel(x, y).0[0] == 0 {
                continue;
            }
            let p = img.get_pixel(x, y).0;
            if usable(p) {
                for (values, c) in channels.iter_mut().zip(p) {
                    values.push(f64::from(srgb_to_linear(c)));
                }
            }
        }
    }
    if channels[0].len() < MIN_SKIN_PIXELS {
        return None;
    }
    let [r, g, b] = &mut channels;
    Some([median(r)?, median(g)?, median(b)?])
}

/// Per-channel gains mapping `from`'s skin statistic onto `to`'s (von Kries):
/// `gains[c] = to[c] / from[c]`.
///
/// A channel whose ratio is not a finite positive number (a zero or invalid statistic, which
/// [`skin_reference`] never returns) keeps gain 1 rather than producing a black or NaN image.
pub fn skin_normalization(from: [f64; 3], to: [f64; 3]) -> ColorCorrection {
    let gain = |c: usize| {
        let g = to[c] / from[c];
        if g.is_finite() && g > 0.0 { g } else { 1.0 }
    };
    ColorCorrection::gains([gain(0), gain(1), gain(2)])
}

/// CIEDE2000 colour difference (Sharma, Wu & Dalal 2005, "The CIEDE2000 color-difference
/// formula: implementation notes, supplementary test data, and mathematical observations",
/// Color Res. Appl. 30(1)), with parametric factors kL = kC = kH = 1.
///
/// Why ΔE00: it is the CIE's current recommendation and the most uniform of the standard
/// formulas, so "ΔE00 < 1" means roughly "not visibly different" across the colour space,
/// including the near-neutral and blue regions where ΔE*ab misleads.
pub fn delta_e2000(lab1: [f64; 3], lab2: [f64; 3]) -> f64 {
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    const POW25_7: f64 = 6_103_515_625.0; // 25^7
    let c_bar = 0.5 * (a1.hypot(b1) + a2.hypot(b2));
    let c_bar7 = c_bar.powi(7);
    let g = 0.5 * (1.0 - (c_bar7 / (c_bar7 + POW25_7)).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = (a1p.hypot(b1), a2p.hypot(b2));
    let hue = |b: f64, ap: f64| {
        if b == 0.0 && ap == 0.0 {
            0.0
        } else {
            let h = b.atan2(ap).to_degrees();
            if h < 0.0 { h + 360.0 } else { h }
        }
    };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));

    let dl = l2 - l1;
    let dc = c2p - c1p;
    let chroma_product = c1p * c2p;
    let dh = if chroma_product == 0.0 {
        0.0
    } else {
        let d = h2p - h1p;
        if d > 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    };
    let d_big_h = 2.0 * chroma_product.sqrt() * (dh.to_radians() / 2.0).sin();

    let l_bar = 0.5 * (l1 + l2);
    let c_bar_p = 0.5 * (c1p + c2p);
    let h_bar = if chroma_product == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        0.5 * (h1p + h2p)
    } else if h1p + h2p < 360.0 {
        0.5 * (h1p + h2p + 360.0)
    } else {
        0.5 * (h1p + h2p - 360.0)
    };
    let t = 1.0 - 0.17 * (h_bar - 30.0).to_radians().cos()
        + 0.24 * (2.0 * h_bar).to_radians().cos()
        + 0.32 * (3.0 * h_bar + 6.0).to_radians().cos()
        - 0.20 * (4.0 * h_bar - 63.0).to_radians().cos();
    let d_theta = 30.0 * (-((h_bar - 275.0) / 25.0).powi(2)).exp();
    let c_bar_p7 = c_bar_p.powi(7);
    let r_c = 2.0 * (c_bar_p7 / (c_bar_p7 + POW25_7)).sqrt();
    let l50 = (l_bar - 50.0).powi(2);
    let s_l = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let s_c = 1.0 + 0.045 * c_bar_p;
    let s_h = 1.0 + 0.015 * c_bar_p * t;
    let r_t = -(2.0 * d_theta).to_radians().sin() * r_c;
    let (tl, tc, th) = (dl / s_l, dc / s_c, d_big_h / s_h);
    (tl * tl + tc * tc + th * th + r_t * tc * th)
        .max(0.0)
        .sqrt()
}

/// CIELAB → XYZ for the given reference white (CIE 15:2004).
fn lab_to_xyz(lab: [f64; 3], white: [f64; 3]) -> [f64; 3] {
    const D: f64 = 6.0 / 29.0;
    let f_inv = |t: f64| {
        if t > D {
            t * t * t
        } else {
            3.0 * D * D * (t - 4.0 / 29.0)
        }
    };
    let fy = (lab[0] + 16.0) / 116.0;
    let fx = fy + lab[1] / 500.0;
    let fz = fy - lab[2] / 200.0;
    [
        white[0] * f_inv(fx),
        white[1] * f_inv(fy),
        white[2] * f_inv(fz),
    ]
}

/// XYZ → CIELAB for the given reference white (CIE 15:2004).
fn xyz_to_lab(xyz: [f64; 3], white: [f64; 3]) -> [f64; 3] {
    const D: f64 = 6.0 / 29.0;
    let f = |t: f64| {
        if t > D * D * D {
            t.cbrt()
        } else {
            t / (3.0 * D * D) + 4.0 / 29.0
        }
    };
    let (fx, fy, fz) = (
        f(xyz[0] / white[0]),
        f(xyz[1] / white[1]),
        f(xyz[2] / white[2]),
    );
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// CIELAB (D65) → linear sRGB: the inverse of [`linear_srgb_to_lab`].
///
/// Colours outside the sRGB gamut (e.g. the ColorChecker's cyan) come out with negative
/// channels; they are returned as they are, because a fit target must not be moved.
pub fn lab_to_linear_srgb(lab: [f64; 3]) -> [f64; 3] {
    let xyz_to_srgb = inv3(&SRGB_TO_XYZ).expect("the sRGB matrix is invertible");
    mat_vec(&xyz_to_srgb, lab_to_xyz(lab, WHITE_D65))
}

/// Converts a CIELAB value under D50 to CIELAB under D65 with the Bradford chromatic adaptation
/// transform (the same surface seen under D65 by an observer adapted to D65).
pub fn lab_d50_to_d65(lab: [f64; 3]) -> [f64; 3] {
    let cone = |w: [f64; 3]| mat_vec(&BRADFORD, w);
    let (src, dst) = (cone(WHITE_D50), cone(WHITE_D65));
    let scale = [
        [dst[0] / src[0], 0.0, 0.0],
        [0.0, dst[1] / src[1], 0.0],
        [0.0, 0.0, dst[2] / src[2]],
    ];
    let back = inv3(&BRADFORD).expect("the Bradford matrix is invertible");
    let adapt = mat_mul(&back, &mat_mul(&scale, &BRADFORD));
    xyz_to_lab(mat_vec(&adapt, lab_to_xyz(lab, WHITE_D50)), WHITE_D65)
}

/// The built-in ColorChecker Classic value (CIELAB, D65 via Bradford) of a patch named in
/// snake_case (`dark_skin` … `black_2`) or by position (`patch_1` … `patch_24`); `None` for
/// any other name.
pub fn colorchecker_classic_lab_d65(name: &str) -> Option<[f64; 3]> {
    let by_position = name
        .strip_prefix("patch_")
        .filter(|n| !n.starts_with('0'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=24).contains(n))
        .map(|n| COLORCHECKER_CLASSIC_D50[n - 1].1);
    by_position
        .or_else(|| {
            COLORCHECKER_CLASSIC_D50
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, lab)| *lab)
        })
        .map(lab_d50_to_d65)
}

/// A chart file as written by the user (see the module documentation for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartFile {
    /// Built-in reference the patch names refer to: `"colorchecker-classic-24"`. Absent when
    /// every patch gives its own `lab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The patches, at least 4.
    pub patches: Vec<ChartFilePatch>,
}

/// One patch of a [`ChartFile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartFilePatch {
    /// Patch name, unique in the file; with a `reference`, a built-in patch name.
    pub name: String,
    /// `[x, y, width, height]` in pixels of the upright photo (after EXIF orientation).
    pub rect: [u32; 4],
    /// Reference CIELAB under D65, 2° observer (L* 0..100); required without `reference`,
    /// refused with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<[f64; 3]>,
}

/// A colour chart in a photo: patches and their reference CIELAB (D65) values.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorChart {
    /// The patches, in file order.
    pub patches: Vec<ChartPatch>,
    /// The file the chart came from, named in errors found when fitting; `None` for charts
    /// built in code.
    pub path: Option<PathBuf>,
}

/// One chart patch: where it is in the photo and what colour it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPatch {
    /// Patch name, reported with its fit.
    pub name: String,
    /// `[x, y, width, height]` in pixels of the upright photo (after EXIF orientation).
    pub rect: [u32; 4],
    /// Reference CIELAB, D65 white, 2° observer.
    pub lab: [f64; 3],
}

/// Loads a chart JSON file (format in the module documentation).
///
/// Refused, with the file named and what was expected: unreadable files, invalid JSON or
/// unknown keys, an unknown `reference`, fewer than [`MIN_CHART_PATCHES`] or more than
/// [`MAX_CHART_PATCHES`] patches, empty or duplicate names, names not in the reference, `lab`
/// missing without a reference or given with one, L* outside 0..=100 or non-finite values, and
/// empty rectangles. Whether rectangles lie inside the photo is checked by [`fit_chart`].
pub fn load_chart(path: &Path) -> Result<ColorChart> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| Error::InvalidSetting {
        name: CHART_SETTING,
        message: format!("{}: {message}", path.display()),
    };
    let file: ChartFile = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "not a colour-chart file ({e}); expected {{\"reference\": \
             \"{COLORCHECKER_CLASSIC_24}\", \"patches\": [{{\"name\": \"dark_skin\", \"rect\": \
             [x, y, w, h]}}, ...]}} or {{\"patches\": [{{\"name\": \"p1\", \"rect\": [x, y, w, \
             h], \"lab\": [L, a, b]}}, ...]}}"
        ))
    })?;
    let mut chart = chart_from_file(&file).map_err(invalid)?;
    chart.path = Some(path.to_path_buf());
    Ok(chart)
}

/// Validates a parsed chart file and resolves its reference values; errors are messages
/// without the path.
pub fn chart_from_file(file: &ChartFile) -> std::result::Result<ColorChart, String> {
    if let Some(reference) = &file.reference
        && reference != COLORCHECKER_CLASSIC_24
    {
        return Err(format!(
            "unknown reference {reference:?}; the built-in reference is \
             \"{COLORCHECKER_CLASSIC_24}\" (or omit \"reference\" and give every patch its \
             \"lab\")"
        ));
    }
    let n = file.patches.len();
    if !(MIN_CHART_PATCHES..=MAX_CHART_PATCHES).contains(&n) {
        return Err(format!(
            "has {n} patch(es); a chart needs {MIN_CHART_PATCHES} to {MAX_CHART_PATCHES}"
        ));
    }
    let mut patches: Vec<ChartPatch> = Vec::with_capacity(n);
    for (i, p) in file.patches.iter().enumerate() {
        let name = &p.name;
        if name.is_empty() {
            return Err(format!("patch {} has an empty name", i + 1));
        }
        if patches.iter().any(|q| &q.name == name) {
            return Err(format!(
                "patch name {name:?} is used twice; names must be unique"
            ));
        }
        let [_, _, w, h] = p.rect;
        if w == 0 || h == 0 {
            return Err(format!(
                "patch {name:?} has the empty rect {:?}; expected [x, y, width, height] with \
                 width and height of at least 1 pixel",
                p.rect
            ));
        }
        let lab = match (&file.reference, p.lab) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "patch {name:?} gives \"lab\" although the file names a \"reference\"; give \
                     either the reference or explicit values for every patch"
                ));
            }
            (Some(_), None) => colorchecker_classic_lab_d65(name).ok_or_else(|| {
                format!(
                    "patch {name:?} is not a {COLORCHECKER_CLASSIC_24} patch; expected one of \
                     {} or patch_1 ... patch_24",
                    COLORCHECKER_CLASSIC_D50
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
            (None, Some(lab)) => {
                let valid = lab.iter().all(|v| v.is_finite())
                    && (0.0..=100.0).contains(&lab[0])
                    && lab[1].abs() <= 200.0
                    && lab[2].abs() <= 200.0;
                if !valid {
                    return Err(format!(
                        "patch {name:?} has lab {lab:?}; expected finite CIELAB (D65) with L* in \
                         0..100 and |a*|, |b*| ≤ 200"
                    ));
                }
                lab
            }
            (None, None) => {
                return Err(format!(
                    "patch {name:?} has no \"lab\"; without a \"reference\" every patch needs \
                     its CIELAB (D65) value [L, a, b]"
                ));
            }
        };
        patches.push(ChartPatch {
            name: name.clone(),
            rect: p.rect,
            lab,
        });
    }
    Ok(ColorChart {
        patches,
        path: None,
    })
}

/// Result of fitting a colour chart in one photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartFit {
    /// The fitted correction, on linear sRGB.
    pub correction: ColorCorrection,
    /// `"matrix"` (full 3×3) or `"gains"` (diagonal, the fallback with fewer than 9 usable
    /// patches or patches that do not determine a matrix).
    pub model: String,
    /// Number of patches used in the fit (clipped or crushed ones are left out).
    pub patches: usize,
    /// Mean CIEDE2000 between corrected and reference patches, over the patches used.
    pub delta_e2000_mean: f64,
    /// Largest CIEDE2000 between corrected and reference patches, over the patches used.
    pub delta_e2000_max: f64,
    /// Mean CIEDE2000 between the uncorrected photo's patches and the references, over the
    /// patches used: how far off the photo was.
    pub delta_e2000_before_mean: f64,
    /// Every patch of the chart, in chart order.
    pub per_patch: Vec<PatchFit>,
    /// Why patches were left out or gains were fitted, if so.
    pub notes: Vec<String>,
}

/// One patch of a [`ChartFit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchFit {
    /// Patch name from the chart.
    pub name: String,
    /// CIELAB (D65) of the patch as photographed (median of the inner 60 % of its rect).
    pub measured_lab: [f64; 3],
    /// CIELAB (D65) of the patch after the correction, unclamped: the accuracy of the fit.
    /// References outside the sRGB gamut (the ColorChecker's cyan has linear R ≈ −0.04) can be
    /// matched here but not in the corrected image, where [`ColorCorrection::apply`] clamps
    /// negative values to 0; such patches appear slightly desaturated there.
    pub corrected_lab: [f64; 3],
    /// Reference CIELAB (D65).
    pub reference_lab: [f64; 3],
    /// CIEDE2000 between `corrected_lab` and `reference_lab`.
    pub delta_e2000: f64,
    /// False when the patch was clipped or crushed in the photo and left out of the fit (and of
    /// the summary ΔE).
    pub used_in_fit: bool,
}

/// Median linear RGB of the inner 60 % of `rect` (20 % trimmed from each side, at least one
/// pixel), subsampled like [`skin_reference`]. The rect must lie inside the image.
fn patch_median(img: &Rgb32FImage, rect: [u32; 4]) -> [f64; 3] {
    let [x, y, w, h] = rect;
    let inner = |start: u32, len: u32| {
        let trim = (f64::from(len) * 0.2).round() as u32;
        let keep = len.saturating_sub(2 * trim).max(1);
        (start + trim.min(len - 1), keep)
    };
    let (x0, w0) = inner(x, w);
    let (y0, h0) = inner(y, h);
    let step = sample_stride(u64::from(w0) * u64::from(h0)) as usize;
    let mut channels: [Vec<f64>; 3] = Default::default();
    for yy in (y0..y0 + h0).step_by(step) {
        for xx in (x0..x0 + w0).step_by(step) {
            let p = img.get_pixel(xx, yy).0;
            for (values, c) in channels.iter_mut().zip(p) {
                values.push(f64::from(srgb_to_linear(c)));
            }
        }
    }
    channels.map(|mut v| median(&mut v).unwrap_or(0.0))
}

/// Fits the colour correction mapping the photo's chart patches onto their reference values and
/// reports ΔE2000 between the corrected patches and the references.
///
/// Per patch, the median linear RGB of the inner 60 % of its rect; references are converted to
/// linear sRGB. Patches whose median is clipped or crushed in any channel are left out. With at
/// least [`MIN_MATRIX_PATCHES`] usable patches spanning colour (condition number of the
/// weighted normal matrix ≤ [`MAX_NORMAL_CONDITION`]), a full 3×3 matrix is fitted by weighted
/// least squares; otherwise diagonal gains, by the same weighted least squares per channel. The
/// weights, (Y_ref + 0.01)^(-4/3), make squared linear-RGB errors approximate squared L* errors
/// (see the module documentation). Errors (naming the chart file): a rect outside the photo,
/// fewer than [`MIN_CHART_PATCHES`] usable patches.
pub fn fit_chart(img: &Rgb32FImage, chart: &ColorChart) -> Result<ChartFit> {
    let invalid = |message: String| Error::InvalidSetting {
        name: CHART_SETTING,
        message: match &chart.path {
            Some(p) => format!("{}: {message}", p.display()),
            None => message,
        },
    };
    let (width, height) = img.dimensions();
    for p in &chart.patches {
        let [x, y, w, h] = p.rect.map(u64::from);
        if w == 0 || h == 0 || x + w > u64::from(width) || y + h > u64::from(height) {
            return Err(invalid(format!(
                "patch {:?} has rect {:?} ([x, y, width, height]), which is empty or not inside \
                 the {width}×{height} photo (coordinates are pixels of the upright photo)",
                p.name, p.rect
            )));
        }
    }

    struct Sample {
        measured: [f64; 3],
        target: [f64; 3],
        weight: f64,
        used: bool,
    }
    let mut notes = Vec::new();
    let samples: Vec<Sample> = chart
        .patches
        .iter()
        .map(|p| {
            let measured = patch_median(img, p.rect);
            let encoded = measured.map(|v| linear_to_srgb(v as f32));
            let used = usable(encoded);
            if !used {
                notes.push(format!(
                    "patch {:?} left out: clipped or crushed (median sRGB {:.3}, {:.3}, {:.3})",
                    p.name, encoded[0], encoded[1], encoded[2]
                ));
            }
            let y_ref = lab_to_xyz(p.lab, WHITE_D65)[1].max(0.0);
            Sample {
                measured,
                target: lab_to_linear_srgb(p.lab),
                weight: (y_ref + 0.01).powf(-4.0 / 3.0),
                used,
            }
        })
        .collect();
    let used: Vec<&Sample> = samples.iter().filter(|s| s.used).collect();
    if used.len() < MIN_CHART_PATCHES {
        return Err(invalid(format!(
            "only {} of {} chart patches are usable (neither clipped nor crushed); at least \
             {MIN_CHART_PATCHES} are needed — check the exposure and the patch rects",
            used.len(),
            chart.patches.len()
        )));
    }

    // Weighted normal equations: N = Σ w m mᵀ, and per output channel c, Σ w m r_c.
    let mut normal = [[0.0; 3]; 3];
    let mut rhs = [[0.0; 3]; 3]; // rhs[c] = Σ w m r_c
    for s in &used {
        let wm = s.measured.map(|v| s.weight * v);
        for (row, &v) in normal.iter_mut().zip(&s.measured) {
            *row = [0, 1, 2].map(|i| row[i] + wm[i] * v);
        }
        for (row, &r) in rhs.iter_mut().zip(&s.target) {
            *row = [0, 1, 2].map(|i| row[i] + wm[i] * r);
        }
    }
    let matrix_fit = if used.len() < MIN_MATRIX_PATCHES {
        notes.push(format!(
            "{} usable patches (fewer than {MIN_MATRIX_PATCHES}): fitted diagonal gains",
            used.len()
        ));
        None
    } else {
        match inv3(&normal) {
            Some(inverse) if frobenius(&normal) * frobenius(&inverse) <= MAX_NORMAL_CONDITION => {
                Some(rhs.map(|r| mat_vec(&inverse, r)))
            }
            _ => {
                notes.push(
                    "the patches do not span colour enough to determine a 3×3 matrix (e.g. only \
                     greys): fitted diagonal gains"
                        .into(),
                );
                None
            }
        }
    };
    let (correction, model) = match matrix_fit {
        Some(matrix) if matrix.iter().flatten().all(|v| v.is_finite()) => {
            (ColorCorrection { matrix }, "matrix")
        }
        _ => {
            let mut g = [1.0; 3];
            for (c, gain) in g.iter_mut().enumerate() {
                *gain = rhs[c][c] / normal[c][c];
                if !(gain.is_finite() && *gain > 0.0) {
                    return Err(invalid(format!(
                        "the chart patches give no usable signal in the {} channel; cannot fit \
                         gains",
                        ["red", "green", "blue"][c]
                    )));
                }
            }
            (ColorCorrection::gains(g), "gains")
        }
    };

    let per_patch: Vec<PatchFit> = chart
        .patches
        .iter()
        .zip(&samples)
        .map(|(p, s)| {
            let corrected_lab = linear_srgb_to_lab(correction.apply_linear(s.measured));
            PatchFit {
                name: p.name.clone(),
                measured_lab: linear_srgb_to_lab(s.measured),
                corrected_lab,
                reference_lab: p.lab,
                delta_e2000: delta_e2000(corrected_lab, p.lab),
                used_in_fit: s.used,
            }
        })
        .collect();
    let fitted = || per_patch.iter().filter(|p| p.used_in_fit);
    let n = used.len() as f64;
    Ok(ChartFit {
        correction,
        model: model.into(),
        patches: used.len(),
        delta_e2000_mean: fitted().map(|p| p.delta_e2000).sum::<f64>() / n,
        delta_e2000_max: fitted().map(|p| p.delta_e2000).fold(0.0, f64::max),
        delta_e2000_before_mean: fitted()
            .map(|p| delta_e2000(p.measured_lab, p.reference_lab))
            .sum::<f64>()
            / n,
        per_patch,
        notes,
    })
}

/// Serializable summary of the colour normalization done for a comparison, for the compare
/// report.
///
/// Why report it: a tone change is only interpretable knowing whether the photos were pinned
/// to each other (`skin`, which hides global change), mapped to absolute colour (`chart`), or
/// left alone (`none`), and how different the raw photos were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColorNormalization {
    /// What was done: `"none"`, `"skin"` (AFTER's pooled skin median pinned to BEFORE's) or
    /// `"chart"` (each photo mapped to the chart's reference colours). When the requested mode
    /// could not be applied this is what was done instead, and `notes` says why.
    pub mode: String,
    /// Correction applied to the BEFORE photo (identity in `none` and `skin` modes).
    pub correction_before: ColorCorrection,
    /// Correction applied to the AFTER photo.
    pub correction_after: ColorCorrection,
    /// BEFORE's raw (uncorrected) skin statistic ([`skin_reference`]) as CIELAB (D65), when
    /// there were enough usable skin pixels.
    pub skin_before_lab: Option<[f64; 3]>,
    /// AFTER's raw (uncorrected) skin statistic as CIELAB (D65).
    pub skin_after_lab: Option<[f64; 3]>,
    /// CIEDE2000 between the two raw skin statistics: how different the photos' skin looked
    /// before any correction (capture differences and real global change together).
    pub skin_delta_e2000_raw: Option<f64>,
    /// The chart fit of the BEFORE photo, in `chart` mode.
    pub chart_before: Option<ChartFit>,
    /// The chart fit of the AFTER photo, in `chart` mode.
    pub chart_after: Option<ChartFit>,
    /// Remarks: fallbacks, unusually large corrections.
    pub notes: Vec<String>,
}

/// Gains outside this range get a note: a correction this large suggests the photos differ by
/// more than exposure and white balance (a different lamp geometry, a different camera
/// profile), which a global correction cannot fully undo.
const LARGE_GAIN: (f64, f64) = (0.5, 2.0);

impl ColorNormalization {
    /// No correction; the raw skin statistics (linear RGB from [`skin_reference`]) are still
    /// reported.
    pub fn none(skin_before: Option<[f64; 3]>, skin_after: Option<[f64; 3]>) -> Self {
        let skin_before_lab = skin_before.map(linear_srgb_to_lab);
        let skin_after_lab = skin_after.map(linear_srgb_to_lab);
        Self {
            mode: "none".into(),
            correction_before: ColorCorrection::identity(),
            correction_after: ColorCorrection::identity(),
            skin_before_lab,
            skin_after_lab,
            skin_delta_e2000_raw: skin_before_lab
                .zip(skin_after_lab)
                .map(|(a, b)| delta_e2000(a, b)),
            chart_before: None,
            chart_after: None,
            notes: Vec::new(),
        }
    }

    /// `skin` mode from the two raw skin statistics (linear RGB from [`skin_reference`]):
    /// AFTER is corrected by [`skin_normalization`] onto BEFORE. If either statistic is missing
    /// (too few usable skin pixels) nothing is corrected, `mode` is `"none"`, and a note says
    /// why.
    pub fn skin(skin_before: Option<[f64; 3]>, skin_after: Option<[f64; 3]>) -> Self {
        let mut n = Self::none(skin_before, skin_after);
        let (Some(before), Some(after)) = (skin_before, skin_after) else {
            let which = match (skin_before, skin_after) {
                (None, None) => "either photo",
                (None, _) => "the BEFORE photo",
                _ => "the AFTER photo",
            };
            n.notes.push(format!(
                "skin normalization not applied: fewer than {MIN_SKIN_PIXELS} usable (unclipped) \
                 skin pixels in {which}"
            ));
            return n;
        };
        n.mode = "skin".into();
        let correction = skin_normalization(after, before);
        n.correction_after = correction;
        n.note_large_gains("AFTER", &correction);
        n
    }

    /// `chart` mode: each photo corrected by its own chart fit. The skin statistics (linear RGB,
    /// uncorrected) are reported for context.
    pub fn chart(
        before: ChartFit,
        after: ChartFit,
        skin_before: Option<[f64; 3]>,
        skin_after: Option<[f64; 3]>,
    ) -> Self {
        let mut n = Self::none(skin_before, skin_after);
        n.mode = "chart".into();
        n.correction_before = before.correction;
        n.correction_after = after.correction;
        for (which, fit) in [("BEFORE", &before), ("AFTER", &after)] {
            n.notes
                .extend(fit.notes.iter().map(|m| format!("{which} chart: {m}")));
            n.note_large_gains(which, &fit.correction);
        }
        n.chart_before = Some(before);
        n.chart_after = Some(after);
        n
    }

    /// Adds a note when a correction scales some channel (its diagonal) outside [`LARGE_GAIN`].
    fn note_large_gains(&mut self, which: &str, c: &ColorCorrection) {
        let diag = [c.matrix[0][0], c.matrix[1][1], c.matrix[2][2]];
        if diag
            .iter()
            .any(|g| !(LARGE_GAIN.0..=LARGE_GAIN.1).contains(g))
        {
            self.notes.push(format!(
                "large correction of the {which} photo (channel gains {:.2}, {:.2}, {:.2}): \
                 the photos may differ by more than exposure and white balance",
                diag[0], diag[1], diag[2]
            ));
        }
    }
}

/// 3×3 matrix times vector.
fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    m.map(|r| r[0] * v[0] + r[1] * v[1] + r[2] * v[2])
}

/// 3×3 matrix product `a · b`.
fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Inverse of a 3×3 matrix by the adjugate, or `None` when (numerically) singular.
fn inv3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let cof =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adj = [
        [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
        [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
        [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
    ];
    let det = m[0][0] * adj[0][0] + m[0][1] * adj[1][0] + m[0][2] * adj[2][0];
    let scale = frobenius(m).powi(3);
    if !det.is_finite() || det.abs() <= scale * 1e-15 {
        return None;
    }
    Some(adj.map(|r| r.map(|v| v / det)))
}

/// Frobenius norm of a 3×3 matrix.
fn frobenius(m: &[[f64; 3]; 3]) -> f64 {
    m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random value in [-1, 1] for pixel (x, y).
    fn noise(x: u32, y: u32, seed: u32) -> f64 {
        let mut h =
            x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791);
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        h ^= h >> 15;
        f64::from(h % 2001) / 1000.0 - 1.0
    }

    fn encode(lin: [f64; 3]) -> [f32; 3] {
        lin.map(|v| linear_to_srgb(v as f32))
    }

    fn decode(p: [f32; 3]) -> [f64; 3] {
        p.map(|v| f64::from(srgb_to_linear(v)))
    }

    /// A camera: matrix on linear light, then clipping to the sensor's range.
    fn camera(img: &Rgb32FImage, m: &[[f64; 3]; 3]) -> Rgb32FImage {
        let mut out = img.clone();
        for p in out.pixels_mut() {
            p.0 = encode(mat_vec(m, decode(p.0)).map(|v| v.clamp(0.0, 1.0)));
        }
        out
    }

    fn scaled(m: [[f64; 3]; 3], k: f64) -> [[f64; 3]; 3] {
        m.map(|r| r.map(|v| v * k))
    }

    /// Sharma, Wu & Dalal (2005), Table 1: all 34 pairs, ΔE00 to 4 decimals.
    const SHARMA: [([f64; 3], [f64; 3], f64); 34] = [
        ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
        ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
        ([50.0, 2.8361, -74.0200], [50.0, 0.0, -82.7485], 3.4412),
        ([50.0, -1.3802, -84.2814], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -1.1848, -84.8006], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -0.9009, -85.5211], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
        ([50.0, -1.0, 2.0], [50.0, 0.0, 0.0], 2.3669),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0009], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0010], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0011], 7.2195),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0012], 7.2195),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0009, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0010, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0011, -2.4900], 4.7461),
        ([50.0, 2.5, 0.0], [50.0, 0.0, -2.5], 4.3065),
        ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
        ([50.0, 2.5, 0.0], [61.0, -5.0, 29.0], 22.8977),
        ([50.0, 2.5, 0.0], [56.0, -27.0, -3.0], 31.9030),
        ([50.0, 2.5, 0.0], [58.0, 24.0, 15.0], 19.4535),
        ([50.0, 2.5, 0.0], [50.0, 3.1736, 0.5854], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 3.2972, 0.0], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 1.8634, 0.5757], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 3.2592, 0.3350], 1.0000),
        (
            [60.2574, -34.0099, 36.2677],
            [60.4626, -34.1751, 39.4387],
            1.2644,
        ),
        (
            [63.0109, -31.0961, -5.8663],
            [62.8187, -29.7946, -4.0864],
            1.2630,
        ),
        (
            [61.2901, 3.7196, -5.3901],
            [61.4292, 2.2480, -4.9620],
            1.8731,
        ),
        (
            [35.0831, -44.1164, 3.7933],
            [35.0232, -40.0716, 1.5901],
            1.8645,
        ),
        (
            [22.7233, 20.0904, -46.6940],
            [23.0331, 14.9730, -42.5619],
            2.0373,
        ),
        (
            [36.4612, 47.8580, 18.3852],
            [36.2715, 50.5065, 21.2231],
            1.4146,
        ),
        (
            [90.8027, -2.0831, 1.4410],
            [91.1528, -1.6435, 0.0447],
            1.4441,
        ),
        (
            [90.9257, -0.5406, -0.9208],
            [88.6381, -0.8985, -0.7239],
            1.5381,
        ),
        (
            [6.7747, -0.2908, -2.4247],
            [5.8714, -0.0985, -2.2286],
            0.6377,
        ),
        (
            [2.0776, 0.0795, -1.1350],
            [0.9033, -0.0636, -0.5514],
            0.9082,
        ),
    ];

    #[test]
    fn ciede2000_matches_sharma_test_data() {
        for (i, (a, b, want)) in SHARMA.iter().enumerate() {
            let got = delta_e2000(*a, *b);
            assert!(
                (got - want).abs() < 1e-4,
                "pair {}: got {got:.6}, expected {want}",
                i + 1
            );
            // The formula is symmetric and zero on identical colours.
            assert!((delta_e2000(*b, *a) - got).abs() < 1e-12, "pair {}", i + 1);
            assert_eq!(delta_e2000(*a, *a), 0.0);
        }
    }

    #[test]
    fn lab_conversions_invert_and_bradford_keeps_neutrals() {
        for rgb in [
            [0.2, 0.5, 0.8],
            [1.0, 1.0, 1.0],
            [0.001, 0.002, 0.0005],
            [0.9, 0.1, 0.05],
        ] {
            let back = lab_to_linear_srgb(linear_srgb_to_lab(rgb));
            for c in 0..3 {
                assert!((back[c] - rgb[c]).abs() < 1e-9, "{rgb:?} → {back:?}");
            }
        }
        // Bradford maps the D50 white to the D65 white, so neutrals keep their Lab exactly.
        for l in [20.0, 50.0, 95.0] {
            let d65 = lab_d50_to_d65([l, 0.0, 0.0]);
            assert!((d65[0] - l).abs() < 1e-9 && d65[1].abs() < 1e-9 && d65[2].abs() < 1e-9);
        }
        // A chromatic colour does move (a D50→D65 adaptation is not the identity).
        let orange = colorchecker_classic_lab_d65("orange").unwrap();
        assert!(delta_e2000(orange, COLORCHECKER_CLASSIC_D50[6].1) > 0.1);
        assert_eq!(
            colorchecker_classic_lab_d65("patch_1"),
            colorchecker_classic_lab_d65("dark_skin")
        );
        assert_eq!(
            colorchecker_classic_lab_d65("patch_24"),
            colorchecker_classic_lab_d65("black_2")
        );
        for bad in ["patch_0", "patch_25", "patch_01", "Dark Skin", "skin"] {
            assert_eq!(colorchecker_classic_lab_d65(bad), None, "{bad}");
        }
    }

    fn test_image() -> Rgb32FImage {
        Rgb32FImage::from_fn(16, 16, |x, y| {
            image::Rgb([
                0.05 + 0.9 * x as f32 / 15.0,
                0.05 + 0.9 * y as f32 / 15.0,
                0.05 + 0.45 * ((x + y) as f32 / 15.0),
            ])
        })
    }

    #[test]
    fn correction_and_its_inverse_return_the_image() {
        let img = test_image();
        let c = ColorCorrection {
            matrix: [[0.9, 0.1, 0.05], [0.05, 0.8, 0.1], [0.02, 0.1, 0.7]],
        };
        let inv = c.inverse().unwrap();
        let back = inv.apply(&c.apply(&img));
        for (p, q) in img.pixels().zip(back.pixels()) {
            for k in 0..3 {
                assert!((p[k] - q[k]).abs() < 1e-5, "{p:?} vs {q:?}");
            }
        }
        let composed = c.then(&inv);
        for (i, row) in composed.matrix.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        // Identity changes nothing; brightening keeps values above 1; negatives clamp to 0.
        let same = ColorCorrection::identity().apply(&img);
        for (p, q) in img.pixels().zip(same.pixels()) {
            for k in 0..3 {
                assert!((p[k] - q[k]).abs() < 1e-6);
            }
        }
        let bright = ColorCorrection::gains([1.5, 1.0, 1.0]).apply(&img);
        assert!(bright.get_pixel(15, 0)[0] > 1.05);
        let negative = ColorCorrection {
            matrix: [[1.0, -2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        }
        .apply(&img);
        assert_eq!(negative.get_pixel(0, 15)[0], 0.0);
        assert!(ColorCorrection::gains([1.0, 0.0, 1.0]).inverse().is_none());
    }

    /// A synthetic face-skin photo: textured skin, a pigmented spot, specular highlights and a
    /// crushed shadow, inside a mask with a 10-pixel border. Returns (linear image, mask).
    // x, y, side: 900 px, 1.9 % of the mask, clear of the highlight grid.
    const SPOT: (u32, u32, u32) = (60, 60, 30);
    fn skin_photo() -> (Rgb32FImage, GrayImage) {
        let (w, h) = (240, 240);
        let base = [0.42, 0.27, 0.19];
        let img = Rgb32FImage::from_fn(w, h, |x, y| {
            let t = 1.0
                + 0.08 * (f64::from(x) / 3.0).sin() * (f64::from(y) / 4.0).cos()
                + 0.04 * noise(x, y, 1);
            let mut lin = base.map(|b| b * t);
            let (sx, sy, s) = SPOT;
            if (sx..sx + s).contains(&x) && (sy..sy + s).contains(&y) {
                let spot = [0.55, 0.6, 0.7];
                lin = [lin[0] * spot[0], lin[1] * spot[1], lin[2] * spot[2]];
            }
            // Specular highlights: clipped in the photo.
            if (x % 50 < 4) && (y % 45 < 4) {
                lin = [1.0; 3];
            }
            // A nostril-like crushed shadow.
            if (150..162).contains(&x) && (180..190).contains(&y) {
                lin = [0.0; 3];
            }
            image::Rgb(encode(lin))
        });
        let mask = GrayImage::from_fn(w, h, |x, y| {
            let inside = (10..w - 10).contains(&x) && (10..h - 10).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        });
        (img, mask)
    }

    /// Mean linear RGB over a square.
    fn mean_linear(img: &Rgb32FImage, x0: u32, y0: u32, side: u32) -> [f64; 3] {
        let mut sum = [0.0; 3];
        for y in y0..y0 + side {
            for x in x0..x0 + side {
                let l = decode(img.get_pixel(x, y).0);
                (0..3).for_each(|c| sum[c] += l[c]);
            }
        }
        sum.map(|s| s / f64::from(side * side))
    }

    #[test]
    fn gains_map_a_skin_reference_exactly() {
        let (img, mask) = skin_photo();
        let from = skin_reference(&img, &mask).unwrap();
        let to = [0.5, 0.3, 0.25];
        let g = skin_normalization(from, to);
        assert!(g.is_diagonal());
        let mapped = g.apply_linear(from);
        for c in 0..3 {
            assert!((mapped[c] - to[c]).abs() < 1e-12);
        }
        // On the image, the median commutes with the gains (f32 round-off only).
        let after = skin_reference(&g.apply(&img), &mask).unwrap();
        for c in 0..3 {
            assert!((after[c] / to[c] - 1.0).abs() < 1e-4, "{after:?} vs {to:?}");
        }
        // A zero statistic does not make a black image.
        assert_eq!(
            skin_normalization([0.0, 0.2, 0.2], [0.3, 0.2, 0.1]).matrix[0][0],
            1.0
        );
    }

    #[test]
    fn skin_reference_ignores_clipped_pixels_and_small_masks() {
        // Half the mask clipped white: the median follows the unclipped half.
        let img = Rgb32FImage::from_fn(40, 40, |x, _| {
            image::Rgb(if x < 20 {
                [1.0; 3]
            } else {
                encode([0.3, 0.2, 0.1])
            })
        });
        let full = GrayImage::from_pixel(40, 40, image::Luma([255]));
        let r = skin_reference(&img, &full).unwrap();
        assert!(
            (r[0] - 0.3).abs() < 1e-5 && (r[2] - 0.1).abs() < 1e-5,
            "{r:?}"
        );
        // Fewer than 100 usable pixels, a mask of another size: no statistic.
        let mut small = GrayImage::new(40, 40);
        for y in 0..9 {
            for x in 20..31 {
                small.put_pixel(x, y, image::Luma([255]));
            }
        }
        assert_eq!(skin_reference(&img, &small), None); // 99 pixels
        assert_eq!(skin_reference(&img, &GrayImage::new(39, 40)), None);
        // A large mask is subsampled, deterministically, and still gives the median.
        let big = Rgb32FImage::from_fn(800, 800, |x, y| {
            image::Rgb(encode([0.3 * (1.0 + 0.05 * noise(x, y, 2)), 0.2, 0.1]))
        });
        let mask = GrayImage::from_pixel(800, 800, image::Luma([255]));
        let a = skin_reference(&big, &mask).unwrap();
        assert_eq!(Some(a), skin_reference(&big, &mask));
        assert!((a[0] / 0.3 - 1.0).abs() < 2e-3, "{a:?}");
    }

    #[test]
    fn skin_normalization_removes_exposure_and_cast_but_keeps_a_spot() {
        let (orig, mask) = skin_photo();
        // +30 % exposure and a warm cast, with the camera clipping at 1.
        let cast = scaled([[1.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.85]], 1.3);
        let shot = camera(&orig, &cast);
        let ref_orig = skin_reference(&orig, &mask).unwrap();
        let ref_shot = skin_reference(&shot, &mask).unwrap();
        let raw = delta_e2000(linear_srgb_to_lab(ref_orig), linear_srgb_to_lab(ref_shot));
        assert!(
            raw > 3.0,
            "the distortion must be visible before correction: {raw}"
        );

        let corrected = skin_normalization(ref_shot, ref_orig).apply(&shot);
        let ref_corr = skin_reference(&corrected, &mask).unwrap();
        let de = delta_e2000(linear_srgb_to_lab(ref_orig), linear_srgb_to_lab(ref_corr));
        assert!(de < 0.5, "ΔE00 after skin normalization {de}");

        // The spot's contrast against nearby skin survives (ratio within 1 %).
        let (sx, sy, s) = SPOT;
        let contrast = |img: &Rgb32FImage| {
            let spot = mean_linear(img, sx + 5, sy + 5, s - 10);
            // Unspotted skin beside it, also clear of highlights (x 110..140, y 60..90).
            let skin = mean_linear(img, sx + s + 20, sy, s);
            [0, 1, 2].map(|c| spot[c] / skin[c])
        };
        let (before, after) = (contrast(&orig), contrast(&corrected));
        for c in 0..3 {
            assert!(before[c] < 0.8, "the spot is darker: {before:?}");
            assert!(
                (after[c] / before[c] - 1.0).abs() < 0.01,
                "{before:?} vs {after:?}"
            );
        }

        let summary = ColorNormalization::skin(Some(ref_orig), Some(ref_shot));
        assert_eq!(summary.mode, "skin");
        assert_eq!(summary.correction_before, ColorCorrection::identity());
        assert!((summary.skin_delta_e2000_raw.unwrap() - raw).abs() < 1e-12);
        let fallback = ColorNormalization::skin(Some(ref_orig), None);
        assert_eq!(fallback.mode, "none");
        assert_eq!(fallback.correction_after, ColorCorrection::identity());
        assert_eq!(fallback.notes.len(), 1);
    }

    const SIDE: u32 = 24;
    const GAP: u32 = 8;

    /// Renders patches (reference Lab, D65) in a 6-column grid on grey, through `camera` with
    /// 1 % multiplicative noise. Returns the photo and the patch rects.
    fn render_chart(labs: &[[f64; 3]], m: &[[f64; 3]; 3]) -> (Rgb32FImage, Vec<[u32; 4]>) {
        let rows = labs.len().div_ceil(6) as u32;
        let rects: Vec<[u32; 4]> = (0..labs.len() as u32)
            .map(|i| {
                let (col, row) = (i % 6, i / 6);
                [
                    GAP + col * (SIDE + GAP),
                    GAP + row * (SIDE + GAP),
                    SIDE,
                    SIDE,
                ]
            })
            .collect();
        let mut img = Rgb32FImage::from_pixel(
            GAP + 6 * (SIDE + GAP),
            GAP + rows * (SIDE + GAP),
            image::Rgb(encode([0.18; 3])),
        );
        for (lab, r) in labs.iter().zip(&rects) {
            // Out-of-gamut scene colours (the cyan patch has linear R < 0) are kept: the
            // camera's primaries are wider than sRGB's, and `camera` clips after its matrix.
            let lin = lab_to_linear_srgb(*lab);
            for y in r[1]..r[1] + r[3] {
                for x in r[0]..r[0] + r[2] {
                    let n = 1.0 + 0.01 * noise(x, y, 3);
                    img.put_pixel(x, y, image::Rgb(encode(lin.map(|v| v * n))));
                }
            }
        }
        (camera(&img, m), rects)
    }

    fn classic_chart(names: &[&str], rects: &[[u32; 4]]) -> ColorChart {
        ColorChart {
            patches: names
                .iter()
                .zip(rects)
                .map(|(n, r)| ChartPatch {
                    name: n.to_string(),
                    rect: *r,
                    lab: colorchecker_classic_lab_d65(n).unwrap(),
                })
                .collect(),
            path: None,
        }
    }

    fn all_names() -> Vec<&'static str> {
        COLORCHECKER_CLASSIC_D50.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn chart_fit_undoes_a_cast_with_crosstalk() {
        let names = all_names();
        let labs: Vec<_> = names
            .iter()
            .map(|n| colorchecker_classic_lab_d65(n).unwrap())
            .collect();
        let distortion = scaled(
            // Enough red cross-talk that the camera records the out-of-gamut cyan positive.
            [[1.10, 0.15, 0.05], [0.05, 0.95, 0.05], [0.01, 0.10, 0.80]],
            0.75,
        );
        let (img, rects) = render_chart(&labs, &distortion);
        let fit = fit_chart(&img, &classic_chart(&names, &rects)).unwrap();
        assert_eq!(fit.model, "matrix");
        assert_eq!(fit.patches, 24);
        assert!(fit.per_patch.iter().all(|p| p.used_in_fit));
        assert!(fit.delta_e2000_mean < 0.5, "mean {}", fit.delta_e2000_mean);
        assert!(fit.delta_e2000_max < 1.5, "max {}", fit.delta_e2000_max);
        assert!(
            fit.delta_e2000_before_mean > 5.0,
            "before {}",
            fit.delta_e2000_before_mean
        );
        // The fitted matrix undoes the distortion (up to the out-of-gamut cyan's pull).
        let product = mat_mul(&fit.correction.matrix, &distortion);
        for (i, row) in product.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = f64::from(u8::from(i == j));
                assert!((v - want).abs() < 0.03, "{product:?}");
            }
        }
        // The report round-trips through JSON.
        let json = serde_json::to_string(&fit).unwrap();
        assert_eq!(serde_json::from_str::<ChartFit>(&json).unwrap(), fit);
    }

    #[test]
    fn six_patch_chart_fits_gains() {
        let names = [
            "dark_skin",
            "light_skin",
            "blue_sky",
            "foliage",
            "neutral_5",
            "neutral_3_5",
        ];
        let labs: Vec<_> = names
            .iter()
            .map(|n| colorchecker_classic_lab_d65(n).unwrap())
            .collect();
        let distortion = scaled([[1.2, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.7]], 1.3);
        let (img, rects) = render_chart(&labs, &distortion);
        let fit = fit_chart(&img, &classic_chart(&names, &rects)).unwrap();
        assert_eq!(fit.model, "gains");
        assert!(fit.correction.is_diagonal());
        assert!(fit.delta_e2000_mean < 0.5, "mean {}", fit.delta_e2000_mean);
        assert!(fit.delta_e2000_before_mean > 5.0);
        assert_eq!(fit.notes.len(), 1, "{:?}", fit.notes);
    }

    #[test]
    fn chart_fit_leaves_out_clipped_patches_and_falls_back_on_greys() {
        // Overexposed: the white patch clips and is left out; the fit is still good.
        let names = all_names();
        let labs: Vec<_> = names
            .iter()
            .map(|n| colorchecker_classic_lab_d65(n).unwrap())
            .collect();
        let (img, rects) = render_chart(&labs, &scaled(ColorCorrection::identity().matrix, 1.4));
        let fit = fit_chart(&img, &classic_chart(&names, &rects)).unwrap();
        let white = fit
            .per_patch
            .iter()
            .find(|p| p.name == "white_9_5")
            .unwrap();
        assert!(!white.used_in_fit);
        assert!(fit.patches < 24 && fit.patches >= MIN_MATRIX_PATCHES);
        assert_eq!(fit.model, "matrix");
        assert!(fit.delta_e2000_mean < 0.5, "mean {}", fit.delta_e2000_mean);

        // Ten greys cannot determine a matrix: gains, with a note.
        let greys: Vec<[f64; 3]> = (0..10)
            .map(|i| [25.0 + 6.0 * f64::from(i), 0.0, 0.0])
            .collect();
        let (img, rects) = render_chart(
            &greys,
            &scaled([[1.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.8]], 0.9),
        );
        let chart = ColorChart {
            patches: greys
                .iter()
                .zip(&rects)
                .enumerate()
                .map(|(i, (lab, r))| ChartPatch {
                    name: format!("g{i}"),
                    rect: *r,
                    lab: *lab,
                })
                .collect(),
            path: None,
        };
        let fit = fit_chart(&img, &chart).unwrap();
        assert_eq!(fit.model, "gains", "{:?}", fit.correction);
        assert!(fit.notes[0].contains("span"), "{:?}", fit.notes);
        assert!(fit.delta_e2000_mean < 0.5);
    }

    fn write(dir: &tempfile::TempDir, name: &str, json: &serde_json::Value) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
        path
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn chart_files_load_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let names = all_names();
        let labs: Vec<_> = names
            .iter()
            .map(|n| colorchecker_classic_lab_d65(n).unwrap())
            .collect();
        let (img, rects) = render_chart(&labs, &scaled(ColorCorrection::identity().matrix, 0.8));

        // Reference by name, mixing snake_case and positional names.
        let patches: Vec<_> = rects
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = if i % 2 == 0 {
                    names[i].to_string()
                } else {
                    format!("patch_{}", i + 1)
                };
                serde_json::json!({"name": name, "rect": r})
            })
            .collect();
        let path = write(
            &dir,
            "classic.json",
            &serde_json::json!({"reference": "colorchecker-classic-24", "patches": patches}),
        );
        let chart = load_chart(&path).unwrap();
        assert_eq!(chart.path.as_deref(), Some(path.as_path()));
        assert_eq!(chart.patches.len(), 24);
        for (p, lab) in chart.patches.iter().zip(&labs) {
            assert_eq!(&p.lab, lab, "{}", p.name);
        }
        assert_eq!(chart.patches[1].name, "patch_2");
        let fit = fit_chart(&img, &chart).unwrap();
        assert!(fit.delta_e2000_mean < 0.5);

        // Explicit values round-trip.
        let explicit: Vec<_> = (0..4)
            .map(|i| serde_json::json!({"name": format!("p{i}"), "rect": rects[i], "lab": labs[i]}))
            .collect();
        let path = write(
            &dir,
            "explicit.json",
            &serde_json::json!({"patches": explicit}),
        );
        let chart = load_chart(&path).unwrap();
        for (i, p) in chart.patches.iter().enumerate() {
            assert_eq!(
                (p.name.as_str(), p.rect, p.lab),
                (format!("p{i}").as_str(), rects[i], labs[i])
            );
        }

        // Refusals name the file and say what was expected.
        let refused = |name: &str, json: serde_json::Value, expect: &str| {
            let path = write(&dir, name, &json);
            let msg = message(load_chart(&path).unwrap_err());
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(expect), "{msg}");
        };
        let some = |n: usize| {
            (0..n)
                .map(|i| serde_json::json!({"name": names[i], "rect": rects[i]}))
                .collect::<Vec<_>>()
        };
        refused(
            "three.json",
            serde_json::json!({"reference": "colorchecker-classic-24", "patches": some(3)}),
            "has 3 patch(es)",
        );
        refused(
            "sg.json",
            serde_json::json!({"reference": "colorchecker-sg", "patches": some(4)}),
            "unknown reference",
        );
        let mut unknown = some(4);
        unknown[2] = serde_json::json!({"name": "skin_tone", "rect": rects[2]});
        refused(
            "unknown.json",
            serde_json::json!({"reference": "colorchecker-classic-24", "patches": unknown}),
            "\"skin_tone\" is not a colorchecker-classic-24 patch",
        );
        refused(
            "nolab.json",
            serde_json::json!({"patches": some(4)}),
            "has no \"lab\"",
        );
        let mut empty = some(4);
        empty[0] = serde_json::json!({"name": "dark_skin", "rect": [0, 0, 0, 5]});
        refused(
            "empty.json",
            serde_json::json!({"reference": "colorchecker-classic-24", "patches": empty}),
            "empty rect",
        );
        refused(
            "typo.json",
            serde_json::json!({"referense": "colorchecker-classic-24", "patches": some(4)}),
            "not a colour-chart file",
        );
        assert!(matches!(
            load_chart(&dir.path().join("missing.json")),
            Err(Error::Read { .. })
        ));

        // A rect outside the photo is refused when fitting, naming the file.
        let mut outside = some(4);
        outside[3] = serde_json::json!({"name": names[3], "rect": [img.width() - 10, 0, 20, 20]});
        let path = write(
            &dir,
            "outside.json",
            &serde_json::json!({"reference": "colorchecker-classic-24", "patches": outside}),
        );
        let chart = load_chart(&path).unwrap();
        let msg = message(fit_chart(&img, &chart).unwrap_err());
        assert!(
            msg.contains("not inside") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
    }
}

//! Registration of a follow-up (AFTER) photo to a baseline (BEFORE) photo, so that each facial
//! region covers the same skin in both sessions.
//!
//! Why: a change in a region's numbers means something only if the region covers the same skin.
//! Between sessions the head moves, the camera distance changes and the exposure differs; a
//! region boundary off by a few millimetres moves whole lesions in or out of a region.
//!
//! How, and why that way:
//!
//! * **Geometry: a 2-D similarity** (scale, rotation, translation — [`Similarity`]). Clinical
//!   follow-up photos are taken frontally from roughly the same place; what is left is mostly an
//!   in-plane rotation, a distance (scale) change and a shift. Richer models (affine, homography,
//!   elastic) would also "explain" expression changes and swelling, hiding exactly the non-rigid
//!   change that should be reported as misregistration. The transform maps AFTER pixel
//!   coordinates to BEFORE pixel coordinates.
//! * **Measure natively, warp masks.** The region masks are defined in BEFORE's frame and are
//!   mapped into AFTER's frame ([`warp_mask_to_after`]); AFTER's pixels are never resampled for
//!   measurement because interpolation blurs pores and fine pigment. Warped AFTER pixels are used
//!   only for the dense refinement here and for overlay pictures ([`warp_image`]).
//! * **Initial fit from landmarks** by weighted least squares in closed form (S. Umeyama,
//!   "Least-squares estimation of transformation parameters between two point patterns", IEEE
//!   PAMI 13(4), 1991; in 2-D with rotations only it reduces to two sums, see
//!   [`fit_similarity`]), made robust to expression change and landmark failures by a
//!   least-median-of-squares start and Tukey-biweight reweighting ([`fit_similarity_robust`]).
//! * **Dense refinement by phase correlation** (C. D. Kuglin and D. C. Hines, "The phase
//!   correlation image alignment method", Proc. IEEE Int. Conf. Cybernetics and Society, 1975):
//!   the normalized cross-power spectrum keeps only phase, so it ignores exposure and contrast
//!   differences, and it is done on log-luminance, where an exposure change is an additive
//!   constant. Landmarks jitter by about a pixel; dozens of textured skin patches each give a shift with
//!   a few hundredths of a pixel precision, and a robust similarity fit to their shifts
//!   ([`refine`]) is far more precise than the landmarks. The patch shifts that remain after
//!   the fit are the registration residual reported to the user.
//! * **Sub-pixel peak.** The cross-power spectrum is weighted by a Gaussian before the inverse
//!   transform, so the correlation peak is a sampled Gaussian of known width and a 3-point fit of
//!   its logarithm locates it exactly (the Gaussian-fit estimator of the sub-pixel literature;
//!   the weighting also discards the highest frequencies where noise and JPEG artefacts dominate
//!   the phase; compare H. Foroosh, J. B. Zerubia and M. Berthod, "Extension of phase correlation
//!   to subpixel registration", IEEE Trans. Image Process. 11(3), 2002, who fit the unweighted,
//!   sinc-shaped peak instead).
//! * **Without landmarks** (close-ups, phantoms) a coarse search over rotation and scale of
//!   whole-frame phase correlations replaces the landmark fit ([`register_without_landmarks`]).
//!
//! [`register_pair`] chains it all and returns an [`Alignment`] that says whether the result can
//! be trusted, against documented limits. All kernels are serial: registration runs once per
//! photo pair and the batch layer parallelizes across pairs.

use std::sync::Arc;

use image::{GrayImage, Luma, Rgb, Rgb32FImage};
use ndarray::ArrayView2;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::model::{linear_lut, lut_linear};
use crate::stats::median;

/// Working scale of the dense refinement, pixels per millimetre. Photos are box-downsampled by
/// the integer factor nearest to `px_per_mm / ANALYSIS_PX_PER_MM`: at ~4 px/mm a 64-px patch
/// spans 16 mm of skin (wrinkles, pores clusters, pigment spots, hair: enough texture) and a
/// 24 MP photo shrinks ~9×, which keeps the refinement fast.
pub const ANALYSIS_PX_PER_MM: f64 = 4.0;
/// Side of the square correlation patches at the analysis scale, pixels (32 when the region of
/// interest is smaller). Large enough to hold texture and tolerate ±16 px of initial error.
pub const PATCH_PX: usize = 64;
/// A patch is used only if at least this fraction of it lies inside the region of interest, so
/// that the shifts describe the skin being measured, not hair or background.
pub const MIN_PATCH_ROI_FRACTION: f64 = 0.6;
/// Minimum standard deviation of a BEFORE patch's log-luminance (natural-log units, ≈ relative
/// contrast): flat patches (blank background, blown highlights) carry no position information.
pub const MIN_PATCH_STD: f64 = 0.01;
/// Minimum correlation peak height (0..1) for a patch shift to be used. For unrelated 64×64
/// content the highest value of the weighted correlation surface is itself a random variable:
/// median ≈ 0.15, 99th percentile ≈ 0.25, maximum 0.28 over 900 trials of synthetic textures
/// (the Hann window correlates neighbouring frequencies, which roughly doubles the noise floor
/// of independent phases). The same skin after a small rotation, rescale and exposure change
/// gives 0.85–0.99 (every face patch of the fixture portrait passes).
pub const MIN_PATCH_PEAK: f64 = 0.3;
/// The dense refinement stops when the correction moves no point of the region of interest's
/// bounding box by more than this many full-resolution pixels.
pub const CONVERGED_PX: f64 = 0.05;
/// At most this many patch-correlation rounds in [`refine`].
pub const MAX_ITERATIONS: usize = 5;
/// At most this many patches are correlated per round (the grid stride grows beyond it), which
/// bounds the time on very large regions; a few hundred shifts already pin a similarity down to
/// hundredths of a pixel.
pub const MAX_PATCHES: usize = 400;
/// Width (standard deviation, analysis pixels) of the Gaussian correlation peak produced by the
/// spectral weighting of the cross-power spectrum.
pub const PEAK_SIGMA_PX: f64 = 1.0;
/// Added to linear luminance (0..1) before the logarithm so that sensor noise in deep shadows
/// (hair, nostrils) does not dominate; ≈ sRGB 12/255.
pub const LOG_EPSILON: f32 = 0.004;

/// Largest acceptable 90th percentile of the registration residual, mm on BEFORE's skin. A region
/// boundary off by ≤ 1 mm changes the area of a cheek or forehead region (≈ 20–40 cm²) by a few
/// percent only, well below the changes a treatment is expected to produce.
pub const MAX_RESIDUAL_P90_MM: f64 = 1.0;
/// Minimum number of matched patches for the alignment to be trusted: with fewer, one bad patch
/// can swing a 4-parameter fit and the residual percentiles mean little.
pub const MIN_PATCHES: usize = 6;
/// Minimum fraction of the tried patches that must match: a guard against registering different
/// subjects or sites, whose few chance matches (edges of brows, lips) could otherwise fit a
/// similarity with small residuals. Measured on London-set portraits: a rotated, rescaled,
/// brighter copy matches 100% of face patches, the same subject neutral vs smiling 26–29%,
/// different subjects 0–1%. (Expression change is caught by [`MAX_LANDMARK_RMS_MM`] when
/// landmarks are available.)
pub const MIN_MATCHED_FRACTION: f64 = 0.25;
/// Largest accepted RMS residual of the robust landmark fit, mm on BEFORE's skin. Landmark
/// jitter alone gives ≈ 0.25 mm (the fixture portrait against a rotated, rescaled, brighter copy
/// of itself); the same subject neutral vs smiling gives 1.9–2.3 mm, different subjects 2.6–4 mm.
/// Above this limit the face changed shape between the photos (expression, or a pose difference
/// of several degrees), which no similarity can register: patch residuals alone miss it because
/// deformed skin simply stops matching.
pub const MAX_LANDMARK_RMS_MM: f64 = 1.5;
/// Accepted range of the AFTER→BEFORE scale factor. Outside it the sessions were framed so
/// differently (or the match is wrong) that native-resolution measurements are not comparable.
pub const SCALE_RANGE: (f64, f64) = (0.67, 1.5);
/// Largest accepted in-plane rotation between the photos, degrees. Standardized clinical photos
/// differ by a few degrees; beyond this the head or camera pose differs too much (out-of-plane
/// rotation usually comes with it, which a similarity cannot model).
pub const MAX_ABS_ROTATION_DEG: f64 = 20.0;
/// Largest accepted disagreement, mm on BEFORE's skin anywhere in the region of interest,
/// between the landmark fit and the dense refinement. Landmarks jitter by ~0.25 mm RMS; a larger
/// disagreement means the refinement locked onto something else (repeated texture, hair).
pub const MAX_LANDMARK_DISAGREEMENT_MM: f64 = 3.0;

/// Rotations tried by the coarse search of [`register_without_landmarks`], degrees.
const COARSE_MAX_ROTATION_DEG: i32 = 10;
/// Relative scales tried by the coarse search (around the ratio of the photo sizes).
const COARSE_SCALES: [f64; 5] = [0.9, 0.95, 1.0, 1.05, 1.1];
/// Longest side of the region searched in the first (1° steps) and second (0.1° steps) coarse
/// stage, pixels: small enough to be fast, large enough that a 1° error moves edges < 1 px.
const COARSE_SIDES: (f64, f64) = (96.0, 192.0);
/// Smallest crop side (pixels) on which a coarse correlation is attempted.
const MIN_COARSE_SIDE: usize = 16;
/// Fewer matched patches than this and no correction is fitted at all.
const MIN_FIT_PATCHES: usize = 3;
/// A warped AFTER patch must have at least this fraction of its pixels inside AFTER.
const MIN_PATCH_VALID_FRACTION: f64 = 0.95;
/// Tukey biweight tuning constant (95% efficiency under Gaussian noise).
const TUKEY_C: f64 = 4.685;
/// Median of the length of a 2-D isotropic Gaussian residual, in units of its per-axis sigma
/// (Rayleigh median √(2 ln 2)).
const RAYLEIGH_MEDIAN: f64 = 1.177_410_022_515_474_7;
/// Number of point pairs tried by the least-median-of-squares start of the robust fit.
const LMEDS_PAIRS: usize = 300;

// ---------------------------------------------------------------------------------------------
// Similarity transforms
// ---------------------------------------------------------------------------------------------

/// 2-D similarity `x_b = s·R(θ)·x_a + t`, stored as `x' = a·x − b·y + tx`, `y' = b·x + a·y + ty`
/// (`a = s·cos θ`, `b = s·sin θ`). The linear form makes fitting, composing and inverting exact
/// closed-form operations. Coordinates are pixel centres with y pointing down, so a positive
/// angle turns clockwise on screen.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Similarity {
    /// `s·cos θ`.
    pub a: f64,
    /// `s·sin θ`.
    pub b: f64,
    /// Translation along x, pixels of the destination frame.
    pub tx: f64,
    /// Translation along y, pixels of the destination frame.
    pub ty: f64,
}

impl Similarity {
    /// The transform that changes nothing.
    pub fn identity() -> Self {
        Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        }
    }

    /// From a scale factor, a rotation in degrees and a translation in pixels.
    pub fn from_parts(scale: f64, rotation_deg: f64, tx: f64, ty: f64) -> Self {
        let r = rotation_deg.to_radians();
        Similarity {
            a: scale * r.cos(),
            b: scale * r.sin(),
            tx,
            ty,
        }
    }

    /// A pure translation.
    pub fn translation(tx: f64, ty: f64) -> Self {
        Similarity {
            a: 1.0,
            b: 0.0,
            tx,
            ty,
        }
    }

    /// Scale factor `s` (destination pixels per source pixel).
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Rotation angle θ, degrees in (−180, 180].
    pub fn rotation_deg(&self) -> f64 {
        self.b.atan2(self.a).to_degrees()
    }

    /// Maps one point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform (non-finite when the scale is 0).
    pub fn inverse(&self) -> Similarity {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// The composition "apply `self`, then `next`": `x ↦ next(self(x))`.
    pub fn then(&self, next: &Similarity) -> Similarity {
        let [tx, ty] = next.apply([self.tx, self.ty]);
        Similarity {
            a: next.a * self.a - next.b * self.b,
            b: next.a * self.b + next.b * self.a,
            tx,
            ty,
        }
    }

    /// True when all four parameters are finite and the scale is positive (invertible).
    pub fn is_valid(&self) -> bool {
        [self.a, self.b, self.tx, self.ty]
            .iter()
            .all(|v| v.is_finite())
            && self.a * self.a + self.b * self.b > 0.0
    }
}

fn dist(p: [f64; 2], q: [f64; 2]) -> f64 {
    (p[0] - q[0]).hypot(p[1] - q[1])
}

/// Weighted least-squares similarity mapping `src` → `dst` in closed form (Umeyama 1991; no
/// reflection, since a mirrored face is never a valid follow-up).
///
/// With centred points `p`, `q` and weights `w`, the optimum is `a = Σw(p·q)/Σw|p|²`,
/// `b = Σw(p×q)/Σw|p|²` — Umeyama's rotation and scale written for 2-D rotations. Returns `None`
/// for fewer than two points (with positive weight), mismatched lengths, negative or non-finite
/// weights or coordinates, zero spread of `src`, or a zero fitted scale.
pub fn fit_similarity(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    weights: Option<&[f64]>,
) -> Option<Similarity> {
    let n = src.len();
    if n < 2 || dst.len() != n || weights.is_some_and(|w| w.len() != n) {
        return None;
    }
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let (mut sw, mut count) = (0.0, 0usize);
    let (mut ms, mut md) = ([0.0; 2], [0.0; 2]);
    for i in 0..n {
        let wi = w(i);
        let finite = src[i].iter().chain(&dst[i]).all(|v| v.is_finite());
        if !(wi >= 0.0 && wi.is_finite() && finite) {
            return None;
        }
        if wi > 0.0 {
            count += 1;
            sw += wi;
            for c in 0..2 {
                ms[c] += wi * src[i][c];
                md[c] += wi * dst[i][c];
            }
        }
    }
    if count < 2 {
        return None;
    }
    for c in 0..2 {
        ms[c] /= sw;
        md[c] /= sw;
    }
    let (mut sxx, mut sa, mut sb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let wi = w(i);
        if wi == 0.0 {
            continue;
        }
        let (px, py) = (src[i][0] - ms[0], src[i][1] - ms[1]);
        let (qx, qy) = (dst[i][0] - md[0], dst[i][1] - md[1]);
        sxx += wi * (px * px + py * py);
        sa += wi * (px * qx + py * qy);
        sb += wi * (px * qy - py * qx);
    }
    // Zero spread relative to the coordinates' magnitude (all source points coincide).
    let magnitude = 1.0 + ms[0] * ms[0] + ms[1] * ms[1];
    let spread = sxx / sw > 1e-20 * magnitude; // false for NaN too
    if !spread {
        return None;
    }
    let (a, b) = (sa / sxx, sb / sxx);
    let t = Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    };
    t.is_valid().then_some(t)
}

/// Result of [`fit_similarity_robust`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustFit {
    /// The fitted transform, `src` → `dst`.
    pub transform: Similarity,
    /// Root-mean-square residual over the inliers, in `dst` units (pixels).
    pub rms_px: f64,
    /// Number of points kept as inliers (residual below the Tukey cut-off).
    pub inliers: usize,
    /// Number of points given.
    pub total: usize,
}

/// Robust similarity fit `src` → `dst`: a least-median-of-squares start over point pairs
/// (P. J. Rousseeuw, "Least median of squares regression", JASA 79, 1984; tolerates up to half
/// the points being wrong), then iteratively reweighted least squares with Tukey's biweight at
/// `4.685·σ`, σ estimated from the median residual length. Landmarks on a moved mouth or a
/// failed eyelid, and patches on a changed lesion, get weight 0 instead of dragging the fit.
/// Returns `None` under the same conditions as [`fit_similarity`].
pub fn fit_similarity_robust(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<RobustFit> {
    robust_fit(src, dst, None)
}

fn residuals(t: &Similarity, src: &[[f64; 2]], dst: &[[f64; 2]]) -> Vec<f64> {
    src.iter()
        .zip(dst)
        .map(|(&s, &d)| dist(t.apply(s), d))
        .collect()
}

/// Linear-interpolated quantile of unsorted values (NaN when empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Weighted robust fit; `prior` weights (e.g. correlation peaks) multiply the Tukey weights.
fn robust_fit(src: &[[f64; 2]], dst: &[[f64; 2]], prior: Option<&[f64]>) -> Option<RobustFit> {
    let n = src.len();
    let prior: Vec<f64> = prior.map_or_else(|| vec![1.0; n], <[f64]>::to_vec);
    let mut best = fit_similarity(src, dst, Some(&prior))?;
    let sq_median = |t: &Similarity| {
        median(
            residuals(t, src, dst)
                .into_iter()
                .zip(&prior)
                .filter(|(_, w)| **w > 0.0)
                .map(|(r, _)| r * r),
        )
    };
    let mut best_cost = sq_median(&best);
    if n >= 4 {
        let all_pairs = n * (n - 1) / 2 <= LMEDS_PAIRS;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |m: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % m
        };
        let mut pairs = Vec::with_capacity(LMEDS_PAIRS);
        if all_pairs {
            for i in 0..n {
                for j in i + 1..n {
                    pairs.push((i, j));
                }
            }
        } else {
            while pairs.len() < LMEDS_PAIRS {
                let (i, j) = (next(n), next(n));
                if i != j {
                    pairs.push((i, j));
                }
            }
        }
        for (i, j) in pairs {
            if prior[i] <= 0.0 || prior[j] <= 0.0 {
                continue;
            }
            if let Some(t) = fit_similarity(&[src[i], src[j]], &[dst[i], dst[j]], None) {
                let cost = sq_median(&t);
                if cost < best_cost {
                    best_cost = cost;
                    best = t;
                }
            }
        }
    }

    // Scale of the problem, for a numerical floor on σ (exact data has σ ≈ 0).
    let (mx, my) = (
        dst.iter().map(|p| p[0]).sum::<f64>() / n as f64,
        dst.iter().map(|p| p[1]).sum::<f64>() / n as f64,
    );
    let spread = (dst
        .iter()
        .map(|p| (p[0] - mx).powi(2) + (p[1] - my).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    let sigma_floor = 1e-9 * (1.0 + spread + mx.abs() + my.abs());
    let cutoff = |r: &[f64]| {
        let kept: Vec<f64> = r
            .iter()
            .zip(&prior)
            .filter(|(_, w)| **w > 0.0)
            .map(|(r, _)| *r)
            .collect();
        TUKEY_C * (median(kept) / RAYLEIGH_MEDIAN).max(sigma_floor)
    };
    let mut t = best;
    for _ in 0..20 {
        let r = residuals(&t, src, dst);
        let c = cutoff(&r);
        let w: Vec<f64> = r
            .iter()
            .zip(&prior)
            .map(|(&ri, &pi)| {
                if ri < c {
                    pi * (1.0 - (ri / c).powi(2)).powi(2)
                } else {
                    0.0
                }
            })
            .collect();
        let Some(next) = fit_similarity(src, dst, Some(&w)) else {
            break;
        };
        let change = src
            .iter()
            .map(|&p| dist(next.apply(p), t.apply(p)))
            .fold(0.0, f64::max);
        t = next;
        if change <= sigma_floor {
            break;
        }
    }
    let r = residuals(&t, src, dst);
    let c = cutoff(&r);
    let inl: Vec<f64> = r
        .iter()
        .zip(&prior)
        .filter(|(ri, wi)| **ri < c && **wi > 0.0)
        .map(|(ri, _)| *ri)
        .collect();
    let rms_px = if inl.is_empty() {
        f64::NAN
    } else {
        (inl.iter().map(|r| r * r).sum::<f64>() / inl.len() as f64).sqrt()
    };
    Some(RobustFit {
        transform: t,
        rms_px,
        inliers: inl.len(),
        total: n,
    })
}

// ---------------------------------------------------------------------------------------------
// Phase correlation
// ---------------------------------------------------------------------------------------------

/// Result of [`phase_correlate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseShift {
    /// Shift along x, pixels: `moved(x, y) ≈ reference(x − dx, y − dy)`.
    pub dx: f64,
    /// Shift along y, pixels.
    pub dy: f64,
    /// Height of the correlation peak, 0..1: ≈ 1 for identical content, ≈ 0.1–0.25 for
    /// unrelated content (see [`MIN_PATCH_PEAK`]), 0 for flat input.
    pub peak: f64,
}

impl PhaseShift {
    const NONE: PhaseShift = PhaseShift {
        dx: 0.0,
        dy: 0.0,
        peak: 0.0,
    };
}

/// Phase correlator for one patch size: FFT plans, window, spectral weight and buffers.
/// Spectra are kept in transposed (column-major) order to save two transposes per correlation.
struct Correlator {
    w: usize,
    h: usize,
    row_fwd: Arc<dyn Fft<f32>>,
    row_inv: Arc<dyn Fft<f32>>,
    col_fwd: Arc<dyn Fft<f32>>,
    col_inv: Arc<dyn Fft<f32>>,
    /// Separable Hann window, row-major: suppresses the wrap-around edges of the periodic DFT.
    window: Vec<f32>,
    window_sum: f32,
    /// Gaussian spectral weight (transposed order), so the peak is a Gaussian of σ = [`PEAK_SIGMA_PX`].
    weight: Vec<f32>,
    weight_sum: f32,
    buf: Vec<Complex32>,
    tbuf: Vec<Complex32>,
    scratch: Vec<Complex32>,
    surface: Vec<f32>,
}

fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as f64 + 0.5) / n as f64;
            (0.5 - 0.5 * (2.0 * std::f64::consts::PI * x).cos()) as f32
        })
        .collect()
}

fn signed_freq(k: usize, n: usize) -> f64 {
    if k <= n / 2 {
        k as f64
    } else {
        k as f64 - n as f64
    }
}

impl Correlator {
    fn new(h: usize, w: usize) -> Correlator {
        let mut planner = FftPlanner::<f32>::new();
        let row_fwd = planner.plan_fft_forward(w);
        let row_inv = planner.plan_fft_inverse(w);
        let col_fwd = planner.plan_fft_forward(h);
        let col_inv = planner.plan_fft_inverse(h);
        let scratch_len = [&row_fwd, &row_inv, &col_fwd, &col_inv]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        let (hx, hy) = (hann(w), hann(h));
        let window: Vec<f32> = (0..h)
            .flat_map(|y| {
                let wy = hy[y];
                hx.iter().map(move |&wx| wx * wy)
            })
            .collect();
        let window_sum = window.iter().sum();
        let c = 2.0 * std::f64::consts::PI.powi(2) * PEAK_SIGMA_PX * PEAK_SIGMA_PX;
        let mut weight = vec![0f32; w * h];
        for kx in 0..w {
            let fx = signed_freq(kx, w) / w as f64;
            for ky in 0..h {
                let fy = signed_freq(ky, h) / h as f64;
                weight[kx * h + ky] = (-c * (fx * fx + fy * fy)).exp() as f32;
            }
        }
        let weight_sum = weight.iter().sum();
        Correlator {
            w,
            h,
            row_fwd,
            row_inv,
            col_fwd,
            col_inv,
            window,
            window_sum,
            weight,
            weight_sum,
            buf: vec![Complex32::new(0.0, 0.0); w * h],
            tbuf: vec![Complex32::new(0.0, 0.0); w * h],
            scratch: vec![Complex32::new(0.0, 0.0); scratch_len],
            surface: vec![0.0; w * h],
        }
    }

    /// Windowed, window-weighted-mean-subtracted data → `tbuf` spectrum (transposed order).
    /// Returns false when the data is flat (no position information).
    fn forward(&mut self, data: &[f32]) -> bool {
        let mean = data
            .iter()
            .zip(&self.window)
            .map(|(v, w)| v * w)
            .sum::<f32>()
            / self.window_sum;
        let mut energy = 0f32;
        for ((b, &v), &win) in self.buf.iter_mut().zip(data).zip(&self.window) {
            let x = (v - mean) * win;
            energy += x * x;
            *b = Complex32::new(x, 0.0);
        }
        // Flat (or non-finite) data: the comparison is false for NaN too.
        let textured = energy > 1e-10 * data.len() as f32;
        if !textured {
            return false;
        }
        self.row_fwd
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        transpose(&self.buf, &mut self.tbuf, self.h, self.w);
        self.col_fwd
            .process_with_scratch(&mut self.tbuf, &mut self.scratch);
        true
    }

    /// The spectrum of a reference patch, or `None` when it is flat.
    fn spectrum(&mut self, data: &[f32]) -> Option<Vec<Complex32>> {
        self.forward(data).then(|| self.tbuf.clone())
    }

    /// Correlates `moved` (row-major, h×w) against a reference spectrum.
    fn correlate(&mut self, reference: &[Complex32], moved: &[f32]) -> PhaseShift {
        if !self.forward(moved) {
            return PhaseShift::NONE;
        }
        for ((m, r), &wt) in self.tbuf.iter_mut().zip(reference).zip(&self.weight) {
            let c = *m * r.conj();
            let mag = c.norm();
            *m = if mag > 1e-30 {
                c * (wt / mag)
            } else {
                Complex32::new(0.0, 0.0)
            };
        }
        // After mean subtraction the DC bin holds only rounding noise, yet it has the largest
        // weight; a pure shift has phase 0 there, so give it that value.
        self.tbuf[0] = Complex32::new(self.weight[0], 0.0);
        self.col_inv
            .process_with_scratch(&mut self.tbuf, &mut self.scratch);
        transpose(&self.tbuf, &mut self.buf, self.w, self.h);
        self.row_inv
            .process_with_scratch(&mut self.buf, &mut self.scratch);
        let norm = 1.0 / self.weight_sum;
        for (s, b) in self.surface.iter_mut().zip(&self.buf) {
            *s = b.re * norm;
        }
        self.peak()
    }

    /// Sub-pixel maximum of `surface` by a 3-point Gaussian (log-parabola) fit per axis, exact for
    /// the Gaussian-shaped peak the spectral weight produces.
    fn peak(&self) -> PhaseShift {
        let (w, h) = (self.w, self.h);
        let Some((imax, &v0)) = self
            .surface
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
        else {
            return PhaseShift::NONE;
        };
        if v0.is_nan() || v0 <= 0.0 {
            return PhaseShift::NONE;
        }
        let (px, py) = (imax % w, imax / w);
        let at = |x: usize, y: usize| f64::from(self.surface[y * w + x]);
        let (ox, gx) = if w >= 3 {
            fit3(
                at((px + w - 1) % w, py),
                f64::from(v0),
                at((px + 1) % w, py),
            )
        } else {
            (0.0, 1.0)
        };
        let (oy, gy) = if h >= 3 {
            fit3(
                at(px, (py + h - 1) % h),
                f64::from(v0),
                at(px, (py + 1) % h),
            )
        } else {
            (0.0, 1.0)
        };
        PhaseShift {
            dx: signed_freq(px, w) + ox,
            dy: signed_freq(py, h) + oy,
            peak: (f64::from(v0) * gx * gy).clamp(0.0, 1.0),
        }
    }
}

/// Offset of the maximum through three equally spaced samples (`m`, `z`, `p` at −1, 0, 1) and
/// the factor by which the fitted maximum exceeds `z`. Fits a parabola to the logarithms when
/// all three are positive (a Gaussian), else to the values.
fn fit3(m: f64, z: f64, p: f64) -> (f64, f64) {
    if m > 0.0 && p > 0.0 {
        let (lm, lz, lp) = (m.ln(), z.ln(), p.ln());
        let den = lm - 2.0 * lz + lp;
        if den < 0.0 {
            let off = (0.5 * (lm - lp) / den).clamp(-1.0, 1.0);
            let gain = -(lp - lm).powi(2) / (8.0 * den);
            return (off, gain.min(1.0).exp());
        }
        return (0.0, 1.0);
    }
    let den = m - 2.0 * z + p;
    if den < 0.0 {
        let off = (0.5 * (m - p) / den).clamp(-1.0, 1.0);
        let top = z - (p - m).powi(2) / (8.0 * den);
        return (off, top / z);
    }
    (0.0, 1.0)
}

fn transpose(src: &[Complex32], dst: &mut [Complex32], rows: usize, cols: usize) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// Sub-pixel translation between two equally sized single-channel patches by phase correlation
/// (Kuglin & Hines 1975): both are mean-subtracted and Hann-windowed, the cross-power spectrum is
/// normalized to unit magnitude (only phase remains, so brightness and contrast do not matter),
/// weighted by a Gaussian and transformed back; the peak is located to sub-pixel precision by a
/// Gaussian fit. Returns `(dx, dy)` such that `moved(x, y) ≈ reference(x − dx, y − dy)` and the
/// peak height as a confidence. Shifts are found within ± half the patch size; the Hann window
/// biases large shifts towards zero (≈ 0.04 px at a shift of 5% of the patch side, ≈ 0.1 px at 10%),
/// which iterating (as [`refine`] does) removes. Different shapes or empty patches give a zero
/// shift with peak 0.
pub fn phase_correlate(reference: &ArrayView2<f32>, moved: &ArrayView2<f32>) -> PhaseShift {
    let (h, w) = reference.dim();
    if moved.dim() != (h, w) || h == 0 || w == 0 {
        return PhaseShift::NONE;
    }
    let r: Vec<f32> = reference.iter().copied().collect();
    let m: Vec<f32> = moved.iter().copied().collect();
    if r.iter().chain(&m).any(|v| !v.is_finite()) {
        return PhaseShift::NONE;
    }
    let mut corr = Correlator::new(h, w);
    match corr.spectrum(&r) {
        Some(spec) => corr.correlate(&spec, &m),
        None => PhaseShift::NONE,
    }
}

// ---------------------------------------------------------------------------------------------
// Images: log-luminance planes and warps
// ---------------------------------------------------------------------------------------------

/// A single-channel f32 image, row-major.
#[derive(Debug, Clone)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plane {
    /// Bilinear sample at pixel-centre coordinates; `None` outside `[−0.5, w − 0.5]`.
    #[inline]
    fn sample(&self, x: f64, y: f64) -> Option<f32> {
        let (wf, hf) = (self.w as f64, self.h as f64);
        if self.w == 0 || self.h == 0 || !(x >= -0.5 && y >= -0.5 && x <= wf - 0.5 && y <= hf - 0.5)
        {
            return None;
        }
        let x = x.clamp(0.0, wf - 1.0);
        let y = y.clamp(0.0, hf - 1.0);
        let (x0, y0) = (x as usize, y as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
        let r0 = &self.data[y0 * self.w..];
        let r1 = &self.data[y1 * self.w..];
        let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
        let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
        Some(top + (bottom - top) * fy)
    }

    /// Box-average downsampling by an integer factor (the remainder at the edges is dropped).
    fn downsample(&self, m: usize) -> Plane {
        if m <= 1 {
            return self.clone();
        }
        let (w, h) = (self.w / m, self.h / m);
        let mut data = vec![0f32; w * h];
        for y in 0..h {
            let out = &mut data[y * w..(y + 1) * w];
            for dy in 0..m {
                let row = &self.data[(y * m + dy) * self.w..];
                for (x, o) in out.iter_mut().enumerate() {
                    *o += row[x * m..(x + 1) * m].iter().sum::<f32>();
                }
            }
            let norm = 1.0 / (m * m) as f32;
            out.iter_mut().for_each(|o| *o *= norm);
        }
        Plane { w, h, data }
    }

    /// Tight bounding box `(x0, y0, x1, y1)` (exclusive ends) of the positive pixels.
    fn bbox(&self) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for y in 0..self.h {
            let row = &self.data[y * self.w..(y + 1) * self.w];
            let Some(first) = row.iter().position(|&v| v > 0.0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v > 0.0).unwrap_or(first);
            b = Some(match b {
                None => (first, y, last + 1, y + 1),
                Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last + 1), y + 1),
            });
        }
        b
    }

    /// Copies the `w × h` window at `(x0, y0)` into `out`.
    fn crop_into(&self, x0: usize, y0: usize, w: usize, h: usize, out: &mut Vec<f32>) {
        out.clear();
        for y in y0..y0 + h {
            out.extend_from_slice(&self.data[y * self.w + x0..y * self.w + x0 + w]);
        }
    }
}

/// Samples `src` at `t_inv(x0 + i, y0 + j)` for a `w × h` window of the destination frame.
/// Pixels falling outside `src` get the mean of the valid ones; returns the valid fraction.
fn warp_window(
    src: &Plane,
    t_inv: &Similarity,
    (x0, y0, w, h): (usize, usize, usize, usize),
    out: &mut Vec<f32>,
) -> f64 {
    out.clear();
    let n = w * h;
    if n == 0 {
        return 0.0;
    }
    // A similarity maps the window to a convex quadrilateral: if its corners land inside the
    // source (with a margin for the bilinear neighbour), every pixel does, and the loop needs
    // no bounds checks or clamping.
    let (xe, ye) = ((x0 + w - 1) as f64, (y0 + h - 1) as f64);
    let inside = [
        [x0 as f64, y0 as f64],
        [xe, y0 as f64],
        [x0 as f64, ye],
        [xe, ye],
    ]
    .iter()
    .all(|&p| {
        let [sx, sy] = t_inv.apply(p);
        sx >= 0.0 && sy >= 0.0 && sx < src.w as f64 - 1.001 && sy < src.h as f64 - 1.001
    });
    if inside {
        let (ca, cb) = (t_inv.a, t_inv.b);
        for j in 0..h {
            let [mut sx, mut sy] = t_inv.apply([x0 as f64, (y0 + j) as f64]);
            for _ in 0..w {
                let (ix, iy) = (sx as usize, sy as usize);
                let (fx, fy) = ((sx - ix as f64) as f32, (sy - iy as f64) as f32);
                let i0 = iy * src.w + ix;
                let r0 = &src.data[i0..i0 + 2];
                let r1 = &src.data[i0 + src.w..i0 + src.w + 2];
                let top = r0[0] + (r0[1] - r0[0]) * fx;
                let bottom = r1[0] + (r1[1] - r1[0]) * fx;
                out.push(top + (bottom - top) * fy);
                sx += ca;
                sy += cb;
            }
        }
        return 1.0;
    }
    let (mut valid, mut sum) = (0usize, 0f64);
    for j in 0..h {
        for i in 0..w {
            let [sx, sy] = t_inv.apply([(x0 + i) as f64, (y0 + j) as f64]);
            match src.sample(sx, sy) {
                Some(v) => {
                    valid += 1;
                    sum += f64::from(v);
                    out.push(v);
                }
                None => out.push(f32::NAN),
            }
        }
    }
    if valid < n {
        let fill = if valid > 0 {
            (sum / valid as f64) as f32
        } else {
            0.0
        };
        out.iter_mut()
            .filter(|v| v.is_nan())
            .for_each(|v| *v = fill);
    }
    valid as f64 / n as f64
}

/// Log of linear (Rec. 709) luminance, box-averaged over `k × k` blocks: an exposure change
/// becomes an additive constant, which phase correlation ignores.
fn log_luminance(img: &Rgb32FImage, k: usize) -> Plane {
    let lut = linear_lut();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (w / k, h / k);
    let mut data = vec![0f32; ow * oh];
    if ow == 0 || oh == 0 {
        return Plane { w: ow, h: oh, data };
    }
    let norm = 1.0 / (k * k) as f32;
    let rows = img.as_raw().chunks_exact(w * 3);
    for (out, block_rows) in data
        .chunks_exact_mut(ow)
        .zip(rows.collect::<Vec<_>>().chunks_exact(k))
    {
        for row in block_rows {
            for (o, block) in out.iter_mut().zip(row.chunks_exact(3 * k)) {
                let mut s = 0f32;
                for px in block.chunks_exact(3) {
                    s += 0.2126 * lut_linear(&lut, px[0])
                        + 0.7152 * lut_linear(&lut, px[1])
                        + 0.0722 * lut_linear(&lut, px[2]);
                }
                *o += s;
            }
        }
        out.iter_mut()
            .for_each(|o| *o = (*o * norm + LOG_EPSILON).ln());
    }
    Plane { w: ow, h: oh, data }
}

/// Fraction of each `k × k` block inside the mask, on a `w × h` grid (mask pixels beyond the
/// mask's own size count as outside).
fn roi_fraction(mask: &GrayImage, k: usize, w: usize, h: usize) -> Plane {
    let (mw, mh) = (mask.width() as usize, mask.height() as usize);
    let raw = mask.as_raw();
    let mut data = vec![0f32; w * h];
    for y in 0..h {
        for dy in 0..k {
            let yy = y * k + dy;
            if yy >= mh {
                continue;
            }
            let row = &raw[yy * mw..(yy + 1) * mw];
            for x in 0..w {
                let x0 = (x * k).min(mw);
                let x1 = ((x + 1) * k).min(mw);
                data[y * w + x] += row[x0..x1].iter().filter(|&&v| v != 0).count() as f32;
            }
        }
    }
    let norm = 1.0 / (k * k) as f32;
    data.iter_mut().for_each(|v| *v *= norm);
    Plane { w, h, data }
}

/// The integer box factor nearest to `px_per_mm / ANALYSIS_PX_PER_MM` (1 for unknown scales).
fn analysis_factor(px_per_mm: f64) -> usize {
    if px_per_mm.is_finite() && px_per_mm > 0.0 {
        ((px_per_mm / ANALYSIS_PX_PER_MM).round() as usize).clamp(1, 64)
    } else {
        1
    }
}

/// Analysis (or coarse) pixel `u` of a `k`-box-downsampled image → full-resolution coordinates.
fn box_frame(k: usize) -> Similarity {
    let k = k as f64;
    Similarity::from_parts(k, 0.0, (k - 1.0) / 2.0, (k - 1.0) / 2.0)
}

/// A transform between two `k`-downsampled frames → the same transform at full resolution.
fn to_full(t: &Similarity, k: usize) -> Similarity {
    let d = box_frame(k);
    d.inverse().then(t).then(&d)
}

/// A full-resolution transform → the same transform between `k`-downsampled frames.
fn to_reduced(t: &Similarity, k: usize) -> Similarity {
    let d = box_frame(k);
    d.then(t).then(&d.inverse())
}

/// Bilinear warp of AFTER's pixels into BEFORE's frame: `out(x_b) = after(T⁻¹(x_b))` for a
/// transform `T`: AFTER → BEFORE. Pixels whose source lies outside AFTER (beyond half a pixel
/// from the edge pixel centres) are 0 and marked 0 in the returned validity mask (255 = valid).
/// Used for overlays and for checking; measurements use AFTER's native pixels.
pub fn warp_image(
    after: &Rgb32FImage,
    t: &Similarity,
    out_w: u32,
    out_h: u32,
) -> (Rgb32FImage, GrayImage) {
    let inv = t.inverse();
    let (w, h) = (after.width() as usize, after.height() as usize);
    let (wf, hf) = (w as f64, h as f64);
    let raw: &[f32] = after.as_raw();
    let mut out = Rgb32FImage::new(out_w, out_h);
    let mut valid = GrayImage::new(out_w, out_h);
    if w == 0 || h == 0 {
        return (out, valid);
    }
    for y in 0..out_h {
        for x in 0..out_w {
            let [sx, sy] = inv.apply([f64::from(x), f64::from(y)]);
            if !(sx >= -0.5 && sy >= -0.5 && sx <= wf - 0.5 && sy <= hf - 0.5) {
                continue;
            }
            let sx = sx.clamp(0.0, wf - 1.0);
            let sy = sy.clamp(0.0, hf - 1.0);
            let (x0, y0) = (sx as usize, sy as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let px = |xx: usize, yy: usize, c: usize| raw[(yy * w + xx) * 3 + c];
            let rgb = [0, 1, 2].map(|c| {
                let top = px(x0, y0, c) + (px(x1, y0, c) - px(x0, y0, c)) * fx;
                let bottom = px(x0, y1, c) + (px(x1, y1, c) - px(x0, y1, c)) * fx;
                top + (bottom - top) * fy
            });
            out.put_pixel(x, y, Rgb(rgb));
            valid.put_pixel(x, y, Luma([255]));
        }
    }
    (out, valid)
}

/// Maps a BEFORE-frame mask into AFTER's frame: `out(x_a) = mask(T(x_a))` by nearest neighbour
/// (no new grey levels, so a 0/255 mask stays binary); 0 where `T(x_a)` falls outside BEFORE.
/// This is how regions drawn on the baseline are measured on the follow-up's native pixels.
pub fn warp_mask_to_after(
    mask_before: &GrayImage,
    t: &Similarity,
    after_w: u32,
    after_h: u32,
) -> GrayImage {
    let (mw, mh) = (
        i64::from(mask_before.width()),
        i64::from(mask_before.height()),
    );
    let mut out = GrayImage::new(after_w, after_h);
    for y in 0..after_h {
        for x in 0..after_w {
            let [bx, by] = t.apply([f64::from(x), f64::from(y)]);
            if !(bx.is_finite() && by.is_finite()) {
                continue;
            }
            let (bx, by) = (bx.round() as i64, by.round() as i64);
            if (0..mw).contains(&bx) && (0..mh).contains(&by) {
                out.put_pixel(x, y, *mask_before.get_pixel(bx as u32, by as u32));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Dense refinement
// ---------------------------------------------------------------------------------------------

/// Result of [`refine`] and [`register_without_landmarks`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refinement {
    /// The refined transform, AFTER → BEFORE full-resolution pixel coordinates.
    pub transform: Similarity,
    /// Patches whose correlation peak reached [`MIN_PATCH_PEAK`] in the last round.
    pub patches_used: usize,
    /// Textured patches inside the region of interest that were correlated.
    pub patches_tried: usize,
    /// Median over the used patches of the shift remaining after the final transform, BEFORE
    /// full-resolution pixels (NaN when no patch matched).
    pub residual_median_px: f64,
    /// 90th percentile of the same, pixels (NaN when no patch matched). Includes the patches the
    /// robust fit rejected, so non-rigid change (expression, swelling) shows up here.
    pub residual_p90_px: f64,
    /// Correlation rounds run.
    pub iterations: usize,
    /// True when the last correction was below [`CONVERGED_PX`].
    pub converged: bool,
}

impl Refinement {
    fn unmeasured(transform: Similarity) -> Refinement {
        Refinement {
            transform,
            patches_used: 0,
            patches_tried: 0,
            residual_median_px: f64::NAN,
            residual_p90_px: f64::NAN,
            iterations: 0,
            converged: false,
        }
    }
}

/// One BEFORE patch: its window in the analysis frame and its reference spectrum.
struct Patch {
    x0: usize,
    y0: usize,
    centre: [f64; 2],
    spectrum: Vec<Complex32>,
}

/// Starts of patches of side `p` placed every `stride` pixels along `[start, start + len)`, the
/// grid centred so the uncovered margins at both ends are equal.
fn grid_starts(start: usize, len: usize, p: usize, stride: usize) -> Vec<usize> {
    if len < p {
        return Vec::new();
    }
    let n = (len - p) / stride + 1;
    let offset = (len - p - (n - 1) * stride) / 2;
    (0..n).map(|i| start + offset + i * stride).collect()
}

/// Dense refinement of an initial AFTER → BEFORE transform by patch-wise phase correlation.
///
/// Both photos (sRGB, 0..1) are reduced to log-luminance at ≈ [`ANALYSIS_PX_PER_MM`] (from
/// BEFORE's `px_per_mm`). The bounding box of `roi_before` (BEFORE's frame, non-zero = inside;
/// typically the union of the face regions) is tiled with [`PATCH_PX`] patches at 50% overlap
/// (at most [`MAX_PATCHES`]); patches at least [`MIN_PATCH_ROI_FRACTION`] inside the ROI and with
/// texture ([`MIN_PATCH_STD`]) are kept. Each round warps AFTER's log-luminance into BEFORE's
/// frame patch by patch with the current transform, phase-correlates every patch, keeps shifts
/// with a peak ≥ [`MIN_PATCH_PEAK`], fits a correction similarity robustly (weighted by peak
/// height) from patch centres to their matched positions, and composes it; up to
/// [`MAX_ITERATIONS`] rounds, stopping when the correction is below [`CONVERGED_PX`]. The shifts
/// left after the final correction are the residuals (full-resolution BEFORE pixels).
///
/// With fewer than 3 matched patches the initial transform is returned unchanged with
/// `patches_used` telling why. Never panics on small, blank or mismatched inputs. Time: ≈ 0.15 s
/// for a 1350×1350 portrait and ≈ 0.24 s for a 12 MP pair (optimized build, one core), about a
/// third of it converting the photos to log-luminance.
pub fn refine(
    before: &Rgb32FImage,
    after: &Rgb32FImage,
    init: &Similarity,
    roi_before: &GrayImage,
    px_per_mm: f64,
) -> Refinement {
    if !init.is_valid() {
        return Refinement::unmeasured(*init);
    }
    let k = analysis_factor(px_per_mm);
    let lb = log_luminance(before, k);
    let la = log_luminance(after, k);
    let roi = roi_fraction(roi_before, k, lb.w, lb.h);
    refine_reduced(&lb, &la, &roi, init, k)
}

/// [`refine`] on already reduced planes; `init` and the result are full-resolution transforms.
fn refine_reduced(lb: &Plane, la: &Plane, roi: &Plane, init: &Similarity, k: usize) -> Refinement {
    let Some((bx0, by0, bx1, by1)) = roi.bbox() else {
        return Refinement::unmeasured(*init);
    };
    let (bw, bh) = (bx1 - bx0, by1 - by0);
    let p = if bw.min(bh) >= PATCH_PX {
        PATCH_PX
    } else if bw.min(bh) >= PATCH_PX / 2 {
        PATCH_PX / 2
    } else {
        return Refinement::unmeasured(*init);
    };
    let mut stride = p / 2;
    let (mut xs, mut ys);
    loop {
        xs = grid_starts(bx0, bw, p, stride);
        ys = grid_starts(by0, bh, p, stride);
        if xs.len() * ys.len() <= MAX_PATCHES {
            break;
        }
        stride += p / 8;
    }

    let mut corr = Correlator::new(p, p);
    let mut buf = Vec::with_capacity(p * p);
    let mut patches = Vec::new();
    for &y0 in &ys {
        for &x0 in &xs {
            roi.crop_into(x0, y0, p, p, &mut buf);
            let inside = buf.iter().map(|&v| f64::from(v)).sum::<f64>() / (p * p) as f64;
            if inside < MIN_PATCH_ROI_FRACTION {
                continue;
            }
            lb.crop_into(x0, y0, p, p, &mut buf);
            let n = buf.len() as f64;
            let mean = buf.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = buf
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            if var.is_nan() || var.sqrt() < MIN_PATCH_STD {
                continue;
            }
            if let Some(spectrum) = corr.spectrum(&buf) {
                let c = (p as f64 - 1.0) / 2.0;
                patches.push(Patch {
                    x0,
                    y0,
                    centre: [x0 as f64 + c, y0 as f64 + c],
                    spectrum,
                });
            }
        }
    }
    let mut result = Refinement::unmeasured(*init);
    result.patches_tried = patches.len();
    if patches.is_empty() {
        return result;
    }

    let corners = [
        [bx0 as f64, by0 as f64],
        [bx1 as f64, by0 as f64],
        [bx0 as f64, by1 as f64],
        [bx1 as f64, by1 as f64],
    ];
    let kf = k as f64;
    let mut t = to_reduced(init, k);
    let mut residuals: Vec<f64> = Vec::new();
    for it in 0..MAX_ITERATIONS {
        result.iterations = it + 1;
        let t_inv = t.inverse();
        let (mut src, mut dst, mut wts) = (Vec::new(), Vec::new(), Vec::new());
        for patch in &patches {
            let valid = warp_window(la, &t_inv, (patch.x0, patch.y0, p, p), &mut buf);
            if valid < MIN_PATCH_VALID_FRACTION {
                continue;
            }
            let s = corr.correlate(&patch.spectrum, &buf);
            if s.peak >= MIN_PATCH_PEAK && s.dx.is_finite() && s.dy.is_finite() {
                src.push(patch.centre);
                dst.push([patch.centre[0] - s.dx, patch.centre[1] - s.dy]);
                wts.push(s.peak);
            }
        }
        result.patches_used = src.len();
        // Before any correction, the residuals are the raw shifts.
        residuals = src
            .iter()
            .zip(&dst)
            .map(|(&s, &d)| dist(s, d) * kf)
            .collect();
        if src.len() < MIN_FIT_PATCHES {
            break;
        }
        let Some(fit) = robust_fit(&src, &dst, Some(&wts)) else {
            break;
        };
        let c = fit.transform;
        let next = t.then(&c);
        if !next.is_valid() {
            break;
        }
        t = next;
        residuals = src
            .iter()
            .zip(&dst)
            .map(|(&s, &d)| dist(c.apply(s), d) * kf)
            .collect();
        let correction = corners
            .iter()
            .map(|&q| dist(c.apply(q), q) * kf)
            .fold(0.0, f64::max);
        if correction < CONVERGED_PX {
            result.converged = true;
            break;
        }
    }
    result.transform = to_full(&t, k);
    result.residual_median_px = quantile(&residuals, 0.5);
    result.residual_p90_px = quantile(&residuals, 0.9);
    result
}

// ---------------------------------------------------------------------------------------------
// Registration without landmarks
// ---------------------------------------------------------------------------------------------

/// One level of the coarse search: both planes reduced by `m`, BEFORE's search window and its
/// spectrum.
struct CoarseLevel {
    m: usize,
    after: Plane,
    window: (usize, usize, usize, usize),
    centre_b: [f64; 2],
    centre_a: [f64; 2],
    corr: Correlator,
    spectrum: Vec<Complex32>,
    buf: Vec<f32>,
}

impl CoarseLevel {
    /// `crop` is `(x0, y0, x1, y1)` in the analysis frame.
    fn new(lb: &Plane, la: &Plane, crop: (usize, usize, usize, usize), m: usize) -> Option<Self> {
        let (bm, am) = (lb.downsample(m), la.downsample(m));
        let (x0, y0) = (crop.0 / m, crop.1 / m);
        let w = ((crop.2 - crop.0) / m).min(bm.w.saturating_sub(x0));
        let h = ((crop.3 - crop.1) / m).min(bm.h.saturating_sub(y0));
        if w < MIN_COARSE_SIDE || h < MIN_COARSE_SIDE || am.w == 0 || am.h == 0 {
            return None;
        }
        let mut corr = Correlator::new(h, w);
        let mut buf = Vec::with_capacity(w * h);
        bm.crop_into(x0, y0, w, h, &mut buf);
        let spectrum = corr.spectrum(&buf)?;
        let centre_b = [
            x0 as f64 + (w as f64 - 1.0) / 2.0,
            y0 as f64 + (h as f64 - 1.0) / 2.0,
        ];
        // The same relative position in AFTER (same framing assumed).
        let centre_a = [
            (centre_b[0] + 0.5) * am.w as f64 / bm.w as f64 - 0.5,
            (centre_b[1] + 0.5) * am.h as f64 / bm.h as f64 - 0.5,
        ];
        Some(CoarseLevel {
            m,
            after: am,
            window: (x0, y0, w, h),
            centre_b,
            centre_a,
            corr,
            spectrum,
            buf,
        })
    }

    /// The best AFTER → BEFORE transform (analysis frame) for one rotation and scale, and the
    /// correlation peak that rates it.
    fn eval(&mut self, scale: f64, rotation_deg: f64) -> (Similarity, f64) {
        let t0 = Similarity::translation(-self.centre_a[0], -self.centre_a[1])
            .then(&Similarity::from_parts(scale, rotation_deg, 0.0, 0.0))
            .then(&Similarity::translation(self.centre_b[0], self.centre_b[1]));
        let valid = warp_window(&self.after, &t0.inverse(), self.window, &mut self.buf);
        if valid < 0.5 {
            return (t0, 0.0);
        }
        let s = self.corr.correlate(&self.spectrum, &self.buf);
        let t = t0.then(&Similarity::translation(-s.dx, -s.dy));
        (to_full(&t, self.m), s.peak)
    }
}

/// Coarse rotation/scale/translation search in the analysis frame; `None` when the images are
/// too small or flat.
fn coarse_search(lb: &Plane, la: &Plane, crop: (usize, usize, usize, usize)) -> Option<Similarity> {
    let side = (crop.2 - crop.0).max(crop.3 - crop.1) as f64;
    let s0 = ((lb.w * lb.h) as f64 / (la.w * la.h).max(1) as f64).sqrt();
    let m1 = ((side / COARSE_SIDES.0).ceil() as usize).max(1);
    let mut level = CoarseLevel::new(lb, la, crop, m1)?;
    let mut best = (Similarity::identity(), f64::NEG_INFINITY, 0.0, s0);
    for rot in -COARSE_MAX_ROTATION_DEG..=COARSE_MAX_ROTATION_DEG {
        for rel in COARSE_SCALES {
            let (t, peak) = level.eval(s0 * rel, f64::from(rot));
            if peak > best.1 {
                best = (t, peak, f64::from(rot), s0 * rel);
            }
        }
    }
    let m2 = ((side / COARSE_SIDES.1).ceil() as usize).max(1);
    if m2 == m1 {
        return Some(best.0);
    }
    let Some(mut level) = CoarseLevel::new(lb, la, crop, m2) else {
        return Some(best.0);
    };
    let (rot1, scale1) = (best.2, best.3);
    let mut fine = (best.0, f64::NEG_INFINITY, rot1, scale1);
    for i in -10..=10 {
        let rot = rot1 + 0.1 * f64::from(i);
        let (t, peak) = level.eval(scale1, rot);
        if peak > fine.1 {
            fine = (t, peak, rot, scale1);
        }
    }
    let rot2 = fine.2;
    for i in (-4..=4).filter(|&i| i != 0) {
        let scale = scale1 * (1.0 + 0.01 * f64::from(i));
        let (t, peak) = level.eval(scale, rot2);
        if peak > fine.1 {
            fine = (t, peak, rot2, scale);
        }
    }
    Some(fine.0)
}

/// Registration without landmarks (close-ups, phantoms, body sites): a coarse search over
/// rotation (−10°…10° in 1°, then ±1° in 0.1°) and scale (0.9–1.1 × the ratio of the photo
/// sizes, then ±4% in 1% steps) of whole-frame phase correlations of the downsampled
/// log-luminance, keeping the highest peak, then [`refine`] over the full frame.
pub fn register_without_landmarks(
    before: &Rgb32FImage,
    after: &Rgb32FImage,
    px_per_mm: f64,
) -> Refinement {
    register_phase(before, after, None, px_per_mm)
}

/// [`register_without_landmarks`] restricted to a region of interest (searched within its
/// bounding box plus a 10% margin, refined inside it).
fn register_phase(
    before: &Rgb32FImage,
    after: &Rgb32FImage,
    roi: Option<&GrayImage>,
    px_per_mm: f64,
) -> Refinement {
    let k = analysis_factor(px_per_mm);
    let lb = log_luminance(before, k);
    let la = log_luminance(after, k);
    let roi = match roi {
        Some(mask) => roi_fraction(mask, k, lb.w, lb.h),
        None => Plane {
            w: lb.w,
            h: lb.h,
            data: vec![1.0; lb.w * lb.h],
        },
    };
    let Some((x0, y0, x1, y1)) = roi.bbox() else {
        return Refinement::unmeasured(Similarity::identity());
    };
    let (mx, my) = ((x1 - x0) / 10, (y1 - y0) / 10);
    let crop = (
        x0.saturating_sub(mx),
        y0.saturating_sub(my),
        (x1 + mx).min(lb.w),
        (y1 + my).min(lb.h),
    );
    let init = coarse_search(&lb, &la, crop).map_or_else(Similarity::identity, |t| to_full(&t, k));
    refine_reduced(&lb, &la, &roi, &init, k)
}

// ---------------------------------------------------------------------------------------------
// The pair registration and its report
// ---------------------------------------------------------------------------------------------

/// How AFTER was registered to BEFORE, and whether it can be trusted; embedded in the compare
/// report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alignment {
    /// "landmarks+phase" (landmark fit refined by patch correlation), "phase" (no landmarks:
    /// coarse search and patch correlation) or "landmarks" (the landmark fit alone, when the
    /// patches could not refine it; never trusted).
    pub method: String,
    /// The transform, AFTER → BEFORE pixel coordinates.
    pub transform: Similarity,
    /// Scale factor of the transform (BEFORE pixels per AFTER pixel).
    pub scale: f64,
    /// Rotation of the transform, degrees (positive = clockwise on screen).
    pub rotation_deg: f64,
    /// Translation of the transform `[tx, ty]`, BEFORE pixels (where AFTER's origin lands).
    pub translation_px: [f64; 2],
    /// RMS residual of the robust 468-landmark similarity fit over its inliers, BEFORE pixels:
    /// non-rigid change (expression) plus landmark jitter; must be ≤ [`MAX_LANDMARK_RMS_MM`] once
    /// converted to mm. `None` without landmarks.
    pub landmark_rms_px: Option<f64>,
    /// Median over matched patches of the shift left after registration, BEFORE pixels
    /// (0 when no patch matched; then `patches_used` is 0 and `aligned` false).
    pub residual_median_px: f64,
    /// 90th percentile of the same, BEFORE pixels (0 when no patch matched).
    pub residual_p90_px: f64,
    /// `residual_median_px` in mm on BEFORE's skin.
    pub residual_median_mm: f64,
    /// `residual_p90_px` in mm on BEFORE's skin; must be ≤ [`MAX_RESIDUAL_P90_MM`].
    pub residual_p90_mm: f64,
    /// Patches whose correlation matched (peak ≥ [`MIN_PATCH_PEAK`]); must be ≥ [`MIN_PATCHES`].
    pub patches_used: usize,
    /// Textured patches inside the region of interest that were correlated.
    pub patches_tried: usize,
    /// False when the registration cannot be trusted; `problems` says why.
    pub aligned: bool,
    /// Why the registration is not trusted, human readable; empty when `aligned`.
    pub problems: Vec<String>,
}

/// Corresponding landmarks `(before_points, after_points)` for [`register_pair`]: the same
/// anatomical point at the same index, each in its own photo's pixels.
pub type LandmarkPairs<'a> = (&'a [[f64; 2]], &'a [[f64; 2]]);

/// Registers AFTER to BEFORE and judges the result.
///
/// `landmarks` is `(before_points, after_points)`, the same anatomical point at the same index
/// (the 468 face-mesh landmarks), in each photo's pixels. With landmarks: robust similarity fit
/// AFTER → BEFORE, then [`refine`] inside `roi_before` (BEFORE's frame, e.g. the union of the face
/// regions). Without: [`register_without_landmarks`] searched and refined inside `roi_before`.
///
/// `aligned` is false, with a reason in `problems`, when: the landmark fit fails or its RMS
/// exceeds [`MAX_LANDMARK_RMS_MM`], fewer than
/// [`MIN_PATCHES`] patches match, the residual 90th percentile exceeds [`MAX_RESIDUAL_P90_MM`],
/// fewer than [`MIN_MATCHED_FRACTION`] of the tried patches match, the scale leaves [`SCALE_RANGE`], the rotation exceeds [`MAX_ABS_ROTATION_DEG`], the landmark
/// fit and the refinement disagree by more than [`MAX_LANDMARK_DISAGREEMENT_MM`], or
/// `px_per_mm_before` is not a positive number. Never panics on odd inputs.
pub fn register_pair(
    before: &Rgb32FImage,
    after: &Rgb32FImage,
    landmarks: Option<LandmarkPairs<'_>>,
    roi_before: &GrayImage,
    px_per_mm_before: f64,
) -> Alignment {
    let mut problems = Vec::new();
    let ppm_ok = px_per_mm_before.is_finite() && px_per_mm_before > 0.0;
    if !ppm_ok {
        problems.push(format!(
            "BEFORE's scale {px_per_mm_before} px/mm is not a positive number: residuals cannot be \
             judged in millimetres"
        ));
    }
    if !roi_before.as_raw().iter().any(|&v| v != 0) {
        problems.push("the region of interest in BEFORE is empty".to_string());
    }
    let ppm = if ppm_ok {
        px_per_mm_before
    } else {
        ANALYSIS_PX_PER_MM
    };

    let mut landmark_rms_px = None;
    let (method, transform, refinement) = match landmarks {
        Some((lm_before, lm_after)) => {
            let fit = if lm_before.len() == lm_after.len() {
                fit_similarity_robust(lm_after, lm_before)
            } else {
                problems.push(format!(
                    "landmark counts differ (BEFORE {}, AFTER {})",
                    lm_before.len(),
                    lm_after.len()
                ));
                None
            };
            match fit {
                Some(fit) => {
                    landmark_rms_px = Some(fit.rms_px).filter(|v| v.is_finite());
                    if ppm_ok && fit.rms_px / ppm > MAX_LANDMARK_RMS_MM {
                        problems.push(format!(
                            "the landmarks disagree with a similarity by {:.2} mm RMS (limit \
                             {MAX_LANDMARK_RMS_MM} mm): the face changed shape (expression or pose)",
                            fit.rms_px / ppm
                        ));
                    }
                    let r = refine(before, after, &fit.transform, roi_before, ppm);
                    if r.patches_used >= MIN_PATCHES {
                        let disagreement =
                            landmark_disagreement_px(&fit.transform, &r.transform, roi_before);
                        if disagreement / ppm > MAX_LANDMARK_DISAGREEMENT_MM {
                            problems.push(format!(
                                "the landmark fit and the patch refinement disagree by {:.1} mm \
                                 (limit {MAX_LANDMARK_DISAGREEMENT_MM} mm)",
                                disagreement / ppm
                            ));
                        }
                        ("landmarks+phase", r.transform, r)
                    } else {
                        ("landmarks", fit.transform, r)
                    }
                }
                None => {
                    problems.push(
                        "the landmark similarity fit failed (too few or degenerate landmarks)"
                            .to_string(),
                    );
                    let r = register_phase(before, after, Some(roi_before), ppm);
                    ("phase", r.transform, r)
                }
            }
        }
        None => {
            let r = register_phase(before, after, Some(roi_before), ppm);
            ("phase", r.transform, r)
        }
    };

    if refinement.patches_used < MIN_PATCHES {
        problems.push(format!(
            "only {} of {} image patches matched (need at least {MIN_PATCHES}): too little shared \
             texture, very different exposure or content, or different subjects",
            refinement.patches_used, refinement.patches_tried
        ));
    }
    let fraction = refinement.patches_used as f64 / refinement.patches_tried.max(1) as f64;
    if refinement.patches_used >= MIN_PATCHES && fraction < MIN_MATCHED_FRACTION {
        problems.push(format!(
            "only {:.0}% of the image patches matched (need {:.0}%): different subjects or sites, \
             or too much change between the photos",
            100.0 * fraction,
            100.0 * MIN_MATCHED_FRACTION
        ));
    }
    let finite_or_zero = |v: f64| if v.is_finite() { v } else { 0.0 };
    let residual_median_px = finite_or_zero(refinement.residual_median_px);
    let residual_p90_px = finite_or_zero(refinement.residual_p90_px);
    let (residual_median_mm, residual_p90_mm) = if ppm_ok {
        (
            residual_median_px / px_per_mm_before,
            residual_p90_px / px_per_mm_before,
        )
    } else {
        (0.0, 0.0)
    };
    if refinement.patches_used > 0 && residual_p90_mm > MAX_RESIDUAL_P90_MM {
        problems.push(format!(
            "90% of the matched patches are within {residual_p90_mm:.2} mm after registration; \
             the limit is {MAX_RESIDUAL_P90_MM} mm (non-rigid change such as expression, or a \
             wrong match)"
        ));
    }
    let (scale, rotation_deg) = if transform.is_valid() {
        (transform.scale(), transform.rotation_deg())
    } else {
        problems.push("the fitted transform is not invertible".to_string());
        (0.0, 0.0)
    };
    if !(SCALE_RANGE.0..=SCALE_RANGE.1).contains(&scale) {
        problems.push(format!(
            "scale {scale:.3} outside {}..{}: the photos are framed too differently",
            SCALE_RANGE.0, SCALE_RANGE.1
        ));
    }
    if rotation_deg.abs() > MAX_ABS_ROTATION_DEG {
        problems.push(format!(
            "rotation {rotation_deg:.1}° exceeds ±{MAX_ABS_ROTATION_DEG}°"
        ));
    }
    let transform = if transform.is_valid() {
        transform
    } else {
        Similarity::identity()
    };
    Alignment {
        method: method.to_string(),
        transform,
        scale,
        rotation_deg,
        translation_px: [transform.tx, transform.ty],
        landmark_rms_px,
        residual_median_px,
        residual_p90_px,
        residual_median_mm,
        residual_p90_mm,
        patches_used: refinement.patches_used,
        patches_tried: refinement.patches_tried,
        aligned: problems.is_empty(),
        problems,
    }
}

/// Largest distance, BEFORE pixels, between where the two transforms send AFTER's points that
/// land on the corners of the ROI's bounding box.
fn landmark_disagreement_px(landmark: &Similarity, refined: &Similarity, roi: &GrayImage) -> f64 {
    let (w, h) = roi.dimensions();
    let mask = Plane {
        w: w as usize,
        h: h as usize,
        data: roi.as_raw().iter().map(|&v| f32::from(v)).collect(),
    };
    let Some((x0, y0, x1, y1)) = mask.bbox() else {
        return 0.0;
    };
    let inv = landmark.inverse();
    [
        [x0 as f64, y0 as f64],
        [x1 as f64, y0 as f64],
        [x0 as f64, y1 as f64],
        [x1 as f64, y1 as f64],
    ]
    .iter()
    .map(|&q| dist(refined.apply(inv.apply(q)), q))
    .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{linear_to_srgb, srgb_to_linear};
    use ndarray::Array2;

    /// Deterministic uniform numbers in [0, 1) (Knuth's MMIX LCG), no `rand` dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next()
        }
    }

    /// Hash of a lattice point to [0, 1) (SplitMix64 finalizer).
    fn hash01(ix: i64, iy: i64, seed: u64) -> f64 {
        let mut h = (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ seed.wrapping_mul(0x1656_67B1_9E37_79F9);
        h ^= h >> 30;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Smooth (C¹) value noise of the given lattice period, values in [−0.5, 0.5).
    fn value_noise(x: f64, y: f64, period: f64, seed: u64) -> f64 {
        let (u, v) = (x / period, y / period);
        let (iu, iv) = (u.floor(), v.floor());
        let (fu, fv) = (u - iu, v - iv);
        let s = |t: f64| t * t * (3.0 - 2.0 * t);
        let (su, sv) = (s(fu), s(fv));
        let (i, j) = (iu as i64, iv as i64);
        let h = |di: i64, dj: i64| hash01(i + di, j + dj, seed) - 0.5;
        let top = h(0, 0) + (h(1, 0) - h(0, 0)) * su;
        let bottom = h(0, 1) + (h(1, 1) - h(0, 1)) * su;
        top + (bottom - top) * sv
    }

    /// Skin-like texture: value noise at several scales plus dark pore/freckle spots, defined at
    /// every real point so transformed copies need no resampling.
    fn skin(x: f64, y: f64, seed: u64) -> f64 {
        let mut v = 0.0;
        for (i, period) in [3.0, 6.0, 12.0, 24.0, 48.0, 96.0].into_iter().enumerate() {
            v += 0.25 * (period / 24.0_f64).sqrt() * value_noise(x, y, period, seed + i as u64);
        }
        // One spot per 20-px cell, radius 1.5–4 px.
        let cell = 20.0;
        let (cx, cy) = ((x / cell).floor() as i64, (y / cell).floor() as i64);
        for dj in -1..=1 {
            for di in -1..=1 {
                let (i, j) = (cx + di, cy + dj);
                let sx = (i as f64 + hash01(i, j, seed + 100)) * cell;
                let sy = (j as f64 + hash01(i, j, seed + 101)) * cell;
                let r = 1.5 + 2.5 * hash01(i, j, seed + 102);
                let d2 = (x - sx).powi(2) + (y - sy).powi(2);
                v -= 0.4 * hash01(i, j, seed + 103) * (-d2 / (2.0 * r * r)).exp();
            }
        }
        v
    }

    /// A `w × h` sRGB photo of the skin texture seen through `t` (pixel `x` shows the texture at
    /// `t(x)`), with linear exposure `exposure`.
    fn synthetic(w: u32, h: u32, t: &Similarity, exposure: f32, seed: u64) -> Rgb32FImage {
        Rgb32FImage::from_fn(w, h, |x, y| {
            let [u, v] = t.apply([f64::from(x), f64::from(y)]);
            let m = (skin(u, v, seed) * 0.8).exp() as f32;
            let base = [0.45f32, 0.28, 0.2];
            Rgb(base.map(|c| linear_to_srgb((c * m * exposure).min(1.0))))
        })
    }

    fn assert_maps_close(
        got: &Similarity,
        want: &Similarity,
        points: &[[f64; 2]],
        tol: f64,
    ) -> f64 {
        let worst = points
            .iter()
            .map(|&p| dist(got.apply(p), want.apply(p)))
            .fold(0.0, f64::max);
        assert!(
            worst < tol,
            "transform off by {worst:.4} px (tolerance {tol}): got {got:?}, want {want:?}"
        );
        worst
    }

    #[test]
    fn similarity_algebra() {
        let mut rng = Lcg(1);
        for _ in 0..20 {
            let t = Similarity::from_parts(
                rng.range(0.5, 2.0),
                rng.range(-170.0, 170.0),
                rng.range(-500.0, 500.0),
                rng.range(-500.0, 500.0),
            );
            let u = Similarity::from_parts(
                rng.range(0.5, 2.0),
                rng.range(-170.0, 170.0),
                rng.range(-500.0, 500.0),
                rng.range(-500.0, 500.0),
            );
            for _ in 0..5 {
                let p = [rng.range(-1000.0, 1000.0), rng.range(-1000.0, 1000.0)];
                assert!(dist(t.inverse().apply(t.apply(p)), p) < 1e-9);
                assert!(dist(t.apply(t.inverse().apply(p)), p) < 1e-9);
                assert!(dist(t.then(&u).apply(p), u.apply(t.apply(p))) < 1e-9);
                assert!(dist(t.then(&t.inverse()).apply(p), p) < 1e-9);
            }
            let id = t.then(&t.inverse());
            assert!((id.a - 1.0).abs() < 1e-12 && id.b.abs() < 1e-12);
        }
        let t = Similarity::from_parts(1.25, -33.0, 7.0, -8.0);
        assert!((t.scale() - 1.25).abs() < 1e-12);
        assert!((t.rotation_deg() + 33.0).abs() < 1e-12);
        assert_eq!((t.tx, t.ty), (7.0, -8.0));
        // A 90° turn sends x to y (y down: clockwise on screen).
        let q = Similarity::from_parts(1.0, 90.0, 0.0, 0.0).apply([1.0, 0.0]);
        assert!(dist(q, [0.0, 1.0]) < 1e-12);
        assert_eq!(Similarity::identity().apply([3.0, 4.0]), [3.0, 4.0]);
    }

    #[test]
    fn fits_recover_similarity_and_resist_outliers() {
        let truth = Similarity::from_parts(1.07, -12.0, 30.0, -40.0);
        let mut rng = Lcg(7);
        let src: Vec<[f64; 2]> = (0..50)
            .map(|_| [rng.range(0.0, 1000.0), rng.range(0.0, 1000.0)])
            .collect();
        let mut dst: Vec<[f64; 2]> = src.iter().map(|&p| truth.apply(p)).collect();
        let exact = fit_similarity(&src, &dst, None).unwrap();
        assert_maps_close(&exact, &truth, &src, 1e-9);

        // 20% gross outliers (40–200 px away).
        for i in (0..50).step_by(5) {
            let (r, a) = (
                rng.range(40.0, 200.0),
                rng.range(0.0, std::f64::consts::TAU),
            );
            dst[i] = [dst[i][0] + r * a.cos(), dst[i][1] + r * a.sin()];
        }
        let plain = fit_similarity(&src, &dst, None).unwrap();
        let plain_err = src
            .iter()
            .map(|&p| dist(plain.apply(p), truth.apply(p)))
            .fold(0.0, f64::max);
        assert!(
            plain_err > 1.0,
            "plain least squares should be pulled by outliers: {plain_err}"
        );
        let robust = fit_similarity_robust(&src, &dst).unwrap();
        let err = assert_maps_close(&robust.transform, &truth, &src, 0.05);
        println!("robust fit: max error {err:.2e} px, plain {plain_err:.1} px");
        assert_eq!((robust.inliers, robust.total), (40, 50));
        assert!(robust.rms_px < 1e-6);

        // Degenerate inputs.
        assert!(fit_similarity(&src[..1], &dst[..1], None).is_none());
        assert!(fit_similarity(&[[1.0, 2.0]; 5], &dst[..5], None).is_none());
        assert!(fit_similarity(&src, &dst[..10], None).is_none());
        assert!(fit_similarity(&src[..3], &dst[..3], Some(&[1.0, 0.0, 0.0])).is_none());
        assert!(fit_similarity_robust(&[], &[]).is_none());
        assert!(
            fit_similarity(
                &[[0.0, 0.0], [f64::NAN, 1.0]],
                &[[0.0, 0.0], [1.0, 1.0]],
                None
            )
            .is_none()
        );
    }

    fn noise_patch(n: usize, dx: f64, dy: f64, seed: u64) -> Array2<f32> {
        Array2::from_shape_fn((n, n), |(y, x)| {
            let (u, v) = (x as f64 - dx + 500.0, y as f64 - dy + 500.0);
            (value_noise(u, v, 3.0, seed)
                + value_noise(u, v, 7.0, seed + 1)
                + 0.7 * value_noise(u, v, 17.0, seed + 2)) as f32
        })
    }

    #[test]
    fn phase_correlation_subpixel_exposure_invariant_and_confident() {
        // The fixed Hann window biases large shifts slightly towards zero (64×64 at (3.3, −5.7)
        // reads ≈ (3.28, −5.60)); `refine` iterates that away, so 64-px patches are checked at
        // moderate shifts and 128-px ones at the large shift.
        for (n, dx, dy, tol) in [
            (128, 3.3, -5.7, 0.1),
            (64, 1.3, -2.7, 0.1),
            (64, 0.4, -0.25, 0.05),
        ] {
            let reference = noise_patch(n, 0.0, 0.0, 11);
            let moved = noise_patch(n, dx, dy, 11);
            let s = phase_correlate(&reference.view(), &moved.view());
            println!(
                "{n}×{n} shift ({dx}, {dy}): got ({:.4}, {:.4}) peak {:.3}",
                s.dx, s.dy, s.peak
            );
            assert!((s.dx - dx).abs() < tol && (s.dy - dy).abs() < tol, "{s:?}");
            assert!(s.peak > 0.5, "{s:?}");
            // Brighter by 30% (and offset): the same shift.
            let brighter = moved.mapv(|v| 1.3 * v + 0.2);
            let b = phase_correlate(&reference.view(), &brighter.view());
            assert!(
                (b.dx - s.dx).abs() < 1e-3 && (b.dy - s.dy).abs() < 1e-3,
                "{b:?}"
            );
            assert!((b.peak - s.peak).abs() < 1e-3);
        }
        // Identical patches: zero shift, peak ≈ 1.
        let reference = noise_patch(64, 0.0, 0.0, 11);
        let same = phase_correlate(&reference.view(), &reference.view());
        assert!(
            same.dx.abs() < 1e-3 && same.dy.abs() < 1e-3 && same.peak > 0.95,
            "{same:?}"
        );
        // Unrelated noise: low peak, below the acceptance threshold.
        for seed in [21, 31, 41] {
            let other = noise_patch(64, 0.0, 0.0, seed);
            let u = phase_correlate(&reference.view(), &other.view());
            println!("unrelated: peak {:.3}", u.peak);
            assert!(u.peak < MIN_PATCH_PEAK, "{u:?}");
        }
        // Flat and mismatched input: no confidence.
        let flat = Array2::<f32>::from_elem((64, 64), 0.3);
        assert_eq!(phase_correlate(&flat.view(), &reference.view()).peak, 0.0);
        let small = Array2::<f32>::zeros((32, 64));
        assert_eq!(phase_correlate(&small.view(), &reference.view()).peak, 0.0);
    }

    fn ellipse(w: u32, h: u32, c: [f64; 2], r: [f64; 2]) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let d = ((f64::from(x) - c[0]) / r[0]).powi(2) + ((f64::from(y) - c[1]) / r[1]).powi(2);
            Luma([if d <= 1.0 { 255 } else { 0 }])
        })
    }

    fn mask_centroid(m: &GrayImage) -> [f64; 2] {
        let (mut s, mut n) = ([0.0; 2], 0.0);
        for (x, y, p) in m.enumerate_pixels() {
            if p.0[0] != 0 {
                s[0] += f64::from(x);
                s[1] += f64::from(y);
                n += 1.0;
            }
        }
        [s[0] / n, s[1] / n]
    }

    #[test]
    fn warps_round_trip_and_translate() {
        let mask = ellipse(200, 160, [95.0, 85.0], [50.0, 35.0]);
        let t = Similarity::from_parts(1.05, 7.0, 5.5, -3.2);
        let in_after = warp_mask_to_after(&mask, &t, 200, 160);
        assert_ne!(in_after, mask);
        // Direction: the region's centre in AFTER is T⁻¹ of its centre in BEFORE.
        let want = t.inverse().apply(mask_centroid(&mask));
        assert!(dist(mask_centroid(&in_after), want) < 0.3);
        let back = warp_mask_to_after(&in_after, &t.inverse(), 200, 160);
        let (mut inter, mut union) = (0u32, 0u32);
        for (a, b) in mask.as_raw().iter().zip(back.as_raw()) {
            inter += u32::from(*a != 0 && *b != 0);
            union += u32::from(*a != 0 || *b != 0);
        }
        let iou = f64::from(inter) / f64::from(union);
        println!("mask round trip IoU {iou:.4}");
        assert!(iou >= 0.98, "IoU {iou}");

        // Pure integer translation: out(x, y) = after(x − 5, y + 3), exactly.
        let mut rng = Lcg(3);
        let after = Rgb32FImage::from_fn(50, 40, |_, _| {
            Rgb([rng.next() as f32, rng.next() as f32, rng.next() as f32])
        });
        let (out, valid) = warp_image(&after, &Similarity::translation(5.0, -3.0), 50, 40);
        let mut n_valid = 0;
        for y in 0..40u32 {
            for x in 0..50u32 {
                let inside = x >= 5 && y + 3 < 40;
                assert_eq!(valid.get_pixel(x, y).0[0] == 255, inside, "({x}, {y})");
                if inside {
                    n_valid += 1;
                    assert_eq!(out.get_pixel(x, y), after.get_pixel(x - 5, y + 3));
                } else {
                    assert_eq!(out.get_pixel(x, y).0, [0.0; 3]);
                }
            }
        }
        assert_eq!(n_valid, 45 * 37);
        // Identity keeps every pixel valid and unchanged.
        let (same, valid) = warp_image(&after, &Similarity::identity(), 50, 40);
        assert_eq!(same, after);
        assert!(valid.as_raw().iter().all(|&v| v == 255));
    }

    fn grid(lo: f64, hi: f64) -> Vec<[f64; 2]> {
        let s = [lo, (lo + hi) / 2.0, hi];
        s.iter()
            .flat_map(|&x| s.iter().map(move |&y| [x, y]))
            .collect()
    }

    #[test]
    fn synthetic_skin_registers_with_and_without_initial_guess() {
        let truth = Similarity::from_parts(1.02, 3.0, 12.4, -7.8);
        let before = synthetic(600, 600, &Similarity::identity(), 1.0, 5);
        let after = synthetic(600, 600, &truth, 1.2, 5);
        let points = grid(60.0, 540.0);
        let full = GrayImage::from_pixel(600, 600, Luma([255]));

        let r = register_without_landmarks(&before, &after, 4.0);
        println!("without landmarks: {r:?}");
        let err = assert_maps_close(&r.transform, &truth, &points, 0.3);
        println!("max error {err:.3} px");
        assert!(r.residual_median_px < 0.3 && r.patches_used >= MIN_PATCHES);

        // From a rough initial guess (1° and 4 px off), inside a disc.
        let roi = ellipse(600, 600, [300.0, 300.0], [220.0, 220.0]);
        let init = truth.then(&Similarity::from_parts(1.0, 1.0, 4.0, -3.0));
        let r = refine(&before, &after, &init, &roi, 4.0);
        println!("refine: {r:?}");
        let err = assert_maps_close(&r.transform, &truth, &grid(150.0, 450.0), 0.3);
        println!("max error {err:.3} px");
        assert!(r.residual_median_px < 0.3 && r.converged);

        let a = register_pair(&before, &after, None, &full, 4.0);
        assert!(a.aligned, "{a:?}");
        assert_eq!(a.method, "phase");
        assert!((a.scale - 1.02).abs() < 1e-3 && (a.rotation_deg - 3.0).abs() < 0.05);

        // "Landmarks": 60 points of BEFORE and where they are in AFTER, 1-px jitter, 10 of them
        // badly wrong; the refinement removes the jitter.
        let mut rng = Lcg(9);
        let lm_before: Vec<[f64; 2]> = (0..60)
            .map(|_| [rng.range(100.0, 500.0), rng.range(100.0, 500.0)])
            .collect();
        let mut lm_after: Vec<[f64; 2]> = lm_before
            .iter()
            .map(|&p| {
                let [x, y] = truth.inverse().apply(p);
                [x + rng.range(-1.0, 1.0), y + rng.range(-1.0, 1.0)]
            })
            .collect();
        for p in lm_after.iter_mut().step_by(6) {
            p[0] += 25.0;
        }
        let a = register_pair(&before, &after, Some((&lm_before, &lm_after)), &full, 4.0);
        println!("landmarks+phase: {a:?}");
        assert!(a.aligned && a.method == "landmarks+phase", "{a:?}");
        let rms = a.landmark_rms_px.unwrap();
        assert!(rms > 0.3 && rms < 1.0, "landmark RMS {rms}");
        assert_maps_close(&a.transform, &truth, &points, 0.3);
        // Landmarks that no similarity explains (a changed face): flagged, though the patches
        // still register the texture.
        let bent: Vec<[f64; 2]> = lm_after
            .iter()
            .map(|&[x, y]| [x + 0.2 * (y - 300.0).abs(), y])
            .collect();
        let a = register_pair(&before, &after, Some((&lm_before, &bent)), &full, 4.0);
        println!("bent landmarks: {:?}", a.problems);
        assert!(!a.aligned && a.landmark_rms_px.unwrap() / 4.0 > MAX_LANDMARK_RMS_MM);
        assert!(
            a.problems.iter().any(|p| p.contains("changed shape")),
            "{a:?}"
        );
    }

    #[test]
    fn unregistrable_inputs_are_flagged_not_panicking() {
        let blank = Rgb32FImage::from_pixel(300, 300, Rgb([0.5, 0.5, 0.5]));
        let roi = GrayImage::from_pixel(300, 300, Luma([255]));
        let a = register_pair(&blank, &blank, None, &roi, 4.0);
        assert!(!a.aligned && !a.problems.is_empty(), "{a:?}");
        let lm = [[10.0, 10.0], [100.0, 20.0], [50.0, 90.0]];
        let a = register_pair(&blank, &blank, Some((&lm, &lm)), &roi, 4.0);
        assert!(!a.aligned && a.method == "landmarks", "{a:?}");
        assert!(a.transform == Similarity::identity());
        // Tiny, empty-ROI, degenerate landmarks, unknown scale.
        let tiny = Rgb32FImage::from_pixel(3, 2, Rgb([0.2, 0.3, 0.4]));
        let tiny_roi = GrayImage::from_pixel(3, 2, Luma([255]));
        assert!(!register_pair(&tiny, &tiny, None, &tiny_roi, 4.0).aligned);
        let empty = Rgb32FImage::new(0, 0);
        assert!(!register_pair(&empty, &empty, None, &GrayImage::new(0, 0), 4.0).aligned);
        let none = GrayImage::new(300, 300);
        assert!(!register_pair(&blank, &blank, None, &none, 4.0).aligned);
        let same = [[1.0, 1.0]; 3];
        assert!(!register_pair(&blank, &blank, Some((&same, &same)), &roi, 4.0).aligned);
        assert!(!register_pair(&blank, &blank, None, &roi, f64::NAN).aligned);
        let j = serde_json::to_string(&register_pair(&tiny, &tiny, None, &tiny_roi, 4.0)).unwrap();
        let _: Alignment = serde_json::from_str(&j).unwrap();
    }

    fn repo() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn points2(fr: &crate::face::FaceRegions) -> Vec<[f64; 2]> {
        fr.landmarks
            .points
            .iter()
            .map(|p| [f64::from(p[0]), f64::from(p[1])])
            .collect()
    }

    fn union_mask(fr: &crate::face::FaceRegions, w: u32, h: u32) -> GrayImage {
        let mut m = GrayImage::new(w, h);
        for r in &fr.regions {
            for (o, &v) in m.iter_mut().zip(r.mask.as_raw()) {
                *o = (*o).max(v);
            }
        }
        m
    }

    /// Exposure change applied in linear light, as a different flash power or aperture would.
    fn expose(img: &Rgb32FImage, gain: f32) -> Rgb32FImage {
        Rgb32FImage::from_fn(img.width(), img.height(), |x, y| {
            Rgb(img
                .get_pixel(x, y)
                .0
                .map(|c| linear_to_srgb((srgb_to_linear(c) * gain).min(1.0))))
        })
    }

    #[test]
    fn real_portrait_registers_and_other_subject_does_not() {
        let before = image::open(repo().join("fixtures/faces/london_038_neutral.jpg"))
            .unwrap()
            .to_rgb32f();
        let (w, h) = before.dimensions();
        let truth = Similarity::from_parts(1.03, 3.0, 15.0, -9.0);
        // AFTER(x_a) = BEFORE(truth(x_a)), 20% brighter.
        let after = expose(&warp_image(&before, &truth.inverse(), w, h).0, 1.2);

        let mut models =
            crate::face::FaceModels::load(&crate::model::default_models_dir(), 1).unwrap();
        let fb = crate::face::face_regions(&mut models, &before).unwrap();
        let fa = crate::face::face_regions(&mut models, &after).unwrap();
        let roi = union_mask(&fb, w, h);
        let ppm = fb.scale.px_per_mm;
        // Face points in AFTER's frame, where the recovered transform is checked.
        let face_points: Vec<[f64; 2]> = points2(&fb)
            .iter()
            .map(|&p| truth.inverse().apply(p))
            .collect();

        let with = register_pair(
            &before,
            &after,
            Some((&points2(&fb), &points2(&fa))),
            &roi,
            ppm,
        );
        println!("with landmarks: {with:?}");
        assert!(with.aligned && with.method == "landmarks+phase", "{with:?}");
        let err = assert_maps_close(&with.transform, &truth, &face_points, 0.5);
        println!("landmarks+phase: max error {err:.3} px over the 468 landmarks");

        let without = register_pair(&before, &after, None, &roi, ppm);
        println!("without landmarks: {without:?}");
        assert!(without.aligned && without.method == "phase", "{without:?}");
        let err = assert_maps_close(&without.transform, &truth, &face_points, 0.5);
        println!("phase: max error {err:.3} px over the 468 landmarks");

        let whole = register_without_landmarks(&before, &after, ppm);
        println!("whole frame: {whole:?}");
        let err = assert_maps_close(&whole.transform, &truth, &face_points, 0.5);
        println!("whole frame: max error {err:.3} px over the 468 landmarks");

        // Another subject, same studio: must not be trusted.
        let other = repo().join("../shared/photos/london_062_neutral.jpg");
        if !other.is_file() {
            println!(
                "skipping the other-subject check: {} not found",
                other.display()
            );
            return;
        }
        let other = image::open(other).unwrap().to_rgb32f();
        let a = register_pair(&before, &other, None, &roi, ppm);
        println!("other subject: {a:?}");
        assert!(!a.aligned, "{a:?}");
        assert!(a.patches_used < MIN_PATCHES, "{a:?}");
    }
}

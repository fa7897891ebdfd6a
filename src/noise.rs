//! The photo's noise as a function of level, and what it becomes in the pore band.
//!
//! Why: sensor noise is added to light, not to optical density. A noise of σ in linear light is
//! σ/v in density at a pixel of level v, so a macule or a shadowed cheek that reflects 60% of
//! the light carries 1.7 times the density noise of the skin around it. One threshold per
//! region, set by the region's typical noise, lets the darker parts' noise through: on our dark
//! phantoms under σ 0.002 noise, 9 of the 10 extra pores of seed 41 sat inside macules, where
//! the pore band's spread was 1.5 times the region's.
//!
//! How: [`NoiseLevels`] measures each channel's noise level function on the photo itself (the
//! spread of each pixel's difference from its neighbours, in bins of local level; Liu, Szeliski,
//! Kang, Zitnick & Freeman, "Automatic estimation and removal of noise from a single image",
//! IEEE TPAMI 30(2):299–314, 2008), so read noise (constant in linear light), shot noise
//! (growing as √v) and 8-bit rounding are each followed as the photo has them, without assuming
//! one. [`BandGain`] carries that noise through the pipeline's chromaticity filter, resampling
//! and the model's pore band-pass; on flat noisy photos it predicts the ONNX model's own
//! `pore_response` spread within 1–4% (grey and dark skin, zoom 0.5, 1 and 2).

use image::Rgb32FImage;
use ndarray::Array2;

use crate::model::{LUMA, linear_lut, lut_linear, srgb_to_linear};

/// Brightness bins per decade of linear luminance.
const BINS_PER_DECADE: f64 = 8.0;

/// The darkest linear luminance binned: below it a pixel is black and carries no skin.
const DARKEST: f64 = 1e-3;

/// Samples a bin needs before its median is trusted: the median of n samples is uncertain by
/// about 1.25/√n of the spread, 4% here.
const MIN_BIN_SAMPLES: usize = 1000;

/// Half-width in photo pixels of the box whose mean is a sample's brightness: 5 × 5 pixels, so a
/// pore (2–4 pixels wide) darkens its own bin's level by a fraction of its contrast only.
const LEVEL_RADIUS: u32 = 2;

/// One channel's noise level function: the noise (standard deviation) of one pixel's linear
/// value at each local level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoiseLevels {
    /// `(mean level, noise)` of every trusted bin, brightest last; empty when none was.
    points: Vec<(f32, f32)>,
}

impl NoiseLevels {
    /// Measures the noise level function of each channel of `photo` inside `crop`
    /// (`x0, y0, x1, y1`), in linear light.
    ///
    /// Each sample is a pixel's linear value minus the mean of its four neighbours; its
    /// robust spread (1.4826 × median absolute value) divided by that difference's gain for
    /// independent noise, √(1 + 1/4), is the noise. Why the median: skin is smooth over a
    /// photo pixel, so most differences are noise, and the pores, hairs and edges that make the
    /// tails do not move a median. Samples are binned by the mean of the 5 × 5 box around them.
    pub fn measure(photo: &Rgb32FImage, crop: (u32, u32, u32, u32)) -> [NoiseLevels; 3] {
        let (x0, y0, x1, y1) = crop;
        let r = LEVEL_RADIUS;
        if x1 < x0 + 2 * r + 1 || y1 < y0 + 2 * r + 1 {
            return Default::default();
        }
        // sRGB decoding through a table: each sample reads 30 pixels.
        let lut = linear_lut();
        let linear = |v: f32| lut_linear(&lut, v);
        let at = |x: u32, y: u32| photo.get_pixel(x, y).0.map(linear);
        // A quarter of a million samples are plenty for a few dozen medians.
        let area = f64::from(x1 - x0) * f64::from(y1 - y0);
        let step = (area / 2.5e5).sqrt().ceil().max(1.0) as usize;
        let bins = (BINS_PER_DECADE * -DARKEST.log10()).ceil() as usize;
        let mut binned: [Vec<(f64, Vec<f32>)>; 3] =
            std::array::from_fn(|_| vec![(0.0, Vec::new()); bins]);
        let box_area = f64::from((2 * r + 1) * (2 * r + 1));
        for y in (y0 + r..y1 - r).step_by(step) {
            for x in (x0 + r..x1 - r).step_by(step) {
                let mut sum = [0.0f64; 3];
                for yy in y - r..=y + r {
                    for xx in x - r..=x + r {
                        let p = at(xx, yy);
                        for c in 0..3 {
                            sum[c] += f64::from(p[c]);
                        }
                    }
                }
                let (centre, neighbours) = (
                    at(x, y),
                    [at(x, y - 1), at(x, y + 1), at(x - 1, y), at(x + 1, y)],
                );
                for c in 0..3 {
                    let level = sum[c] / box_area;
                    if level < DARKEST {
                        continue;
                    }
                    let bin =
                        ((BINS_PER_DECADE * (level / DARKEST).log10()) as usize).min(bins - 1);
                    let residual = centre[c] - 0.25 * neighbours.iter().map(|n| n[c]).sum::<f32>();
                    binned[c][bin].0 += level;
                    binned[c][bin].1.push(residual.abs());
                }
            }
        }
        binned.map(NoiseLevels::from_bins)
    }

    fn from_bins(bins: Vec<(f64, Vec<f32>)>) -> NoiseLevels {
        let mut points: Vec<(f32, f32)> = bins
            .into_iter()
            .filter(|(_, values)| values.len() >= MIN_BIN_SAMPLES)
            .map(|(sum, mut values)| {
                let level = sum / values.len() as f64;
                let mid = values.len() / 2;
                let median = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
                (level as f32, 1.4826 * median / 1.25f32.sqrt())
            })
            .collect();
        // A sensor's noise does not fall as the light grows (read noise is constant, shot noise
        // grows as √v, 8-bit rounding with the sRGB curve's slope): a dark bin noisier than a
        // brighter one is measuring texture (hair, brows, nostrils, shadowed edges), not
        // noise, and is held to the brighter bin's.
        for i in (0..points.len().saturating_sub(1)).rev() {
            points[i].1 = points[i].1.min(points[i + 1].1);
        }
        NoiseLevels { points }
    }

    /// True when no bin held enough samples to be trusted (a crop too small or all black).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// True when every trusted bin measured no noise at all: most pixels equal the mean of
    /// their neighbours, as on a smooth 8-bit or JPEG image without sensor noise. Its error,
    /// if any, is rounding correlated over many pixels, which this function cannot see.
    pub fn is_silent(&self) -> bool {
        !self.points.is_empty() && self.points.iter().all(|&(_, noise)| noise == 0.0)
    }

    /// A function measured elsewhere, as `(level, noise)` points (brightest last).
    #[cfg(test)]
    fn from_points(points: Vec<(f32, f32)>) -> NoiseLevels {
        NoiseLevels { points }
    }

    /// The noise at level `v`: interpolated linearly in log-level between the measured bins,
    /// and held at the nearest bin beyond them (a constant in linear light, so darker than any
    /// measured bin the density noise still grows as 1/v). `None` when no bin was trusted.
    pub fn at(&self, v: f32) -> Option<f32> {
        let (first, last) = (self.points.first()?, self.points.last()?);
        if v <= first.0 {
            return Some(first.1);
        }
        if v >= last.0 {
            return Some(last.1);
        }
        let i = self.points.partition_point(|p| p.0 < v);
        let ((v0, n0), (v1, n1)) = (self.points[i - 1], self.points[i]);
        let t = (v / v0).ln() / (v1 / v0).ln();
        Some(n0 + t * (n1 - n0))
    }
}

/// Impulses per side of the grid [`BandGain::compute`] averages over.
const IMPULSES: usize = 4;

/// Narrower Gaussian (working pixels) from which a band no longer depends on where a photo
/// pixel falls between working pixels, and [`BandGain::compute`] sends one impulse instead of
/// [`IMPULSES`]².
///
/// Why: the grid of impulses costs 16 times the work, and for the scar band (σ 4/20 working
/// pixels) that was 0.3 s per face photo. One impulse gives its energies within 0.9% of the
/// grid's at zoom 0.5 and 0.3% at 2.78 (exactly at integer zooms); the pore band (σ 0.8/4)
/// moves by up to 6% and keeps the grid (`one_impulse_is_enough_for_a_wide_band`).
const WIDE_BAND_PX: f32 = 2.0;

/// What independent per-channel noise on the photo becomes in the pore band of the model's
/// input, which the pipeline forms from the photo by [`crate::model::smooth_chromaticity`]
/// (σ `chroma_px` photo pixels) and [`crate::model::resample_linear_light`] (`zoom` working
/// pixels per photo pixel), the band being `G(center) − G(surround)` (σ in working pixels) of
/// the weighted density `u · OD`.
///
/// Why three numbers: after the chromaticity filter a channel's relative noise `ε_c` reaches
/// the weighted density in two ways. Through the pixel's luminance, which every channel keeps
/// exactly, it moves all densities by `α_c ε_c` (`α_c = w_c v_c / L`, the channel's share of
/// the luminance); through the smoothed chromaticity it moves them by the blurred
/// `(u_c − α_c) ε_c`. The band's variance is then
/// `Σ_c σ_c² (α_c² E₁ + (u_c − α_c)² E_S + 2 α_c (u_c − α_c) E₁S)`, with `E₁` the energy of
/// one photo pixel's impulse through resampling and band, `E_S` that of the blurred impulse,
/// and `E₁S` their inner product, each divided by `zoom²` (a photo pixel feeds `zoom²` working
/// pixels' worth of grid). On the dark phantoms' skin (blue 0.6% of white, green 3%) the band
/// is 22% noisier than on a grey of the same luminance, through the chromaticity path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandGain {
    direct: f64,
    smoothed: f64,
    cross: f64,
}

impl BandGain {
    /// Energies of 1: a band that passes each pixel's relative noise as it is, on every path.
    #[cfg(test)]
    pub(crate) fn unit() -> BandGain {
        BandGain {
            direct: 1.0,
            smoothed: 1.0,
            cross: 1.0,
        }
    }

    /// Computes the three energies from impulses sent through the same resampling and
    /// filters as the photo.
    /// A band whose narrower Gaussian is `WIDE_BAND_PX` working pixels or wider is computed
    /// from one impulse.
    pub fn compute(zoom: f64, chroma_px: f32, center_px: f32, surround_px: f32) -> BandGain {
        let impulses = if center_px >= WIDE_BAND_PX {
            1
        } else {
            IMPULSES
        };
        BandGain::compute_with(zoom, chroma_px, center_px, surround_px, impulses)
    }

    /// [`BandGain::compute`] averaged over `impulses × impulses` phases.
    fn compute_with(
        zoom: f64,
        chroma_px: f32,
        center_px: f32,
        surround_px: f32,
        impulses: usize,
    ) -> BandGain {
        // The response must fit: the surround's and the chromaticity filter's reach.
        let reach = (4.0 * f64::from(surround_px) + 4.0) / zoom + 4.0 * f64::from(chroma_px);
        let half = reach.ceil() as usize + 2;
        // A grid of impulses far enough apart that their responses do not overlap (so the
        // energies add), at positions whose phase on the working grid differs: a downsampled
        // photo pixel's response depends on where it falls between working pixels.
        let pitch = 2 * half + 2;
        let n = (impulses - 1) * pitch + 2 * half + 1;
        let mut impulse = Array2::<f32>::zeros((n, n));
        for i in 0..impulses {
            for j in 0..impulses {
                impulse[[half + i * pitch, half + j * pitch]] = 1.0;
            }
        }
        let blurred = if chroma_px > 0.0 {
            crate::metrics::smooth(impulse.view(), chroma_px)
        } else {
            impulse.clone()
        };
        let band = |field: &Array2<f32>| -> Option<Array2<f32>> {
            let relative = resampled_relative(field, zoom)?;
            Some(
                crate::metrics::smooth(relative.view(), center_px)
                    - crate::metrics::smooth(relative.view(), surround_px),
            )
        };
        let (Some(a), Some(b)) = (band(&impulse), band(&blurred)) else {
            return BandGain {
                direct: 0.0,
                smoothed: 0.0,
                cross: 0.0,
            };
        };
        let dot = |p: &Array2<f32>, q: &Array2<f32>| -> f64 {
            p.iter()
                .zip(q.iter())
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum::<f64>()
                / (zoom * zoom * (impulses * impulses) as f64)
        };
        BandGain {
            direct: dot(&a, &a),
            smoothed: dot(&b, &b),
            cross: dot(&a, &b),
        }
    }

    /// The band's standard deviation at a pixel whose channels sit at linear levels `v` with
    /// noise `sigma` (linear, one photo pixel each), for density weights `u` summing to 1.
    pub fn band_noise(&self, v: [f32; 3], sigma: [f32; 3], u: [f32; 3]) -> f32 {
        self.variance_terms(v, sigma)
            .map_or(0.0, |terms| terms.variance(&u.map(f64::from)).sqrt() as f32)
    }

    /// What the band's noise variance at a pixel depends on, for any density weights: see
    /// [`VarianceTerms::variance`]. `None` on a black pixel.
    pub fn variance_terms(&self, v: [f32; 3], sigma: [f32; 3]) -> Option<VarianceTerms> {
        let luminance: f32 = (0..3).map(|c| LUMA[c] * v[c]).sum();
        if luminance <= 0.0 {
            return None;
        }
        Some(VarianceTerms {
            relative2: [0, 1, 2].map(|c| {
                let relative = f64::from(sigma[c] / v[c].max(DARKEST as f32));
                relative * relative
            }),
            luminance_share: [0, 1, 2].map(|c| f64::from(LUMA[c] * v[c] / luminance)),
            gain: *self,
        })
    }
}

/// A band's noise at one pixel, for any density weights (see [`BandGain::variance_terms`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VarianceTerms {
    /// Each channel's relative noise `(σ/v)²`.
    pub relative2: [f64; 3],
    /// Each channel's share `α = luma·v / Y` of the luminance.
    pub luminance_share: [f64; 3],
    /// The filters' energies.
    pub gain: BandGain,
}

impl VarianceTerms {
    /// The band's noise variance for density weights `k`.
    ///
    /// The chromaticity filter keeps the luminance and smooths the rest: channel j's noise
    /// reaches `k · OD` as `K·α_j` through the luminance (`K = Σ k`) and `k_j − K·α_j` through
    /// the smoothed chromaticity, adding `r_j²·((Kα_j)²·D + (k_j − Kα_j)²·S + 2Kα_j(k_j −
    /// Kα_j)·X)` with the direct, smoothed and cross energies D, S, X.
    pub fn variance(&self, k: &[f64; 3]) -> f64 {
        let total: f64 = k.iter().sum();
        let BandGain {
            direct,
            smoothed,
            cross,
        } = self.gain;
        (0..3)
            .map(|j| {
                let through = total * self.luminance_share[j];
                let rest = k[j] - through;
                self.relative2[j]
                    * (through * through * direct
                        + rest * rest * smoothed
                        + 2.0 * through * rest * cross)
            })
            .sum::<f64>()
            .max(0.0)
    }

    /// For weights summing to 1, the variance is `Σ_j square_j·k_j² + 2·linear_j·k_j + const`:
    /// `(square, linear)`.
    pub fn quadratic(&self) -> ([f64; 3], [f64; 3]) {
        let BandGain {
            smoothed, cross, ..
        } = self.gain;
        (
            [0, 1, 2].map(|j| self.relative2[j] * smoothed),
            [0, 1, 2].map(|j| self.relative2[j] * self.luminance_share[j] * (cross - smoothed)),
        )
    }
}

/// A relative perturbation `field` of a photo (linear light) as it arrives on the working grid
/// after [`crate::model::resample_linear_light`], to first order.
fn resampled_relative(field: &Array2<f32>, zoom: f64) -> Option<Array2<f32>> {
    let (h, w) = field.dim();
    let (base, delta) = (0.5f32, 1e-2f32);
    let image = |scale: f32| {
        Rgb32FImage::from_fn(w as u32, h as u32, |x, y| {
            let v = base * (1.0 + scale * field[[y as usize, x as usize]]);
            image::Rgb([crate::model::linear_to_srgb(v); 3])
        })
    };
    let resample = |img: &Rgb32FImage| -> Option<Array2<f32>> {
        let out =
            crate::model::resample_linear_light(img, (0, 0, w as u32, h as u32), zoom).ok()?;
        let (ow, oh) = out.dimensions();
        Some(Array2::from_shape_fn(
            (oh as usize, ow as usize),
            |(y, x)| srgb_to_linear(out.get_pixel(x as u32, y as u32).0[0]),
        ))
    };
    // Resampling keeps a constant (its kernel sums to 1; the borders reflect), so the flat
    // image's result is `base` everywhere.
    let poked = resample(&image(delta))?;
    Some(poked.mapv(|v| (v - base) / (base * delta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic standard normal sample per index (splitmix64 + Box–Muller).
    fn normal(i: u64) -> f32 {
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let u1 = ((mix(2 * i) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = ((mix(2 * i + 1) >> 11) as f64) / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    #[test]
    fn one_impulse_is_enough_for_a_wide_band() {
        let energies = |g: BandGain| [g.direct, g.smoothed, g.cross];
        let deviation = |center: f32, surround: f32, zoom: f64| {
            let one = energies(BandGain::compute_with(zoom, 1.5, center, surround, 1));
            let grid = energies(BandGain::compute_with(
                zoom, 1.5, center, surround, IMPULSES,
            ));
            (0..3)
                .map(|i| (one[i] / grid[i] - 1.0).abs())
                .fold(0.0, f64::max)
        };
        // The scar band (σ 4/20 working pixels) at a downsampling and at a face photo's zoom.
        for zoom in [0.5, 2.78] {
            let d = deviation(4.0, 20.0, zoom);
            assert!(d < 0.01, "zoom {zoom}: {d}");
        }
        // The pore band (σ 0.8/4) depends on the phase and keeps the grid.
        assert!(deviation(0.8, 4.0, 0.5) > 0.03);
    }

    /// A `w × h` photo whose left half has linear colour `dark` and right half `bright`, each
    /// channel with independent noise of standard deviation `sigma(level)` in linear light.
    fn two_level_photo(
        (w, h): (u32, u32),
        dark: [f32; 3],
        bright: [f32; 3],
        sigma: impl Fn(f32) -> f32,
    ) -> Rgb32FImage {
        Rgb32FImage::from_fn(w, h, |x, y| {
            let level = if x < w / 2 { dark } else { bright };
            let i = 3 * u64::from(y * w + x);
            image::Rgb([0, 1, 2].map(|c| {
                let v = level[c] + sigma(level[c]) * normal(i + c as u64);
                crate::model::linear_to_srgb(v.clamp(0.0, 1.0))
            }))
        })
    }

    #[test]
    fn the_noise_level_functions_read_constant_linear_noise_at_every_level() {
        let sigma = 0.004;
        let (dark, bright) = ([0.12, 0.05, 0.02], [0.5, 0.3, 0.2]);
        let photo = two_level_photo((400, 300), dark, bright, |_| sigma);
        let levels = NoiseLevels::measure(&photo, (0, 0, 400, 300));
        for c in 0..3 {
            for v in [dark[c], bright[c]] {
                let got = levels[c].at(v).unwrap();
                assert!(
                    (got / sigma - 1.0).abs() < 0.06,
                    "channel {c} at {v}: {got} for {sigma}"
                );
            }
        }
    }

    #[test]
    fn the_noise_level_functions_follow_noise_that_grows_with_the_level() {
        // Shot-like noise: σ ∝ √level, so four times the level has twice the noise.
        let photo = two_level_photo((400, 300), [0.05; 3], [0.2; 3], |v| 0.01 * v.sqrt());
        let levels = NoiseLevels::measure(&photo, (0, 0, 400, 300));
        for channel in &levels {
            let ratio = channel.at(0.2).unwrap() / channel.at(0.05).unwrap();
            assert!((ratio - 2.0).abs() < 0.15, "{ratio}");
        }
    }

    #[test]
    fn a_dark_bin_is_held_to_the_noise_of_brighter_ones() {
        // Dark hair-like texture: the dark half has ±0.05 stripes and no noise, the bright
        // half noise of 0.004. Texture is not noise, and noise does not fall with the light.
        let (w, h) = (400u32, 300u32);
        let photo = Rgb32FImage::from_fn(w, h, |x, y| {
            let v = if x < w / 2 {
                0.08 + if x % 2 == 0 { 0.05 } else { -0.05 }
            } else {
                0.4 + 0.004 * normal(u64::from(y * w + x))
            };
            image::Rgb([crate::model::linear_to_srgb(v); 3])
        });
        let levels = NoiseLevels::measure(&photo, (0, 0, w, h));
        let dark = levels[1].at(0.08).unwrap();
        assert!(dark <= levels[1].at(0.4).unwrap() + 1e-6, "{dark}");
        assert!((dark / 0.004 - 1.0).abs() < 0.1, "{dark}");
    }

    #[test]
    fn levels_between_bins_are_interpolated_and_beyond_them_held() {
        let levels = NoiseLevels::from_points(vec![(0.01, 1.0), (0.1, 2.0)]);
        assert_eq!(levels.at(0.001), Some(1.0));
        assert_eq!(levels.at(0.5), Some(2.0));
        let mid = levels
            .at(0.1f32.sqrt() * 0.1f32.sqrt() * 0.1f32.sqrt())
            .unwrap();
        assert!((mid - 1.5).abs() < 1e-3, "{mid}");
        assert_eq!(NoiseLevels::default().at(0.1), None);
    }

    /// The predicted band noise, checked against noise sent through the pipeline's own
    /// chromaticity filter, resampling and band, on grey and on dark skin whose blue channel
    /// is a fifth of a percent of white (the chromaticity path matters there).
    #[test]
    fn the_band_gain_predicts_the_band_noise_of_noisy_flat_photos() {
        let u = [0.56f32, 0.29, 0.15];
        let chroma = crate::model::CHROMATICITY_SIGMA_PX;
        for colour in [[0.2f32; 3], [0.117, 0.0315, 0.0064]] {
            for zoom in [1.0, 0.5, 2.0] {
                let (n, sigma) = (240u32, 0.002f32);
                let photo = two_level_photo((n, n), colour, colour, |_| sigma);
                let smoothed =
                    crate::model::smooth_chromaticity(&photo, (0, 0, n, n), chroma).unwrap();
                let out =
                    crate::model::resample_linear_light(&smoothed, (0, 0, n, n), zoom).unwrap();
                let (w, h) = out.dimensions();
                let density = Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
                    let p = out.get_pixel(x as u32, y as u32).0;
                    (0..3)
                        .map(|c| -u[c] * srgb_to_linear(p[c]).ln())
                        .sum::<f32>()
                });
                let band = crate::metrics::smooth(density.view(), 0.8)
                    - crate::metrics::smooth(density.view(), 4.0);
                // Away from the borders' reflection.
                let m = 24;
                let inner = band.slice(ndarray::s![m..h as usize - m, m..w as usize - m]);
                let mean = inner.mean().unwrap();
                let sd = (inner.mapv(|v| (v - mean).powi(2)).mean().unwrap()).sqrt();
                let predicted =
                    BandGain::compute(zoom, chroma, 0.8, 4.0).band_noise(colour, [sigma; 3], u);
                assert!(
                    (sd / predicted - 1.0).abs() < 0.08,
                    "{colour:?} zoom {zoom}: measured {sd}, predicted {predicted}"
                );
            }
        }
    }
}

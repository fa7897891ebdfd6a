//! Noise-weighted relief: the scar band of the shading estimate that the photo's own noise
//! disturbs least.
//!
//! Why: the model's `scar_response` is the scar band-pass of the Tsumura shading, whose row of
//! the inverse decomposition weighs the channels' densities (1.19, 0.90, −1.09). It is the one
//! combination blind to melanin and hemoglobin, and it leans on blue as hard as on red. On dark
//! skin blue is a few code values deep, so its density carries the most noise (σ/v in density
//! for a noise σ in linear light): on our dark phantoms under σ 0.002 linear noise the region's
//! robust `scar_response` σ rose from 0.004 to 0.023, and a shallow rolling scar, whose whole
//! band energy is 0.011, sank below the candidate threshold (2σ).
//!
//! How: any weights `k` with `Σ k_c = 1` give an unbiased shading estimate `k · OD`, which also
//! holds `k · a_m` of the melanin and `k · a_h` of the hemoglobin (`a` the decomposition's
//! columns). The weights chosen minimise the expected squared error in the scar band: the
//! band's noise variance from the photo's measured noise ([`crate::noise::NoiseLevels`] through
//! [`crate::noise::BandGain`]), plus each chromophore's band variance times its squared leak.
//! That variance is measured on the photo: the melanin and hemoglobin maps' robust band spread
//! less what its noise puts into them, and at least `MIN_CHROMOPHORE_BAND_OD`². This is the
//! best linear unbiased estimator with Gaussian priors on the two chromophores (Kay,
//! *Fundamentals of Statistical Signal Processing: Estimation Theory*, 1993, ch. 6 and 12).
//! Where every channel is well above its noise the prior term dominates and the weights are the
//! Tsumura row; where blue drowns in noise they move to red, letting a known share of pigment
//! in (0.24 of the melanin band on the dark phantoms under σ 0.002, for 14 times less noise).
//! The weighting is used only when it pays (see `MAX_NOISE_RATIO`): clean photos, the
//! portraits and light and tan phantoms under that noise keep the model's maps.
//!
//! What the metrics take from it: scar candidates and relief dipoles (the rolling scars, whose
//! lobes are a few hundredths of OD). A scar's dark floor is still judged on the model's own
//! map, where no pigment is let in: a macule's share (0.24 × its band) plus noise reached the
//! floor threshold on noisy dark phantoms with macules and no scars.
//!
//! Because the decomposition is linear, `k · OD`'s band is the model's `scar_response` plus
//! `(k · a_m)` times the melanin map's band and `(k · a_h)` times the hemoglobin's. The weights
//! vary over 0.3-mm blocks, like the chromophore weights ([`crate::model::ChromophoreWeighting`]);
//! they multiply band-passed maps, never a density level, so their steps make no edges.
//!
//! Reference for the decomposition: Tsumura N., Haneishi H., Miyake Y. (1999),
//! "Independent-component analysis of skin color image", JOSA A 16(9):2169–2176.

use ndarray::Array2;

use crate::model::{CHROMATICITY_SIGMA_PX, SkinMaps};
use crate::noise::{BandGain, VarianceTerms};
use crate::stats::median;

/// The least band spread (natural-log OD) granted to melanin and hemoglobin, whatever the
/// photo's maps say once its noise is taken out.
///
/// Why: it is what the pigment and redness texture of our clean phantoms give the scar band
/// (robust σ 0.0105 and 0.0075), and a prior of 0 would let in any amount of pigment to save
/// the last bit of noise. Where the photo's own chromophore texture is larger (portraits:
/// 0.07–0.12 over a face crop), the measured spread is used and the weights stay closer to
/// the Tsumura row.
const MIN_CHROMOPHORE_BAND_OD: f64 = 0.01;

/// The weights are used only when they cut the scar band's predicted noise (standard
/// deviation) to this fraction of the Tsumura row's on the typical (median) block; otherwise
/// the model's own maps are measured.
///
/// Why: the pigment let in is certain and the noise saved is a prediction. On tan phantoms
/// under σ 0.002 linear noise the weights would save 15% of a noise that is a fraction of the
/// skin's own relief texture (with an earlier fixed prior, 7%: the region's σ went from 0.0050
/// to 0.0051 and a shallow rolling scar at the threshold was lost); on dark ones they save
/// 85–93%, the case the weighting is for. The typical block, not the best one: the portraits'
/// hair and shadows have blocks where blue is as deep as on the dark phantoms (ratios down to
/// 0.05), while their skin's median is 0.96–0.99.
const MAX_NOISE_RATIO: f64 = 0.8;

/// The relief band and its energy, noise-weighted: what the metrics measure as
/// `scar_response` and `scar_energy` ([`SkinMaps::measured`]).
#[derive(Debug, Clone)]
pub struct Relief {
    /// The scar band-pass of the noise-weighted shading (natural-log OD), signed as
    /// `scar_response`.
    pub response: Array2<f32>,
    /// Its local RMS, as `scar_energy`.
    pub energy: Array2<f32>,
    /// `(k · a_m, k · a_h)`: the melanin and hemoglobin band added to the model's
    /// `scar_response`, per block of `block` working pixels.
    leak: Array2<[f32; 2]>,
    block: usize,
}

impl Relief {
    /// The noise-weighted relief of `maps`; `None` when the model does not describe its
    /// decomposition, when the photo's noise could not be measured, or when the weights would
    /// not cut the band's noise enough (see `MAX_NOISE_RATIO`).
    pub fn compute(maps: &SkinMaps) -> Option<Relief> {
        let weighting = maps.weighting.as_ref()?;
        let levels = &maps.noise_levels;
        if levels.iter().any(crate::noise::NoiseLevels::is_empty) {
            return None;
        }
        if levels.iter().all(crate::noise::NoiseLevels::is_silent) {
            return Relief::from_band_covariance(maps, weighting.reference());
        }
        let reference = weighting.reference();
        let [_, surround, wide, ..] = reference.filters();
        let gain = BandGain::compute(
            maps.zoom,
            CHROMATICITY_SIGMA_PX,
            surround.sigma_px as f32,
            wide.sigma_px as f32,
        );
        let matrix = weighting.matrix();
        let column = |j: usize| [matrix[0][j], matrix[1][j], matrix[2][j]];
        let columns = [column(0), column(1)];
        let rows = reference.inverse_matrix().map(|row| row.map(f64::from));
        let grid = maps.level_grid();
        let terms = maps
            .block_noise()
            .mapv(|(v, sigma)| gain.variance_terms(v, sigma));
        // The least prior lets in the most pigment and saves the most noise: when even it
        // saves too little, the chromophore bands need not be computed.
        // (A photo without noise, every ratio 0/0, does not pay either.)
        let pays = |prior: [f64; 2]| {
            median(terms.iter().flatten().filter_map(|terms| {
                let k = weights(terms, &columns, prior);
                let ratio = (terms.variance(&k) / terms.variance(&rows[2])).sqrt();
                ratio.is_finite().then_some(ratio)
            })) <= MAX_NOISE_RATIO
        };
        if !pays([MIN_CHROMOPHORE_BAND_OD.powi(2); 2]) {
            return None;
        }
        let [melanin, hemoglobin] = chromophore_bands(maps, reference)?;
        // The chromophores' own band spread: the maps' robust spread less what the photo's
        // noise puts into them (their rows of the inverse decomposition).
        let prior = [(&melanin, rows[0]), (&hemoglobin, rows[1])].map(|(band, row)| {
            let noise = median(terms.iter().flatten().map(|t| t.variance(&row)));
            (robust_spread(band).powi(2) - noise).max(MIN_CHROMOPHORE_BAND_OD.powi(2))
        });
        if !pays(prior) {
            return None;
        }
        let leak = terms.mapv(|terms| {
            terms.map_or([0.0; 2], |terms| {
                let k = weights(&terms, &columns, prior);
                columns.map(|column| dot(&k, &column) as f32)
            })
        });
        let f = grid.f;
        let mut response = maps.channel("scar_response")?.to_owned();
        for ((y, x), r) in response.indexed_iter_mut() {
            let [a, b] = leak[[y / f, x / f]];
            *r += a * melanin[[y, x]] + b * hemoglobin[[y, x]];
        }
        let energy = reference.scar_energy(&response);
        Some(Relief {
            response,
            energy,
            leak,
            block: f,
        })
    }

    /// The relief of a photo that shows no pixel noise (a smooth 8-bit or JPEG image): the
    /// shading band plus the melanin and hemoglobin bands in the proportions `(a, b)` that
    /// leave the least variance, `min Σ (s + a·m + b·h)²` over the image.
    ///
    /// Why: JPEG's error on smooth skin is rounding of the Y/Cb/Cr planes, correlated over
    /// millimetres (on a dark phantom at q90, 0.39/0.49/0.27 codes per pixel and still
    /// 0.11/0.20/0.11 after a 2-mm Gaussian), so the neighbour differences that
    /// [`crate::noise::NoiseLevels`] reads see none of it, yet in blue density on dark skin it is
    /// 0.026 OD at 2 mm, and the shading band's robust σ rose sixfold (0.0045 → 0.028), taking
    /// scars with it. The error enters the three bands through their rows of the inverse
    /// decomposition, so it is correlated between them; the relief's own scars are not (relief
    /// is grey). Among the unbiased shading estimates `k · OD` (`Σ k = 1`), which are exactly
    /// `s + (k·a_m)·m + (k·a_h)·h`, the one of least variance is then the least error: the
    /// minimum-variance distortionless response (Capon, "High-resolution frequency-wavenumber
    /// spectrum analysis", Proc. IEEE 57(8):1408–1418, 1969), here a regression of the shading
    /// band on the two chromophore bands. It measures the error at the band's own scale,
    /// whatever its spectrum, with no noise model.
    ///
    /// Used only when it removes at least 1 − [`MAX_NOISE_RATIO`]² of the band's variance and
    /// only where pixel noise is silent: on real faces the shading band is correlated with the
    /// hemoglobin band through the relief itself (the regression's `b` was −0.8 to −1.1 on 12
    /// of the 13 portraits of `../shared/photos`), and subtracting that would subtract relief.
    /// Clean and light or tan JPEG phantoms keep the model's maps (variance ratio above 0.64);
    /// dark JPEG phantoms at q90 read 0.12–0.14. Known gap: the melanin band it mixes in also
    /// carries the macules, and strong ones on dark skin come through as scars
    /// (`macules_on_dark_jpeg_at_q90_and_q75_are_not_scars` in `tests/accuracy.rs`).
    fn from_band_covariance(
        maps: &SkinMaps,
        reference: &crate::reference::SkinReference,
    ) -> Option<Relief> {
        let shading = maps.channel("scar_response")?;
        let [melanin, hemoglobin] = chromophore_bands(maps, reference)?;
        let (a, b, ratio) = least_variance_mix(
            shading.iter().copied(),
            melanin.iter().copied(),
            hemoglobin.iter().copied(),
        )?;
        if ratio > MAX_NOISE_RATIO * MAX_NOISE_RATIO {
            return None;
        }
        let mut response = shading.to_owned();
        for ((r, &m), &h) in response.iter_mut().zip(&melanin).zip(&hemoglobin) {
            *r += (a * f64::from(m) + b * f64::from(h)) as f32;
        }
        let energy = reference.scar_energy(&response);
        let (h, w) = response.dim();
        Some(Relief {
            response,
            energy,
            leak: Array2::from_elem((1, 1), [a as f32, b as f32]),
            block: h.max(w).max(1),
        })
    }

    /// `(k · a_m, k · a_h)` at working pixel `(y, x)`: how much of the melanin and hemoglobin
    /// band the relief holds there.
    pub fn leak_at(&self, (y, x): (usize, usize)) -> [f32; 2] {
        let (h, w) = self.leak.dim();
        self.leak[[(y / self.block).min(h - 1), (x / self.block).min(w - 1)]]
    }
}

/// `(a, b, ratio)`: the `a`, `b` minimising `Σ (s + a·m + b·h)²` over paired samples, and that
/// least sum over `Σ s²`; `None` when `m` and `h` are (nearly) collinear or `s` is all zero.
fn least_variance_mix(
    s: impl Iterator<Item = f32>,
    m: impl Iterator<Item = f32>,
    h: impl Iterator<Item = f32>,
) -> Option<(f64, f64, f64)> {
    let mut sums = [0.0f64; 6];
    for ((s, m), h) in s.zip(m).zip(h) {
        let (s, m, h) = (f64::from(s), f64::from(m), f64::from(h));
        for (sum, v) in sums
            .iter_mut()
            .zip([m * m, h * h, m * h, s * m, s * h, s * s])
        {
            *sum += v;
        }
    }
    let [mm, hh, mh, sm, sh, ss] = sums;
    let det = mm * hh - mh * mh;
    if ss <= 0.0 || det <= 1e-9 * mm * hh {
        return None;
    }
    let a = -(sm * hh - sh * mh) / det;
    let b = -(sh * mm - sm * mh) / det;
    // At the minimum the cross terms are −(a·Σsm + b·Σsh), so the sum is Σs² + a·Σsm + b·Σsh.
    let least = ss + a * sm + b * sh;
    Some((a, b, least / ss))
}

/// The melanin and hemoglobin maps through the model's scar band-pass.
fn chromophore_bands(
    maps: &SkinMaps,
    reference: &crate::reference::SkinReference,
) -> Option<[Array2<f32>; 2]> {
    let band = |name: &str| Some(reference.scar_band(&maps.channel(name)?.to_owned()));
    Some([band("melanin")?, band("hemoglobin")?])
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|c| a[c] * b[c]).sum()
}

/// The density weights `k` (`Σ k = 1`) that minimise `kᵀ·Q·k + 2·lᵀ·k`, with
/// `Q = diag(square) + p_m·a_m·a_mᵀ + p_h·a_h·a_hᵀ` and `l = linear` (the band's noise variance,
/// [`VarianceTerms::quadratic`]) plus the chromophores' (their band variances `prior`, the
/// columns `a`). By Lagrange, `k = Q⁻¹·(λ·1 − l)` with `λ = (1 + 1ᵀQ⁻¹l) / (1ᵀQ⁻¹1)`.
fn weights(terms: &VarianceTerms, columns: &[[f64; 3]; 2], prior: [f64; 2]) -> [f64; 3] {
    let (square, linear) = terms.quadratic();
    // Scaled by the larger prior, so that Q's entries are of order 1; the ridge keeps Q
    // invertible on a noiseless photo, where the answer is the Tsumura row.
    let scale = prior[0].max(prior[1]);
    let mut q = [[0.0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            q[i][j] = (0..2)
                .map(|c| prior[c] * columns[c][i] * columns[c][j])
                .sum::<f64>()
                / scale;
        }
        q[i][i] += square[i] / scale + 1e-12;
    }
    let l = linear.map(|v| v / scale);
    let solve_ones = solve(&q, &[1.0; 3]);
    let solve_l = solve(&q, &l);
    let lambda = (1.0 + solve_l.iter().sum::<f64>()) / solve_ones.iter().sum::<f64>();
    [0, 1, 2].map(|c| lambda * solve_ones[c] - solve_l[c])
}

/// 1.4826 × the median absolute value of a band-pass (whose median is about 0): its σ, were it
/// normal, without the tails that features make.
fn robust_spread(band: &Array2<f32>) -> f64 {
    1.4826 * median(band.iter().map(|&v| f64::from(v.abs())))
}

/// `x` with `m · x = b`, by Cramer's rule (m is symmetric positive definite, 3 × 3).
fn solve(m: &[[f64; 3]; 3], b: &[f64; 3]) -> [f64; 3] {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    [0, 1, 2].map(|c| {
        let mut mc = *m;
        for (row, &v) in mc.iter_mut().zip(b) {
            row[c] = v;
        }
        det(&mc) / d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's decomposition columns and shading row (`models/skin-v1.json`).
    const COLUMNS: [[f64; 3]; 2] = [
        [0.341595, 0.507213, 0.791232],
        [0.128287, 0.692455, 0.709964],
    ];
    const SHADING_ROW: [f64; 3] = [1.193568, 0.896277, -1.089845];
    /// The clean phantoms' chromophore band spread.
    const PRIOR: [f64; 2] = [0.01 * 0.01, 0.01 * 0.01];

    /// Independent noise of `band_noise` (band σ) per channel, no chromaticity filter.
    fn terms(band_noise: [f64; 3]) -> VarianceTerms {
        VarianceTerms {
            relative2: band_noise.map(|s| s * s),
            luminance_share: [0.0; 3],
            gain: crate::noise::BandGain::unit(),
        }
    }

    fn cost(t: &VarianceTerms, k: &[f64; 3], prior: [f64; 2]) -> f64 {
        t.variance(k)
            + (0..2)
                .map(|c| prior[c] * dot(k, &COLUMNS[c]).powi(2))
                .sum::<f64>()
    }

    #[test]
    fn low_noise_keeps_the_tsumura_shading_row() {
        // 8-bit rounding on light skin: 0.3 code of ~150, through the band (gain ~0.07).
        let k = weights(&terms([1.5e-4; 3]), &COLUMNS, PRIOR);
        for c in 0..3 {
            assert!((k[c] - SHADING_ROW[c]).abs() < 0.02, "{k:?}");
        }
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_noisy_blue_channel_gives_way_to_red_and_green() {
        // Dark skin under σ 0.002 linear noise (the dark phantom's levels 0.098, 0.024,
        // 0.0045): blue's density noise is 20 times red's.
        let band_noise = [0.0014, 0.0055, 0.030];
        let t = terms(band_noise);
        let k = weights(&t, &COLUMNS, PRIOR);
        assert!(
            (k.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "unbiased: {k:?}"
        );
        let weighted = t.variance(&k).sqrt();
        let tsumura = t.variance(&SHADING_ROW).sqrt();
        assert!(weighted < 0.25 * tsumura, "{weighted} vs {tsumura}");
        // The price is a bounded leak of pigment: the expected error still falls.
        assert!(cost(&t, &k, PRIOR).sqrt() < 0.3 * tsumura);
        assert!(dot(&k, &COLUMNS[0]).abs() < 0.35, "{k:?}");
    }

    #[test]
    fn a_wider_chromophore_texture_lets_less_pigment_in() {
        let t = terms([0.0014, 0.0055, 0.030]);
        let leak = |p: f64| dot(&weights(&t, &COLUMNS, [p * p; 2]), &COLUMNS[0]);
        // 0.31, 0.26, 0.16, 0.04 of the melanin band, and more noise in its place.
        let leaks = [0.01, 0.03, 0.1, 0.3].map(leak);
        assert!(leaks.windows(2).all(|w| w[1] < w[0]), "{leaks:?}");
        assert!(leaks[3] < 0.15 * leaks[0], "{leaks:?}");
    }

    #[test]
    fn the_weights_minimise_the_expected_error() {
        let t = terms([0.002, 0.004, 0.012]);
        let k = weights(&t, &COLUMNS, PRIOR);
        let best = cost(&t, &k, PRIOR);
        // Any step that keeps Σ k = 1 costs more.
        for step in [[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [1.0, 0.0, -1.0]] {
            for eps in [-0.05, -0.01, 0.01, 0.05] {
                let moved = [0, 1, 2].map(|c| k[c] + eps * step[c]);
                assert!(cost(&t, &moved, PRIOR) > best, "{moved:?}");
            }
        }
    }

    #[test]
    fn the_least_variance_mix_removes_an_error_shared_with_the_chromophore_bands() {
        // A relief texture and chromophore textures, independent, plus one blue-channel error
        // entering the three bands through their rows of the inverse (shading −1.09,
        // melanin 3.59, hemoglobin −1.05; skin-v1's).
        let n = 20_000;
        let wave = |i: usize, f: f64| ((i as f64) * f).sin();
        let relief: Vec<f64> = (0..n).map(|i| 0.005 * wave(i, 0.013)).collect();
        let melanin: Vec<f64> = (0..n).map(|i| 0.01 * wave(i, 0.0071)).collect();
        let hemoglobin: Vec<f64> = (0..n).map(|i| 0.01 * wave(i, 0.0043)).collect();
        let blue: Vec<f64> = (0..n).map(|i| 0.02 * wave(i, 0.0317)).collect();
        let s: Vec<f32> = (0..n)
            .map(|i| (relief[i] - 1.09 * blue[i]) as f32)
            .collect();
        let m: Vec<f32> = (0..n)
            .map(|i| (melanin[i] + 3.59 * blue[i]) as f32)
            .collect();
        let h: Vec<f32> = (0..n)
            .map(|i| (hemoglobin[i] - 1.05 * blue[i]) as f32)
            .collect();
        let (a, b, ratio) =
            least_variance_mix(s.iter().copied(), m.iter().copied(), h.iter().copied()).unwrap();
        let error =
            |i: usize| f64::from(s[i]) + a * f64::from(m[i]) + b * f64::from(h[i]) - relief[i];
        let rms = |f: &dyn Fn(usize) -> f64| {
            ((0..n).map(|i| f(i).powi(2)).sum::<f64>() / n as f64).sqrt()
        };
        let before = rms(&|i| f64::from(s[i]) - relief[i]);
        let after = rms(&error);
        assert!(after < 0.3 * before, "{after} vs {before} (a {a}, b {b})");
        assert!(ratio < 0.5, "{ratio}");
        // Without the shared error nothing is mixed in.
        let clean_s: Vec<f32> = relief.iter().map(|&v| v as f32).collect();
        let clean_m: Vec<f32> = melanin.iter().map(|&v| v as f32).collect();
        let clean_h: Vec<f32> = hemoglobin.iter().map(|&v| v as f32).collect();
        let (a, b, ratio) = least_variance_mix(
            clean_s.iter().copied(),
            clean_m.iter().copied(),
            clean_h.iter().copied(),
        )
        .unwrap();
        assert!(
            a.abs() < 0.05 && b.abs() < 0.05 && ratio > 0.95,
            "{a} {b} {ratio}"
        );
    }

    #[test]
    fn robust_spread_is_sigma_for_a_symmetric_band() {
        let band = Array2::from_shape_fn((1, 5), |(_, x)| [-2.0, -1.0, 0.0, 1.0, 2.0][x]);
        assert!((robust_spread(&band) - 1.4826).abs() < 1e-6);
    }
}

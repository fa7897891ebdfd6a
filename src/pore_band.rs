//! The grey pore band: the pore-scale band-pass of the shading estimate that spreads least on
//! the region's own skin.
//!
//! Why: the model's `pore_response` is the band of `u · OD`, with `u` (0.56, 0.29, 0.15) the
//! weights least disturbed by equal noise in every channel's code values (the manifest's
//! `physics.pore_weights`). Those weights let in 0.457 of the melanin band and 0.379 of the
//! hemoglobin band, on the grounds that pigment features are far larger than pores. Skin's
//! pigment texture has a fine-scale part all the same, and it grows with the melanin: on the
//! independent renderer's clean dark skin at 5 px/mm (`scripts/independent_phantoms.py`, seed
//! 2) the band's robust σ was 0.0189 against 0.0073 on its tan skin, which put the pore
//! threshold (median + 5σ) above 11 of its 67 pores. Pores darken every channel alike (a
//! shadowed opening), pigment texture does not, and the photo itself says how much of each
//! kind of spread it holds.
//!
//! How: any weights `w` with `Σ w_c = 1` pass a grey darkening with gain 1 (a pore, a scar's
//! floor, exposure), so the band of `w · OD` is `Σ w_c · band(OD_c)`, a mix of the three
//! channels' density bands ([`DensityBands`]). The weights that minimise its variance over the
//! region's skin are `w = C⁻¹·1 / (1ᵀ·C⁻¹·1)`, with `C` the 3 × 3 covariance of the channel
//! bands there: the minimum-variance distortionless response (Capon J., "High-resolution
//! frequency-wavenumber spectrum analysis", Proc. IEEE 57(8):1408–1418, 1969; Van Trees,
//! *Optimum Array Processing*, 2002, ch. 6), with grey as the look direction. `C` holds
//! whatever the region's skin puts into the band, pigment and blood texture, the photo's
//! noise, JPEG's chroma errors, so the weights need no model of any of them. It is measured
//! without the pixels where the model's band stands out ([`OUTLIER_K`]): pores, scars and
//! hairs are what is looked for, not what it is looked for against. On the dark skin above
//! the weights came out near (1.58, −0.39, −0.19), which leaves 0.19 of the melanin band in,
//! and the spread fell to 0.0115: 66 of its 67 pores peak above 5σ (56 with `u`).
//!
//! The weights are one triple per region, not per pixel: a covariance needs many pixels, and
//! the pore threshold is per region too. The band's predicted noise per pixel (for
//! [`crate::metrics`]' noise scaling) is recomputed for them ([`SkinMaps::pore_noise_with`]).
//!
//! Less spread is not always a lower threshold: JPEG's chroma errors are heavy-tailed, the
//! weights can amplify them, and the pore threshold also answers to the mirrored detector's
//! false alarms. Both bands pass grey with gain 1, so their thresholds are in the same units,
//! and `measure_region` finds the region's pores on the band whose threshold is lower (on the
//! independent renderer's brown noise-and-JPEG image at 10 px/mm, seed 2: 0.131 on the grey
//! band against 0.110 on the model's, whose 66 pores of 67 the spread alone would have cut to
//! 58).

use ndarray::{Array2, ArrayView2};

use crate::model::{SkinMaps, optical_density};

/// Pixels further than this many robust σ from the median of the model's pore band are left
/// out of the covariance: pores, scars, hairs and specular glints.
pub const OUTLIER_K: f32 = 3.0;

/// Fewest skin pixels the covariance is measured on; smaller regions keep the model's band.
///
/// Why: six numbers are estimated; 2000 pixels (20 mm² at 10 px/mm) pin each to about 2% of
/// its spread, while a band-passed map's neighbouring pixels are correlated over the
/// surround's reach, so the effective count is a few hundred.
pub const MIN_PIXELS: usize = 2000;

/// The grey band is measured only when it cuts the band's spread over the region's skin to
/// this fraction of the model's or less; otherwise the model's `pore_response` stands.
///
/// Why: a few percent less spread is within what the covariance's own sampling error can
/// give, and the model's band is the one the manifest describes. A photo whose skin is all
/// noise (the weights then near `u` itself) gains nothing.
pub const MAX_SPREAD_RATIO: f64 = 0.9;

/// The pore band-pass of each channel's optical density over a crop's working image,
/// `[R, G, B]`: the model's `pore_response` is `Σ u_c` times these.
#[derive(Debug, Clone)]
pub struct DensityBands {
    bands: [Array2<f32>; 3],
}

impl DensityBands {
    /// The channel density bands of `maps`' model input; `None` when the model does not
    /// describe its filters, its pore band or the band's weights.
    ///
    /// Only red and green are filtered: blue's band is what the model's own band leaves,
    /// `(pore_response − u_R·band_R − u_G·band_G) / u_B`, since the band is linear in the
    /// densities (`the_pore_band_is_the_weighted_sum_of_the_channel_density_bands` in
    /// `src/reference.rs`). That saves a third of the density decoding and the blurs.
    pub fn compute(maps: &SkinMaps) -> Option<DensityBands> {
        let reference = maps.weighting.as_ref()?.reference();
        let model = maps.channel("pore_response")?;
        let u = maps.low_noise?.weights;
        if u[2].abs() < 1e-3 {
            return None;
        }
        let (w, h) = maps.srgb.dimensions();
        let band = |c: usize| {
            let density = Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
                optical_density(maps.srgb.get_pixel(x as u32, y as u32).0[c])
            });
            reference.pore_band(&density)
        };
        let (red, green) = (band(0), band(1));
        if model.dim() != red.dim() {
            return None;
        }
        let mut blue = model.to_owned();
        ndarray::Zip::from(&mut blue)
            .and(&red)
            .and(&green)
            .for_each(|b, &r, &g| *b = (*b - u[0] * r - u[1] * g) / u[2]);
        Some(DensityBands {
            bands: [red, green, blue],
        })
    }

    /// The band of channel `c` (0 = R, 1 = G, 2 = B).
    pub fn band(&self, c: usize) -> ArrayView2<'_, f32> {
        self.bands[c].view()
    }
}

/// The grey pore band of one region: its weights and the band they give.
#[derive(Debug, Clone)]
pub struct GreyBand {
    /// Channel weights `w` (R, G, B), summing to 1.
    pub weights: [f32; 3],
    /// `Σ w_c · band(OD_c)` over the region's window, natural-log OD, signed as
    /// `pore_response`.
    pub response: Array2<f32>,
}

/// The grey band of least spread over `mask`'s skin (see the module documentation), from the
/// channel bands over the region's window, the model's `pore_response` there with its robust
/// `(median, σ)` over `mask`, and the model's own weights `u`. `None` when the region is too
/// small ([`MIN_PIXELS`]), the covariance is singular, or the band would not spread less
/// ([`MAX_SPREAD_RATIO`]).
pub fn least_spread(
    bands: [ArrayView2<'_, f32>; 3],
    mask: &Array2<bool>,
    model: ArrayView2<'_, f32>,
    (median, sigma): (f32, f32),
    u: [f32; 3],
) -> Option<GreyBand> {
    let covariance = skin_covariance(&bands, mask, model, (median, sigma))?;
    let weights = capon_weights(&covariance)?;
    let variance = |k: &[f64; 3]| quadratic(&covariance, k);
    let ratio = (variance(&weights) / variance(&u.map(f64::from))).sqrt();
    // A NaN ratio (no spread at all) pays nothing either.
    if ratio.is_nan() || ratio > MAX_SPREAD_RATIO {
        return None;
    }
    let weights = weights.map(|k| k as f32);
    let mut response = bands[0].mapv(|v| weights[0] * v);
    for c in 1..3 {
        response.zip_mut_with(&bands[c], |r, &v| *r += weights[c] * v);
    }
    Some(GreyBand { weights, response })
}

/// The 3 × 3 covariance of the channel bands over `mask`'s pixels where the model's band is
/// within [`OUTLIER_K`] σ of its median; `None` below [`MIN_PIXELS`] such pixels.
fn skin_covariance(
    bands: &[ArrayView2<'_, f32>; 3],
    mask: &Array2<bool>,
    model: ArrayView2<'_, f32>,
    (median, sigma): (f32, f32),
) -> Option<[[f64; 3]; 3]> {
    let limit = OUTLIER_K * sigma;
    let (mut n, mut sum, mut products) = (0usize, [0f64; 3], [[0f64; 3]; 3]);
    for ((p, &inside), &m) in mask.indexed_iter().zip(model.iter()) {
        if !inside || (m - median).abs() > limit {
            continue;
        }
        let v = [0, 1, 2].map(|c| f64::from(bands[c][p]));
        n += 1;
        for i in 0..3 {
            sum[i] += v[i];
            for j in 0..3 {
                products[i][j] += v[i] * v[j];
            }
        }
    }
    if n < MIN_PIXELS {
        return None;
    }
    let n = n as f64;
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| products[i][j] / n - sum[i] * sum[j] / (n * n))
    }))
}

/// `C⁻¹·1 / (1ᵀ·C⁻¹·1)` by cofactors; `None` when `C` is singular or the weights not finite.
fn capon_weights(c: &[[f64; 3]; 3]) -> Option<[f64; 3]> {
    let cof = |i: usize, j: usize| {
        let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
        let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
        c[r0][c0] * c[r1][c1] - c[r0][c1] * c[r1][c0]
    };
    let det: f64 = (0..3).map(|j| c[0][j] * cof(0, j)).sum();
    if det.is_nan() || det.abs() <= 1e-30 {
        return None;
    }
    // C⁻¹ = adj(C) / det and adj(C)[i][j] = cof(j, i); C is symmetric, so row sums of the
    // cofactor matrix give C⁻¹·1 up to 1/det, which the normalisation cancels.
    let x: [f64; 3] = std::array::from_fn(|i| (0..3).map(|j| cof(j, i)).sum::<f64>());
    let total: f64 = x.iter().sum();
    let w = x.map(|v| v / total);
    w.iter().all(|v| v.is_finite()).then_some(w)
}

/// `kᵀ·C·k`.
fn quadratic(c: &[[f64; 3]; 3], k: &[f64; 3]) -> f64 {
    (0..3)
        .map(|i| (0..3).map(|j| k[i] * c[i][j] * k[j]).sum::<f64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capon_weights_sum_to_one_and_minimise_the_variance() {
        // Channel 0 quiet, 1 and 2 share a strong common texture (a "pigment" direction).
        let c = [[1.0, 0.2, 0.1], [0.2, 4.0, 3.5], [0.1, 3.5, 4.0]];
        let w = capon_weights(&c).unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        let best = quadratic(&c, &w);
        // No other unit-sum weights do better: perturb along the two directions that keep
        // the sum.
        for (a, b) in [(0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05)] {
            let k = [w[0] + a, w[1] - a + b, w[2] - b];
            assert!(quadratic(&c, &k) > best, "{k:?} beats {w:?}");
        }
        // The shared texture is cancelled by opposite weights on channels 1 and 2.
        assert!(w[0] > 0.5, "{w:?}");
    }

    /// A deterministic pseudo-random value in [−0.5, 0.5) per (stream, pixel).
    fn hash(stream: u64, y: usize, x: usize) -> f32 {
        let mut v = stream
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((y as u64) << 32 | x as u64);
        v ^= v >> 33;
        v = v.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        v ^= v >> 33;
        (v >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// Channel bands of skin whose pore-scale spread is melanin texture (the model's melanin
    /// vector, 0.05 OD) with a little independent noise in each channel (`noise` OD, scaled
    /// per channel by `noise_scale`), and grey pores of 0.1 OD every 16 pixels.
    fn bands(noise: f32, noise_scale: [f32; 3], texture: f32) -> ([Array2<f32>; 3], Vec<Pixel>) {
        const MELANIN: [f32; 3] = [0.341595, 0.507213, 0.791232];
        let dim = (96, 96);
        let pores: Vec<Pixel> = (0..6)
            .flat_map(|i| (0..6).map(move |j| (8 + 16 * i, 8 + 16 * j)))
            .collect();
        let pore = |p: Pixel| if pores.contains(&p) { 0.1 } else { 0.0 };
        let bands = [0, 1, 2].map(|c| {
            Array2::from_shape_fn(dim, |(y, x)| {
                texture * MELANIN[c] * hash(7, y, x)
                    + noise * noise_scale[c] * hash(c as u64, y, x)
                    + pore((y, x))
            })
        });
        (bands, pores)
    }

    type Pixel = (usize, usize);

    const U: [f32; 3] = [0.56, 0.29, 0.15];

    fn model_band(bands: &[Array2<f32>; 3]) -> Array2<f32> {
        let mut m = bands[0].mapv(|v| U[0] * v);
        for c in 1..3 {
            m.zip_mut_with(&bands[c], |a, &v| *a += U[c] * v);
        }
        m
    }

    fn spread(map: &Array2<f32>, skip: &[Pixel]) -> f32 {
        let v: Vec<f64> = map
            .indexed_iter()
            .filter(|(p, _)| !skip.contains(p))
            .map(|(_, &v)| f64::from(v))
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt() as f32
    }

    #[test]
    fn melanin_texture_is_cancelled_and_grey_pores_keep_their_contrast() {
        let (bands, pores) = bands(0.004, [1.0; 3], 0.2);
        let model = model_band(&bands);
        let mask = Array2::from_elem(model.dim(), true);
        // The texture's spread is uniform, so mean and standard deviation stand in for the
        // robust statistics here.
        let stats = (0.0, spread(&model, &pores));
        let views = [bands[0].view(), bands[1].view(), bands[2].view()];
        let grey = least_spread(views, &mask, model.view(), stats, U).expect("it pays");
        let sum: f32 = grey.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{:?}", grey.weights);
        // Each pore's contrast is kept (grey passes with gain 1) ...
        for &p in &pores {
            let (got, truth) = (grey.response[p] - model_band_without(&bands, p, &grey), 0.1);
            assert!((got - truth).abs() < 1e-5, "pore {p:?}: {got}");
        }
        // ... while the skin's spread falls well below the model band's, most of which is
        // the melanin texture (u lets in 0.457 of it).
        let (before, after) = (spread(&model, &pores), spread(&grey.response, &pores));
        assert!(after < 0.3 * before, "spread {before} -> {after}");
    }

    /// The response at `p` without the pore: the same weights on the bands less the pore.
    fn model_band_without(bands: &[Array2<f32>; 3], p: Pixel, grey: &GreyBand) -> f32 {
        (0..3).map(|c| grey.weights[c] * (bands[c][p] - 0.1)).sum()
    }

    #[test]
    fn where_the_model_weights_are_already_best_its_band_stands() {
        // No texture and each channel's noise in inverse proportion to √u: the model's u is
        // then the least-variance grey estimate, and nothing is gained.
        let scale = U.map(|u| 1.0 / u.sqrt());
        let (bands, pores) = bands(0.01, scale, 0.0);
        let model = model_band(&bands);
        let mask = Array2::from_elem(model.dim(), true);
        let stats = (0.0, spread(&model, &pores));
        let views = [bands[0].view(), bands[1].view(), bands[2].view()];
        assert!(least_spread(views, &mask, model.view(), stats, U).is_none());
        // Too few skin pixels: no covariance is trusted.
        let small = Array2::from_shape_fn(model.dim(), |(y, x)| y < 40 && x < 40);
        let (bands, pores) = self::bands(0.004, [1.0; 3], 0.2);
        let views = [bands[0].view(), bands[1].view(), bands[2].view()];
        let model = model_band(&bands);
        let stats = (0.0, spread(&model, &pores));
        assert!(least_spread(views, &small, model.view(), stats, U).is_none());
        assert!(least_spread(views, &mask, model.view(), stats, U).is_some());
    }

    #[test]
    fn a_singular_covariance_gives_no_weights() {
        let c = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]];
        assert!(capon_weights(&c).is_none());
    }
}

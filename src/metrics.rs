//! Stage 6: per-region metrics from [`crate::model::SkinMaps`] → [`RegionMetrics`].
//!
//! Why: clinicians and trials need a handful of interpretable numbers per region — how many
//! pores and how big, how much skin is hyperpigmented, how many atrophic scars, how red, what
//! constitutive tone — in physical units, so that sessions and subjects can be compared.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::model::{SkinMaps, optical_density, srgb_to_linear};
use crate::regions::RegionMask;

/// Constitutive skin tone in CIELAB (D65) and the Individual Typology Angle, measured on the
/// region's skin outside its findings (pores, macules, scars, erythema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tone {
    /// ITA° = atan((L* − 50) / b*) · 180/π (Chardon, Cretois & Hourseau, Int J Cosmet Sci
    /// 13:191–208, 1991).
    pub ita_deg: f64,
    /// Chardon's category: very_light (> 55°), light (41–55°), intermediate (28–41°),
    /// tan (10–28°), brown (−30–10°), dark (< −30°).
    pub category: String,
    /// CIELAB L*.
    #[serde(rename = "L")]
    pub l: f64,
    /// CIELAB a*.
    pub a: f64,
    /// CIELAB b*.
    pub b: f64,
}

/// Pore measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pores {
    /// Number of pores found.
    pub count: u32,
    /// Pores per cm² of region.
    pub density_per_cm2: f64,
    /// Mean equivalent-circle diameter, mm.
    pub mean_diameter_mm: f64,
    /// Fraction of the region covered by pores.
    pub area_fraction: f64,
    /// 0 (none) … 100 (most severe); formula in the README.
    pub severity: f64,
}

/// Hyperpigmentation measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hyperpigmentation {
    /// Number of distinct pigmented macules.
    pub spot_count: u32,
    /// Fraction of the region that is hyperpigmented: each macule's half-max extent (read on
    /// the melanin map itself for macules 5 mm across or wider), faint ones near the detection
    /// threshold weighted down (see [`SOFT_MARGIN`] and [`SOFT_SIGMAS`]).
    pub area_fraction: f64,
    /// Mean melanin excess over local background inside the spots (optical density); for
    /// melasma-sized patches found on the wide background (σ 10 mm), over that background.
    pub mean_contrast: f64,
    /// 0 (none) … 100 (most severe).
    pub severity: f64,
}

/// Atrophic scar measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scarring {
    /// Number of scars found.
    pub count: u32,
    /// Fraction of the region covered by scars.
    pub area_fraction: f64,
    /// 0 (none) … 100 (most severe).
    pub severity: f64,
}

/// Redness (erythema) measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redness {
    /// Mean hemoglobin optical density component (erythema index, model units).
    pub erythema_index: f64,
    /// Fraction of the region with hemoglobin clearly above its local background (faint patches
    /// weighted down as for pigment, see [`SOFT_MARGIN`]).
    pub area_fraction: f64,
    /// 0 (none) … 100 (most severe).
    pub severity: f64,
}

/// All measurements of one region. A metric is absent when it could not be computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionMetrics {
    /// Pores.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pores: Option<Pores>,
    /// Hyperpigmentation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hyperpigmentation: Option<Hyperpigmentation>,
    /// Atrophic scars.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scarring: Option<Scarring>,
    /// Redness.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redness: Option<Redness>,
    /// Skin tone.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tone: Option<Tone>,
}

/// Detection settings. The defaults were calibrated on phantoms (`tests/accuracy.rs`,
/// `examples/accuracy_report.rs`); every length is in millimetres so the settings do not
/// depend on the model's working scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSettings {
    /// A pore is a connected set of pixels with `pore_response` above this (OD). Default 0.04.
    pub pore_threshold: f32,
    /// Largest pore diameter, mm; larger dark spots are scars or shadows. Default 0.6.
    pub pore_max_diameter_mm: f64,
    /// Smallest pore diameter counted, mm. Default 0.08.
    pub pore_min_diameter_mm: f64,
    /// Scar candidates are connected sets with `scar_energy` (local RMS of the scar band-pass)
    /// above this (OD), or above twice the region's robust `scar_response` σ when that is
    /// higher (the RMS that texture and noise alone give is about one σ). Default 0.008. The
    /// candidate only delimits where to look: the tests below decide what is a scar.
    pub scar_threshold: f32,
    /// A candidate is a scar when its darkest floor or shadowed wall reaches this
    /// `scar_response` (OD; icepick and boxcar scars)… Default 0.07: a narrow, shallow icepick
    /// (0.5 mm across, 0.3 mm deep) reads about 0.075 at the scar scale, where the band-pass
    /// keeps only ~20% of a 0.5-mm feature's depth; 0.08 missed it.
    pub scar_floor_threshold: f32,
    /// …or when it holds a relief dipole: a lit wall at least this much brighter than its
    /// surroundings (OD; rolling scars, whose relief is a bright/dark pair with little net
    /// darkening) next to a shadowed one. The bright lobe must also clear 3 robust σ of the
    /// region's `scar_response` (texture and noise make lobes too). Default 0.015.
    pub scar_wall_threshold: f32,
    /// …and that bright lobe must be at least this fraction of the dark one. A darkening
    /// without relief (a pore cluster, a shadow) also dips below zero around itself, but only
    /// through the band-pass surround: for this difference of Gaussians (σ 0.4/2 mm) that
    /// undershoot is at most ~10% of the peak, whatever the darkening's size. Default 0.25.
    #[serde(default = "default_scar_wall_ratio")]
    pub scar_wall_ratio: f32,
    /// Smallest scar diameter, mm (atrophic scars start where pores end). Default 0.5.
    pub scar_min_diameter_mm: f64,
    /// Gaussian pre-smoothing of the `*_excess` maps, mm: the chromophore projection amplifies
    /// pixel noise about 5×, and macules are millimetre-sized. Default 0.3.
    pub excess_smoothing_mm: f64,
    /// A pigmented macule is a connected set with smoothed `melanin_excess` above this.
    /// Default 0.06.
    pub pigment_threshold: f32,
    /// Smallest macule area, mm². Default 0.8 (a 1-mm macule).
    pub pigment_min_area_mm2: f64,
    /// An erythema patch is a connected set with smoothed `hemoglobin_excess` above this.
    /// Default 0.05.
    pub redness_threshold: f32,
    /// Smallest erythema patch, mm². Default 0.8.
    pub redness_min_area_mm2: f64,
    /// Detection thresholds adapt to each region's own texture: a threshold is raised to
    /// `median + noise_k · σ̂` of its map inside the region (σ̂ = 1.4826 · MAD, a robust noise
    /// estimate), so noisy or heavily textured photos do not turn texture into findings
    /// (a constant-false-alarm-rate detector). Default 5.
    pub noise_k: f32,
    /// Pores are darkenings, so `pore_response` has no true detections below zero: running
    /// the pore detector on the negated map counts the false alarms that texture, sensor noise
    /// and JPEG blocking produce, with their real (heavy-tailed, spatially correlated)
    /// statistics rather than a Gaussian σ. The pore threshold is raised until that mirrored
    /// detector finds at most this many per cm² of region ("negative detections", as radio
    /// astronomy source finders estimate their reliability: Serra, Jurek & Flöer, PASA 29,
    /// 2012). Default 0.1.
    #[serde(default = "default_pore_false_alarms_per_cm2")]
    pub pore_false_alarms_per_cm2: f64,
}

fn default_scar_wall_ratio() -> f32 {
    MetricSettings::default().scar_wall_ratio
}

fn default_pore_false_alarms_per_cm2() -> f64 {
    MetricSettings::default().pore_false_alarms_per_cm2
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            pore_threshold: 0.04,
            pore_max_diameter_mm: 0.6,
            pore_min_diameter_mm: 0.08,
            scar_threshold: 0.008,
            scar_floor_threshold: 0.07,
            scar_wall_threshold: 0.015,
            scar_wall_ratio: 0.25,
            scar_min_diameter_mm: 0.5,
            excess_smoothing_mm: 0.3,
            pigment_threshold: 0.06,
            pigment_min_area_mm2: 0.8,
            redness_threshold: 0.05,
            redness_min_area_mm2: 0.8,
            noise_k: 5.0,
            pore_false_alarms_per_cm2: 0.1,
        }
    }
}

/// The region's mask resampled onto the maps' working-scale grid (nearest neighbour on pixel
/// centres), so every working pixel is either in or out.
pub fn working_mask(maps: &SkinMaps, region: &RegionMask) -> Array2<bool> {
    let (_, h, w) = maps.maps.dim();
    let (x0, y0, _, _) = maps.crop;
    let (mw, mh) = region.mask.dimensions();
    let xs: Vec<Option<u32>> = (0..w)
        .map(|x| {
            let px = f64::from(x0) + (x as f64 + 0.5) / maps.zoom;
            (px < f64::from(mw)).then_some(px as u32)
        })
        .collect();
    Array2::from_shape_fn((h, w), |(y, x)| {
        let py = f64::from(y0) + (y as f64 + 0.5) / maps.zoom;
        match xs[x] {
            Some(px) if py < f64::from(mh) => region.mask.get_pixel(px, py as u32).0[0] != 0,
            _ => false,
        }
    })
}

/// Width of the soft detection ramp of pigment and redness patches, as a fraction of the
/// physical threshold ([`MetricSettings::pigment_threshold`],
/// [`MetricSettings::redness_threshold`]; see `measure_region`): a patch whose peak is at the
/// detection threshold adds 0 to the area, one a ramp width above it or more adds its whole
/// extent. The ramp is this fraction of the physical threshold or [`SOFT_SIGMAS`] robust σ of
/// the map, whichever is wider.
pub const SOFT_MARGIN: f32 = 0.5;

/// Width of the soft detection ramp, in robust σ of the smoothed excess map, where the noise
/// (sensor noise and mottle) rather than the physical threshold sets the detection threshold.
/// Why σ and not a fraction of that threshold: at `median + 5σ` half the threshold is 2.5σ,
/// so macules standing 6–8σ clear of a mottled map (brown and dark skin, whose mottle grows with
/// its melanin) counted 0.3–0.8 of their extent and the area read half the truth. One σ keeps
/// the ramp's purpose (a patch re-photographed at the threshold does not jump in whole) at the
/// scale the map actually jitters on: on the 13 portraits re-captured with nuisances
/// (`examples/noise_floor.rs`), the summed area change stays 0.56 of the summed area, as with
/// the wider ramp.
pub const SOFT_SIGMAS: f32 = 1.0;

/// The detections of one region, kept for overlays (working-scale pixel masks).
#[derive(Debug, Clone)]
pub struct Detections {
    /// Pore pixels.
    pub pores: Array2<bool>,
    /// Pigmented macule pixels.
    pub pigment: Array2<bool>,
    /// Scar pixels.
    pub scars: Array2<bool>,
    /// Erythema pixels.
    pub redness: Array2<bool>,
}

/// Measures one region. Hidden regions get no metrics.
pub fn measure_region(
    maps: &SkinMaps,
    region: &RegionMask,
    settings: &MetricSettings,
) -> (RegionMetrics, Option<Detections>) {
    if !region.visible {
        return (RegionMetrics::default(), None);
    }
    let px_per_mm = maps.px_per_mm;
    let full_mask = working_mask(maps, region);
    let Some(window) = Window::around(&full_mask, window_margin_px(px_per_mm)) else {
        return (RegionMetrics::default(), None);
    };
    let mask = window.cut(full_mask.view()).to_owned();
    drop(full_mask);
    let n = mask.iter().filter(|&&m| m).count();
    let mm2_per_px = 1.0 / (px_per_mm * px_per_mm);
    let area_mm2 = n as f64 * mm2_per_px;
    let channel = |name: &str| window.cut(required(maps.channel(name), name));

    // Scars first: their footprint is excluded from pore detection, so a scar's dark floor
    // is not also counted as a cluster of pores.
    let relief = |name: &str| window.cut(required(maps.measured(name), name));
    let energy = relief("scar_energy");
    let scar_response = relief("scar_response");
    let (r_median, r_sigma) = robust_stats(scar_response, &mask);
    // Floors are judged on the model's own shading band, dipoles on the noise-weighted
    // relief (the same map when the photo's noise does not call for the weighting).
    let floor_response = channel("scar_response");
    let (f_median, f_sigma) = robust_stats(floor_response, &mask);
    let floor = settings
        .scar_floor_threshold
        .max(f_median + settings.noise_k * f_sigma);
    let wall = settings.scar_wall_threshold.max(RELIEF_LOBE_K * r_sigma);
    let min_scar_px = disk_area_px(settings.scar_min_diameter_mm, px_per_mm);
    let candidates = threshold(energy, &mask, settings.scar_threshold.max(2.0 * r_sigma));
    let leak = ChromophoreLeak::fit(maps, &mask, window.origin());
    let relief_at = |p: Pixel| leak.explained(p) <= LEAK_MAX_EXPLAINED && leak.grey(p);
    // A dark floor: deep enough, and not the chromophore leak (see [`ChromophoreLeak`]).
    let is_floor = |p: Pixel| floor_response[p] > floor && relief_at(p);
    // A relief dipole: a lit wall next to a shadowed one, the shadowed wall relief too (a
    // flat-topped erythema patch that leaks into the shading rings itself with a band-pass
    // undershoot a quarter as deep). The walls are looked for a little beyond the candidate
    // (see [`DIPOLE_MARGIN_MM`]).
    let dipole_margin = (DIPOLE_MARGIN_MM * px_per_mm).round() as usize;
    let relief_dipole = |candidate: &[Pixel]| {
        let pixels = &grow(candidate, dipole_margin, &mask);
        let (lo, hi) = pixels.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &p| {
            (lo.min(scar_response[p]), hi.max(scar_response[p]))
        });
        let (dark, bright) = (hi - r_median, r_median - lo);
        let shadow_is_relief = pixels
            .iter()
            .max_by(|p, q| scar_response[**p].total_cmp(&scar_response[**q]))
            .is_none_or(|&p| relief_at(p));
        bright > wall
            && dark > wall
            && bright >= settings.scar_wall_ratio * dark
            && shadow_is_relief
    };
    // A further lesion inside a candidate holds a dipole of its own: its shadowed wall is a
    // peak of the shading band, not the flank of a scar beside it.
    let floor_reach = (SCAR_FLOOR_REACH_MM * px_per_mm).ceil() as usize;
    let own_dipole = |pixels: &[Pixel]| {
        relief_dipole(pixels)
            && pixels
                .iter()
                .max_by(|p, q| scar_response[**p].total_cmp(&scar_response[**q]))
                .is_some_and(|&p| disk_max(scar_response, p, floor_reach) <= scar_response[p])
    };
    // The darkest point of a set of pixels passes the floor's relief tests (grey, not the
    // chromophore leak), whatever its depth: see [`split_scars`].
    let darkest_is_relief = |pixels: &[Pixel]| {
        pixels
            .iter()
            .max_by(|p, q| floor_response[**p].total_cmp(&floor_response[**q]))
            .is_some_and(|&p| relief_at(p))
    };
    let scar_candidates: Vec<Blob> = components(&candidates)
        .into_iter()
        .filter(|b| b.len() as f64 >= min_scar_px)
        .filter(|b| b.pixels.iter().any(|&p| is_floor(p)) || relief_dipole(&b.pixels))
        .filter(|b| {
            !peak_on_boundary(
                b,
                scar_response.mapv(|v| (v - r_median).abs()).view(),
                &mask,
            )
        })
        .collect();
    // The reported footprint is the extent at half the peak energy, which, like the pores'
    // half-max size, does not grow with the detection threshold or the scar's depth.
    let mut taken = Array2::from_elem(mask.dim(), false);
    let split: Vec<Blob> = scar_candidates
        .iter()
        .flat_map(|b| {
            split_scars(
                b,
                energy,
                &ReliefTests {
                    is_floor: &is_floor,
                    dipole: &own_dipole,
                    darkest_is_relief: &darkest_is_relief,
                },
                (&mask, maps.relief().is_some()),
                &mut taken,
                px_per_mm,
            )
        })
        .filter(|b| b.len() as f64 >= min_scar_px)
        .collect();
    // Each scar is judged at its own floor; an extent that only reaches another scar's floor
    // is that scar's skirt (see [`own_floors`]).
    let (mut scars, floors): (Vec<Blob>, Vec<Pixel>) =
        own_floors(&split, scar_response, &is_floor, &own_dipole)
            .into_iter()
            .zip(split)
            .filter_map(|(floor, scar)| Some((scar, floor?)))
            .unzip();
    let mut exclusion = paint(&scars, mask.dim());

    // A pore narrower than about one source pixel cannot be told from noise, whatever the
    // working scale: upsampling adds no detail.
    let pore_min_mm = smallest_pore_mm(settings, px_per_mm / maps.zoom);
    // The grey band of least spread over the region's skin (see [`crate::pore_band`]), where
    // it spreads less than the model's; which of the two the pores are found on is decided
    // by their thresholds, below.
    let model_pore = channel("pore_response");
    let model_stats = robust_stats(model_pore, &mask);
    let grey = maps
        .density_bands()
        .zip(maps.low_noise)
        .and_then(|(bands, low_noise)| {
            crate::pore_band::least_spread(
                [0, 1, 2].map(|c| window.cut(bands.band(c))),
                &mask,
                model_pore,
                model_stats,
                low_noise.weights,
            )
        });
    let (min_pore, max_pore) = (
        disk_area_px(pore_min_mm, px_per_mm),
        disk_area_px(settings.pore_max_diameter_mm, px_per_mm),
    );
    // Candidates are thresholded on `detection` (the band scaled to the region's noise, see
    // [`noise_scaled`]); a pore's size and strength are read on `response` itself.
    let detect_pores = |detection: ndarray::ArrayView2<'_, f32>,
                        response: ndarray::ArrayView2<'_, f32>,
                        t: f32,
                        exclusion: &Array2<bool>|
     -> Vec<Blob> {
        let mut candidates = threshold(detection, &mask, t);
        candidates.zip_mut_with(exclusion, |p, &s| *p &= !s);
        components(&candidates)
            .into_iter()
            .filter(|b| !peak_on_boundary(b, response, &mask))
            .map(|b| half_max_extent(&b, response, &mask, 16))
            .filter(|b| (min_pore..=max_pore).contains(&(b.len() as f64)))
            .collect()
    };
    // The detection map (the band scaled to the region's noise, see [`noise_scaled`]) and
    // the threshold that holds the mirrored detector to its false alarms, for one pore band.
    let dipole_reach = (RELIEF_PARTNER_MM * px_per_mm).ceil() as usize;
    let allowed = (settings.pore_false_alarms_per_cm2 * area_mm2 / 100.0).floor() as usize;
    let pore_threshold = |response: ndarray::ArrayView2<'_, f32>,
                          stats: (f32, f32),
                          noise: Option<ndarray::ArrayView2<'_, f32>>,
                          exclusion: &Array2<bool>|
     -> (Option<Array2<f32>>, f32) {
        let scaled = noise.map(|noise| noise_scaled(response, stats, noise, &mask, px_per_mm));
        let detection = scaled.as_ref().map_or(response, |d| d.view());
        let t0 = settings
            .pore_threshold
            .max(stats.0 + settings.noise_k * stats.1);
        let negated = detection.mapv(|v| -v);
        let negated_response = response.mapv(|v| -v);
        let mut false_peaks: Vec<f32> =
            detect_pores(negated.view(), negated_response.view(), t0, exclusion)
                .iter()
                .map(|b| (peak(b, negated.view()), b))
                .filter(|(p, b)| !has_darker_partner(b, *p, detection, dipole_reach))
                .map(|(p, _)| p)
                .collect();
        false_peaks.sort_by(|a, b| b.total_cmp(a));
        // Raising the threshold to the (allowed + 1)-th strongest mirrored peak leaves about
        // `allowed` mirrored detections (a blob's peak decides whether it survives a higher
        // threshold; splitting at the higher level is ignored).
        let t = false_peaks.get(allowed).map_or(t0, |&p| t0.max(p));
        (scaled, t)
    };
    // Both bands pass a grey darkening with gain 1, so their thresholds are in the same
    // units: the grey band is measured where a pore needs less contrast to be found in it at
    // the same false-alarm rate. Its spread is smaller, but JPEG's chroma errors, which its
    // weights can amplify, are heavy-tailed, and the mirrored detector sees the tails.
    let model_noise = maps.pore_noise().map(|noise| window.cut(noise.view()));
    let model_setup = pore_threshold(model_pore, model_stats, model_noise, &exclusion);
    let grey_setup = grey.as_ref().map(|g| {
        let noise = maps.pore_noise_with(g.weights, window.origin(), mask.dim());
        pore_threshold(
            g.response.view(),
            robust_stats(g.response.view(), &mask),
            noise.as_ref().map(|n| n.view()),
            &exclusion,
        )
    });
    let (pore_response, (scaled, pore_t)) = match (&grey, grey_setup) {
        (Some(g), Some(setup)) if setup.1 < model_setup.1 => (g.response.view(), setup),
        _ => (model_pore, model_setup),
    };
    let detection = scaled.as_ref().map_or(pore_response, |d| d.view());
    let mut pores = detect_pores(detection, pore_response, pore_t, &exclusion);
    // A pore-sized pit is an icepick scar when it is much darker than the region's pores, and
    // a pore otherwise, whichever detector found it (see [`PIT_PORE_FACTOR`]).
    let mut peaks: Vec<f32> = pores.iter().map(|b| peak(b, pore_response)).collect();
    if peaks.len() >= PIT_MIN_PORES {
        peaks.sort_by(f32::total_cmp);
        let upper_quartile = peaks[(3 * (peaks.len() - 1)).div_ceil(4)];
        let icepick = (PIT_PORE_FACTOR * upper_quartile).max(PIT_MIN_OD);
        let reach = (PIT_REACH_MM * px_per_mm).ceil() as usize;
        let before = scars.len();
        scars = scars
            .into_iter()
            .zip(floors)
            .filter(|(_, floor)| {
                pore_sized_pit(*floor, scar_response, pore_response, r_median, reach)
                    .is_none_or(|pit| pit >= icepick)
            })
            .map(|(scar, _)| scar)
            .collect();
        if scars.len() < before {
            exclusion = paint(&scars, mask.dim());
            pores = detect_pores(detection, pore_response, pore_t, &exclusion);
        }
        let (pits, rest): (Vec<Blob>, Vec<Blob>) = pores
            .into_iter()
            .partition(|b| peak(b, pore_response) >= icepick);
        pores = rest;
        scars.extend(pits);
    }

    let sigma_px = (settings.excess_smoothing_mm * px_per_mm) as f32;
    // Macules and patches are measured at half their peak contrast, like the pores, so the
    // reported area does not depend on the detection threshold.
    let peak_smoothing_px = (PATCH_PEAK_SMOOTHING_MM * px_per_mm) as f32;
    // Each patch also gets a weight for the area: 0 at the detection threshold rising to 1 a
    // ramp width above it (see [`SOFT_MARGIN`] and [`SOFT_SIGMAS`]). Why: a faint patch
    // crossing the threshold would otherwise add its whole half-max extent at once, so
    // re-photographing the same skin (exposure, JPEG, a shifted noise estimate) made the area
    // jump by whole patches. Macules well above the
    // threshold (all the phantoms' and any a clinician would point at) count fully.
    let low_noise = maps.low_noise_shading().map(|s| window.cut(s.view()));
    let blue_left_out = maps.blue_left_out();
    let ring_px = (CONFIRM_RING_MM * px_per_mm).ceil() as usize;
    let reach = PatchReach {
        near: (PATCH_REACH_MM * px_per_mm) as usize,
        wide: (WIDE_PATCH_REACH_MM * px_per_mm) as usize,
        ring: ring_px,
        smoothing: sigma_px,
    };
    let level_edge_min_px = LEVEL_EDGE_MIN_MM * px_per_mm;
    let detect_patches = |map: ndarray::ArrayView2<'_, f32>,
                          t: f32,
                          sigma: f32,
                          min_area_mm2: f64,
                          patch: &PatchChannel| {
        components(&threshold(map, &mask, t))
            .into_iter()
            .filter(|b| b.len() as f64 * mm2_per_px >= min_area_mm2)
            .filter(|b| !peak_on_boundary(b, map, &mask))
            .map(|b| {
                let peak = b
                    .pixels
                    .iter()
                    .map(|&(y, x)| map[[y, x]])
                    .fold(f32::MIN, f32::max);
                let extent_within = |within: usize| {
                    patch_extent(
                        &b,
                        map,
                        &mask,
                        within,
                        peak_smoothing_px,
                        t,
                        patch.peak_min_fraction,
                    )
                };
                let (extent, contrast, edge_read) = whole_patch(
                    extent_within,
                    peak_pixel(&b, map),
                    patch.level,
                    &mask,
                    &reach,
                );
                // A filled patch's excess understates its contrast (its background
                // rose under it): its contrast against the skin around it counts too.
                let peak = contrast.map_or(peak, |c| peak.max(c));
                let ramp = (SOFT_MARGIN * patch.threshold).max(SOFT_SIGMAS * sigma);
                let weight = f64::from(((peak - t) / ramp).clamp(0.0, 1.0));
                (extent, weight, edge_read, contrast)
            })
            // Judged on the half-max extent: the thresholded core of a macule on noisy skin
            // (high adaptive threshold) can be a small part of it, ringed by the macule itself.
            // (Judged before `level_edge`: its rim of faint excess would lower the darkening
            // the melanin predicts, and relief would be read where a macule is.)
            .filter(|(b, _, _, _)| match (low_noise, patch.gain) {
                (Some(shading), Some(gain)) => {
                    let (darkening, predicted) =
                        shading_darkening(b, map, shading, &mask, gain, ring_px);
                    let relief = patch.relief_checked
                        && blue_left_out
                        && darkening > RELIEF_DARKENING * predicted;
                    darkening >= patch.confirm_fraction * predicted && !relief
                }
                _ => true,
            })
            .map(|(b, weight, edge_read, contrast)| {
                if edge_read {
                    (b, weight, contrast)
                } else {
                    let edge = level_edge(b, patch.level, &mask, &reach, level_edge_min_px);
                    (edge, weight, contrast)
                }
            })
            .collect::<Vec<(Blob, f64, Option<f32>)>>()
    };
    // Patches at the finest smoothing, then at coarser ones while the photo is noise-limited
    // (see [`PATCH_SCALE_GAIN`]); a coarser patch is kept only where no finer one lies.
    // Returns the excess the patches' contrast is read on and the patches: the finest
    // smoothed map, except in a filled patch (its level over the skin around it, see
    // [`fill_hollow`]) and in a patch found on the wide excess (that excess), where the
    // model's background rose under the patch.
    let min_patch_px = |min_area_mm2: f64| (min_area_mm2 / mm2_per_px).ceil() as usize;
    let patches = |name: &str, patch: PatchChannel| {
        let (t, min_area_mm2) = (patch.threshold, patch.min_area_mm2);
        let mut found: Vec<(Blob, f64)> = Vec::new();
        let mut filled: Vec<(Vec<Pixel>, f32)> = Vec::new();
        let mut covered = Array2::from_elem(mask.dim(), false);
        let mut finest: Option<std::sync::Arc<Array2<f32>>> = None;
        let mut previous_t = f32::INFINITY;
        for step in 0..=PATCH_SCALE_STEPS {
            let smoothed = maps
                .smoothed(name, sigma_px * (1u16 << step) as f32)
                .unwrap_or_else(|| panic!("skin model manifest lacks channel {name}"));
            let map = window.cut(smoothed.view());
            let (median, sigma) = robust_stats(map, &mask);
            let noise_t = t.max(median + settings.noise_k * sigma);
            if noise_t * PATCH_SCALE_GAIN > previous_t {
                break;
            }
            previous_t = noise_t;
            let t_scale = if patch.mottled {
                mottled_threshold(
                    map,
                    &mask,
                    (median, sigma),
                    t,
                    settings.noise_k,
                    min_patch_px(min_area_mm2),
                )
            } else {
                noise_t
            };
            let new: Vec<(Blob, f64, Option<f32>)> =
                detect_patches(map, t_scale, sigma, min_area_mm2, &patch)
                    .into_iter()
                    .filter(|(b, _, _)| !b.pixels.iter().any(|&p| covered[p]))
                    .collect();
            for (b, w, c) in new {
                for &p in &b.pixels {
                    covered[p] = true;
                }
                if let Some(c) = c {
                    filled.push((b.pixels.clone(), c));
                }
                found.push((b, w));
            }
            finest.get_or_insert_with(|| smoothed.clone());
        }
        let mut contrast = window
            .cut(finest.expect("the finest smoothing always runs").view())
            .to_owned();
        for (pixels, c) in &filled {
            for &p in pixels {
                contrast[p] = contrast[p].max(*c);
            }
        }
        if !patch.wide {
            return (contrast, merge_overlapping(found));
        }
        // Patches wider than the model's background, on the excess over a wide one (see
        // [`WIDE_BACKGROUND_MM`]); kept where the patches above do not already hold them.
        let wide = wide_excess(
            patch.level,
            &mask,
            WIDE_SMOOTHING_MM * px_per_mm,
            WIDE_BACKGROUND_MM * px_per_mm,
        );
        let (median, sigma) = robust_stats(wide.view(), &mask);
        let t_wide = mottled_threshold(
            wide.view(),
            &mask,
            (median, sigma),
            t,
            settings.noise_k,
            min_patch_px(WIDE_MIN_CORE_MM2),
        );
        let mut held = Array2::<f64>::zeros(mask.dim());
        for (b, w) in &found {
            for &p in &b.pixels {
                held[p] = held[p].max(*w);
            }
        }
        let wide_patches: Vec<(Blob, f64)> =
            detect_patches(wide.view(), t_wide, sigma, WIDE_MIN_CORE_MM2, &patch)
                .into_iter()
                .filter(|(b, _, _)| b.len() as f64 * mm2_per_px >= WIDE_MIN_AREA_MM2)
                .filter(|(b, _, _)| {
                    let held: f64 = b.pixels.iter().map(|&p| held[p]).sum();
                    held < WIDE_MAX_HELD * b.len() as f64
                })
                .map(|(b, w, c)| {
                    if let Some(c) = c {
                        for &p in &b.pixels {
                            contrast[p] = contrast[p].max(c);
                        }
                    }
                    (b, w)
                })
                .collect();
        // A wide patch's contrast is its excess over the wide background: the model's
        // background rose under it.
        for (b, _) in &wide_patches {
            for &p in &b.pixels {
                contrast[p] = contrast[p].max(wide[p]);
            }
        }
        (
            contrast,
            absorb_wide(merge_overlapping(found), wide_patches),
        )
    };
    let (melanin_contrast, pigment) = patches(
        "melanin_excess",
        PatchChannel {
            level: channel("melanin"),
            threshold: settings.pigment_threshold,
            min_area_mm2: settings.pigment_min_area_mm2,
            gain: maps.low_noise.map(|l| l.melanin_gain),
            mottled: true,
            peak_min_fraction: MACULE_PEAK_MIN_FRACTION,
            relief_checked: true,
            confirm_fraction: CONFIRM_FRACTION,
            wide: true,
        },
    );
    let (hemoglobin_contrast, redness) = patches(
        "hemoglobin_excess",
        PatchChannel {
            level: channel("hemoglobin"),
            threshold: settings.redness_threshold,
            min_area_mm2: settings.redness_min_area_mm2,
            gain: maps.low_noise.map(|l| l.hemoglobin_gain),
            mottled: false,
            peak_min_fraction: ERYTHEMA_PEAK_MIN_FRACTION,
            relief_checked: false,
            confirm_fraction: ERYTHEMA_CONFIRM_FRACTION,
            wide: false,
        },
    );

    let fraction = |blobs: &[Blob]| blobs.iter().map(Blob::len).sum::<usize>() as f64 / n as f64;
    let weighted_fraction = |patches: &[(Blob, f64)]| {
        patches.iter().map(|(b, w)| b.len() as f64 * w).sum::<f64>() / n as f64
    };
    let (pigment_weighted, redness_weighted) =
        (weighted_fraction(&pigment), weighted_fraction(&redness));
    let pigment: Vec<Blob> = pigment.into_iter().map(|(b, _)| b).collect();
    let redness: Vec<Blob> = redness.into_iter().map(|(b, _)| b).collect();
    let mean_over = |blobs: &[Blob], map: ndarray::ArrayView2<'_, f32>| {
        let (sum, count) = blobs
            .iter()
            .flat_map(|b| b.pixels.iter())
            .fold((0f64, 0usize), |(s, c), &(y, x)| {
                (s + f64::from(map[[y, x]]), c + 1)
            });
        if count == 0 { 0.0 } else { sum / count as f64 }
    };

    let pore_fraction = fraction(&pores);
    let mean_diameter_mm = if pores.is_empty() {
        0.0
    } else {
        pores
            .iter()
            .map(|b| 2.0 * (b.len() as f64 / std::f64::consts::PI).sqrt() / px_per_mm)
            .sum::<f64>()
            / pores.len() as f64
    };
    let pigment_fraction = pigment_weighted;
    let pigment_contrast = mean_over(&pigment, melanin_contrast.view());
    // Scar extents may overlap (a lesion beside another); the area is their union.
    let scar_mask = paint(&scars, mask.dim());
    let scar_fraction = scar_mask.iter().filter(|&&s| s).count() as f64 / n as f64;
    let red_fraction = redness_weighted;
    let red_contrast = mean_over(&redness, hemoglobin_contrast.view());
    let hemoglobin = channel("hemoglobin");
    let erythema_index = mask
        .indexed_iter()
        .filter(|(_, m)| **m)
        .map(|(i, _)| f64::from(hemoglobin[i]))
        .sum::<f64>()
        / n as f64;

    let detections = Detections {
        pores: paint(&pores, mask.dim()),
        pigment: paint(&pigment, mask.dim()),
        scars: scar_mask,
        redness: paint(&redness, mask.dim()),
    };
    let mut findings = detections.pores.clone();
    for other in [&detections.pigment, &detections.scars, &detections.redness] {
        findings.zip_mut_with(other, |f, &o| *f |= o);
    }

    let metrics = RegionMetrics {
        pores: Some(Pores {
            count: pores.len() as u32,
            density_per_cm2: pores.len() as f64 / (area_mm2 / 100.0),
            mean_diameter_mm,
            area_fraction: pore_fraction,
            severity: severity::pores(pore_fraction),
        }),
        hyperpigmentation: Some(Hyperpigmentation {
            spot_count: pigment.len() as u32,
            area_fraction: pigment_fraction,
            mean_contrast: pigment_contrast,
            severity: severity::patches(pigment_fraction, pigment_contrast),
        }),
        scarring: Some(Scarring {
            count: scars.len() as u32,
            area_fraction: scar_fraction,
            severity: severity::scars(scar_fraction),
        }),
        redness: Some(Redness {
            erythema_index,
            area_fraction: red_fraction,
            severity: severity::patches(red_fraction, red_contrast),
        }),
        tone: region_tone(maps, &mask, window.origin(), &findings, px_per_mm),
    };
    let (_, h, w) = maps.maps.dim();
    let embed = |local: Array2<bool>| window.embed(local, (h, w));
    let detections = Detections {
        pores: embed(detections.pores),
        pigment: embed(detections.pigment),
        scars: embed(detections.scars),
        redness: embed(detections.redness),
    };
    (metrics, Some(detections))
}

/// The part of the working maps one region is measured on: the bounding box of its mask
/// widened by [`window_margin_px`] and clipped to the maps.
///
/// Why: every region used to be measured over the whole crop (thresholds, connected
/// components, masks), though a face region is a tenth of it or less. Every look-up the
/// measurement makes outside the region's mask stays within the margin, so the results are
/// those of the whole crop.
#[derive(Debug, Clone, Copy)]
struct Window {
    y0: usize,
    x0: usize,
    y1: usize,
    x1: usize,
}

impl Window {
    /// The window around `mask`'s set pixels; `None` when none is set.
    fn around(mask: &Array2<bool>, margin: usize) -> Option<Window> {
        let (h, w) = mask.dim();
        let ((y0, x0), (y1, x1)) =
            bounding_box(mask.indexed_iter().filter(|(_, m)| **m).map(|(p, _)| p))?;
        Some(Window {
            y0: y0.saturating_sub(margin),
            x0: x0.saturating_sub(margin),
            y1: (y1 + margin + 1).min(h),
            x1: (x1 + margin + 1).min(w),
        })
    }

    /// The window's part of a whole-crop map.
    fn cut<'a, T>(&self, map: ndarray::ArrayView2<'a, T>) -> ndarray::ArrayView2<'a, T> {
        map.slice_move(ndarray::s![self.y0..self.y1, self.x0..self.x1])
    }

    /// The whole-crop pixel of the window's `(0, 0)`.
    fn origin(&self) -> Pixel {
        (self.y0, self.x0)
    }

    /// A window-sized mask placed in an empty whole-crop mask of size `dim`.
    fn embed(&self, local: Array2<bool>, dim: (usize, usize)) -> Array2<bool> {
        let mut whole = Array2::from_elem(dim, false);
        whole
            .slice_mut(ndarray::s![self.y0..self.y1, self.x0..self.x1])
            .assign(&local);
        whole
    }
}

/// A map the metrics cannot do without: the model's manifest names it.
fn required<'a>(
    map: Option<ndarray::ArrayView2<'a, f32>>,
    name: &str,
) -> ndarray::ArrayView2<'a, f32> {
    map.unwrap_or_else(|| panic!("skin model manifest lacks channel {name}"))
}

/// Margin of a region's [`Window`], working pixels: the farthest any measurement looks
/// beyond the region's mask. The widest is [`smoothed_peak`]'s window, three σ of at most
/// [`PATCH_PEAK_SMOOTHING_MM`] plus a pixel around a patch; the scar floor and relief
/// look-ups ([`SCAR_FLOOR_REACH_MM`], [`RELIEF_PARTNER_MM`], [`PIT_REACH_MM`]) reach less,
/// and every extent grows inside the mask.
fn window_margin_px(px_per_mm: f64) -> usize {
    let reach_mm = (3.0 * PATCH_PEAK_SMOOTHING_MM)
        .max(SCAR_FLOOR_REACH_MM)
        .max(RELIEF_PARTNER_MM)
        .max(PIT_REACH_MM);
    (reach_mm * px_per_mm).ceil() as usize + 2
}

/// How the patches of one chromophore excess map are found.
struct PatchChannel<'a> {
    /// The chromophore map itself (melanin or hemoglobin, before its background is
    /// subtracted), which tells a patch's hollow centre from skin it encloses
    /// ([`fill_hollow`]).
    level: ndarray::ArrayView2<'a, f32>,
    /// Fixed least threshold of the map.
    threshold: f32,
    /// Least area of a patch, mm².
    min_area_mm2: f64,
    /// Darkening of the low-noise shading per unit of excess (see [`shading_darkening`]).
    gain: Option<f32>,
    /// The map's spread on skin is mostly texture that grows with the chromophore itself:
    /// detect with [`mottled_threshold`]. True for melanin. Not for hemoglobin: its mottle
    /// does not grow with skin tone, and on the portraits this rule with the melanin
    /// extent's bounds (a 3σ̂ floor then) tripled erythema area's noise floor
    /// (0.0174 → 0.0557) for no gain on any phantom's tolerance.
    mottled: bool,
    /// The smoothed peak that sets a patch's extent counts as at least this fraction of its
    /// highest pixel ([`patch_extent`]): [`MACULE_PEAK_MIN_FRACTION`] or
    /// [`ERYTHEMA_PEAK_MIN_FRACTION`].
    peak_min_fraction: f32,
    /// Whether a patch that darkens the low-noise shading far beyond what its excess predicts
    /// is relief, not this chromophore, when blue is left out (see [`RELIEF_DARKENING`]). True
    /// for melanin.
    relief_checked: bool,
    /// Least fraction of the darkening its excess predicts that a patch must darken the
    /// low-noise shading by ([`CONFIRM_FRACTION`], [`ERYTHEMA_CONFIRM_FRACTION`]).
    confirm_fraction: f64,
    /// Whether patches are also looked for on the excess over a wide background
    /// ([`WIDE_BACKGROUND_MM`]). True for melanin. Not measured for hemoglobin: the phantoms'
    /// 12–20-mm erythema, which has no mottle to break its ring, is measured whole by
    /// [`fill_hollow`] (within 8%).
    wide: bool,
}

/// Severity scores: 0 (none) … 100 (most severe), strictly increasing in their inputs and
/// saturating, so no score is inflated by an unbounded quantity. Each scale constant is the
/// input that scores 63 (1 − 1/e); they are documented in the README.
pub mod severity {
    /// Pore area fraction that scores 63: 3% of the skin covered by pore openings.
    pub const PORE_SCALE: f64 = 0.03;
    /// Scar area fraction that scores 63: 5% of the skin covered by atrophic scars.
    pub const SCAR_SCALE: f64 = 0.05;
    /// Area fraction × contrast (OD) that scores 63 for pigment and redness patches:
    /// e.g. 10% of the area at 0.15 OD excess.
    pub const PATCH_SCALE: f64 = 0.015;

    fn saturate(x: f64, scale: f64) -> f64 {
        100.0 * (1.0 - (-x.max(0.0) / scale).exp())
    }

    /// Pores: from the fraction of skin covered by pore openings (counts and sizes together).
    pub fn pores(area_fraction: f64) -> f64 {
        saturate(area_fraction, PORE_SCALE)
    }

    /// Atrophic scars: from the fraction of skin covered.
    pub fn scars(area_fraction: f64) -> f64 {
        saturate(area_fraction, SCAR_SCALE)
    }

    /// Pigment or redness patches: area × mean contrast, the two factors of mMASI's
    /// area and darkness terms (Pandya et al. 2011) in measured rather than graded form.
    pub fn patches(area_fraction: f64, mean_contrast: f64) -> f64 {
        saturate(area_fraction * mean_contrast.max(0.0), PATCH_SCALE)
    }
}

/// A working-scale pixel `(y, x)`.
type Pixel = (usize, usize);

/// A connected set of working-scale pixels `(y, x)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Blob {
    pixels: Vec<(usize, usize)>,
}

impl Blob {
    fn len(&self) -> usize {
        self.pixels.len()
    }
}

/// Lobes of a relief dipole must clear this many robust σ of the region's `scar_response`:
/// texture and noise make ± lobes too, and a blob's extreme is the largest of several
/// roughly independent samples (the band-pass correlates pixels over ~0.4 mm), so a lower
/// factor than the per-pixel [`MetricSettings::noise_k`] suffices.
const RELIEF_LOBE_K: f32 = 3.0;

/// How far beyond a scar candidate its relief dipole's walls are looked for, mm.
///
/// Why: a candidate is where the local RMS of the scar band (`scar_energy`) clears its
/// threshold, and for a shallow rolling scar that is only just so. On a tan phantom under
/// σ 0.002 noise (read with a debug print) the energy was 0.0104 for a threshold of 0.0101,
/// its part above threshold shrank from 274 to 66 pixels and held only part of the shadowed
/// wall (0.0151 for a wall threshold of 0.0151, against 0.0210 on the clean phantom), so the
/// scar was lost. The walls of a dipole lie around the energy's peak, not inside its
/// thresholded core. 0.3 mm is under half the energy's 0.8-mm window, so a candidate does not
/// borrow the lobes of a lesion beside it (seen: no scar count changed on the 312
/// independently rendered phantoms, nor on the accuracy tests' clean phantoms).
const DIPOLE_MARGIN_MM: f64 = 0.3;

/// Largest distance from a scar's energy peak to its half-max edge that is searched, mm: the
/// widest atrophic scars are ~5 mm, and the energy spreads ~1 mm (its 0.8-mm window) beyond.
const SCAR_REACH_MM: f64 = 6.0;

/// How far from a further energy maximum its own dark floor is looked for, mm: about the
/// energy's window (0.8 mm), so the floor is the one that made that maximum.
const SCAR_FLOOR_REACH_MM: f64 = 1.0;

/// How far from a further energy maximum its own relief dipole is looked for, mm: the walls of
/// a rolling scar (up to ~5 mm across) lie within about its radius of the energy between them.
const SCAR_DIPOLE_REACH_MM: f64 = 2.0;

/// The scars inside one accepted candidate, each the extent at half its peak `scar_energy`.
///
/// The first grows from the candidate's energy maximum. A candidate can also hold a second
/// lesion close by (an icepick beside a boxcar scar, joined by the low candidate threshold):
/// every further energy maximum that is not on the slope of an extent already taken (not
/// next to it) is a scar of its own when it has its own dark floor (a pixel where `is_floor`
/// holds within [`SCAR_FLOOR_REACH_MM`] of it) or its own relief dipole (`own_dipole` holds
/// on the pixels of its extent within [`SCAR_DIPOLE_REACH_MM`] that no scar has taken: a
/// shallow rolling scar beside a boxcar has no floor, and was lost). The second lobe of a
/// relief dipole has neither, its shadowed partner being taken, and is not counted twice.
/// The floor must be the maximum's own: the half-max extent of a faint maximum on a scar's
/// periphery can be wide (half of a small energy) and reach the floor of the deeper scar
/// beside it, which counted that scar twice (9–10 scars for 7 on clean 5 px/mm phantoms).
/// Slopes and rejected maxima are marked taken without being counted.
/// The first maximum (the candidate's strongest) is the candidate's lesion, unless the
/// candidate passed on a floor that its extent does not hold and it has no dipole of its own.
/// Then it is the edge of a macule or an erythema patch that the low candidate threshold
/// joined to a scar elsewhere, when its darkest point fails the floor's relief tests (grey,
/// not the chromophore leak; `darkest_is_relief`), or always on a `weighted_relief` (see
/// [`crate::relief::Relief`]), whose lower thresholds join a macule's let-in melanin to a scar
/// 6–7 mm away (dark phantoms under σ 0.002 noise: 8 scars for 7 on three of five seeds).
/// - On the independent renderer's five seeds (`scripts/independent_phantoms.py`, 390 images)
///   the rule took one scar off the count of 8 images and added none: each was the rim of a
///   4–5-mm macule on dark skin (6) or of an erythema patch (2), 4–6 mm from a scar or a
///   large pore (clean dark skin at 5 px/mm: 10 scars for 7, now 9). At such rims red
///   darkened 0.69–0.76 as much as green (relief: 1, see `RED_GREEN_MIN`), and one read a
///   shading band of 0.010 for a floor threshold of 0.086 (temporary debug prints).
/// - Only where the darkest point is not relief: counting no first maximum without its own
///   floor or dipole widened the 13 portraits' scar-area noise floor from 0.064 to 0.105 (a
///   re-captured region's strongest maximum came and went with its floor). This rule moved
///   two of their regions, and the floor from 0.0644 to 0.0642.
fn split_scars(
    candidate: &Blob,
    energy: ndarray::ArrayView2<'_, f32>,
    tests: &ReliefTests<'_>,
    (mask, weighted_relief): (&Array2<bool>, bool),
    taken: &mut Array2<bool>,
    px_per_mm: f64,
) -> Vec<Blob> {
    let ReliefTests {
        is_floor,
        dipole: relief_dipole,
        darkest_is_relief,
    } = tests;
    let (h, w) = mask.dim();
    let reach = (SCAR_REACH_MM * px_per_mm).ceil() as usize;
    let floor_reach = SCAR_FLOOR_REACH_MM * px_per_mm;
    let dipole_reach = SCAR_DIPOLE_REACH_MM * px_per_mm;
    let inside: std::collections::HashSet<(usize, usize)> =
        candidate.pixels.iter().copied().collect();
    let candidate_has_floor = candidate.pixels.iter().any(|&p| is_floor(p));
    let mut order = candidate.pixels.clone();
    order.sort_by(|a, b| energy[*b].total_cmp(&energy[*a]));
    let mut scars = Vec::new();
    for seed in order {
        if taken[seed] {
            continue;
        }
        let (sy, sx) = seed;
        let on_slope = (sy.saturating_sub(1)..=(sy + 1).min(h - 1))
            .any(|y| (sx.saturating_sub(1)..=(sx + 1).min(w - 1)).any(|x| taken[[y, x]]));
        // Each extent stays inside its candidate (half the peak of a faint scar can be
        // below the candidate threshold, and must not flood the texture around it) but may
        // overlap another scar's: the area is measured on their union.
        let extent = grow_at_half_max(seed, energy, |p| mask[p] && inside.contains(&p), reach);
        let within = |(y, x): Pixel, reach: f64| {
            let (dy, dx) = (y as f64 - sy as f64, x as f64 - sx as f64);
            dy * dy + dx * dx <= reach * reach
        };
        let own_floor = extent
            .pixels
            .iter()
            .any(|&p| within(p, floor_reach) && is_floor(p));
        let own_dipole = || {
            let own: Vec<Pixel> = extent
                .pixels
                .iter()
                .copied()
                .filter(|&p| !taken[p] && within(p, dipole_reach))
                .collect();
            relief_dipole(&own)
        };
        let counted = if scars.is_empty() {
            !candidate_has_floor
                || extent.pixels.iter().any(|&p| is_floor(p))
                || relief_dipole(&extent.pixels)
                || (!weighted_relief && darkest_is_relief(&extent.pixels))
        } else {
            !on_slope && (own_floor || own_dipole())
        };
        for &p in &extent.pixels {
            taken[p] = true;
        }
        taken[seed] = true;
        if counted {
            scars.push(extent);
        }
    }
    scars
}

/// The relief tests that [`split_scars`] judges a candidate's energy maxima by.
struct ReliefTests<'a> {
    /// A dark floor: deep enough, grey, and not the chromophore leak.
    is_floor: &'a dyn Fn(Pixel) -> bool,
    /// The pixels hold a relief dipole whose shadowed wall is relief.
    dipole: &'a dyn Fn(&[Pixel]) -> bool,
    /// The darkest of the pixels passes the floor's relief tests, whatever its depth.
    darkest_is_relief: &'a dyn Fn(&[Pixel]) -> bool,
}

/// The connected set around `seed` where `response` is at least half its value at the seed,
/// within `reach` pixels and where `allowed`.
fn grow_at_half_max(
    seed: (usize, usize),
    response: ndarray::ArrayView2<'_, f32>,
    allowed: impl Fn((usize, usize)) -> bool,
    reach: usize,
) -> Blob {
    let (h, w) = response.dim();
    let (py, px) = seed;
    let half = 0.5 * response[seed];
    let (y0, x0) = (py.saturating_sub(reach), px.saturating_sub(reach));
    let (y1, x1) = ((py + reach + 1).min(h), (px + reach + 1).min(w));
    let mut seen = Array2::from_elem((y1 - y0, x1 - x0), false);
    let mut blob = Blob::default();
    let mut stack = vec![seed];
    seen[[py - y0, px - x0]] = true;
    while let Some((cy, cx)) = stack.pop() {
        blob.pixels.push((cy, cx));
        for ny in cy.saturating_sub(1).max(y0)..=(cy + 1).min(y1 - 1) {
            for nx in cx.saturating_sub(1).max(x0)..=(cx + 1).min(x1 - 1) {
                if !seen[[ny - y0, nx - x0]] && allowed((ny, nx)) && response[[ny, nx]] >= half {
                    seen[[ny - y0, nx - x0]] = true;
                    stack.push((ny, nx));
                }
            }
        }
    }
    blob
}

/// How far from a scar's darkest point (its `scar_response` maximum) its pore-scale peak is
/// looked for, mm: within the pit the two band-passes peak together.
const PIT_REACH_MM: f64 = 0.5;

/// A scar is pore-sized when its `scar_response` (σ 0.4/2 mm) reaches less than this fraction of
/// its `pore_response` (σ 0.08/0.4 mm). At the centre of a dark disk of radius R the ratio of the
/// two differences of Gaussians is [e(0.4) − e(2)] / [e(0.08) − e(0.4)], e(σ) = 1 − exp(−R²/2σ²):
/// 0.21 for a 0.5-mm disk, 0.31 for 0.6 mm. It does not depend on the disk's darkness. Icepick
/// scars measured 0.07–0.28 on both phantom renderers (their darkness gathers in the funnel's
/// bottom); boxcar and rolling scars at least 0.27, except where a pore lies in them.
const PIT_SCALE_RATIO: f32 = 0.25;

/// A pore-sized pit is an icepick scar when its `pore_response` peak reaches this multiple of
/// the upper quartile of the region's pore peaks (and [`PIT_MIN_OD`]); otherwise it is a pore.
/// Both detectors' findings are sorted this way: pits the scar tests took, and pores (an
/// icepick scar narrower than [`MetricSettings::scar_min_diameter_mm`] or beside a larger scar
/// is found by the pore detector only).
///
/// Why: at these scales neither shape nor size tells an icepick scar from a large, dark pore;
/// depth does. An icepick (a funnel 0.3–1 mm deep) is darker than the pores of the same skin,
/// whose darkness is bounded by their openings. The region's own pores set the scale, so
/// exposure, tone and resolution cancel. Measured on clean, recoloured, noisy and JPEG images
/// of both phantom renderers (`dermatrack phantom` seeds 7–9 and `scripts/independent_phantoms.py`
/// seeds 1–2, whose pore openings are 30–55% darker):
/// - pores that passed the scar tests reached up to 2.16× the upper quartile (at 5 px/mm,
///   where the small pores are not resolved), and pores found as pores up to 1.92×;
/// - icepick scars that passed the scar tests reached at least 2.12×; most icepicks found as
///   pores reached 2–5.6× (the rest, 1.5–2×, stay pores).
///
/// 2.0 keeps every icepick the scar tests found on both renderers and sorts nine in ten of those
/// pores back among the pores.
const PIT_PORE_FACTOR: f32 = 2.0;

/// Fewest pores whose upper quartile sets the scale for [`PIT_PORE_FACTOR`]; with fewer, scars
/// and pores stay as their detectors found them.
const PIT_MIN_PORES: usize = 8;

/// Least `pore_response` peak of an icepick scar, OD, whatever the region's pores: on skin with
/// faint pores, twice their upper quartile is still a pore. The shallowest icepicks of the
/// phantoms (0.5 mm wide, 0.3 mm deep) read 0.53.
const PIT_MIN_OD: f32 = 0.4;

/// Each scar's own floor, in the order [`split_scars`] found them: the darkest point
/// (`scar_response` maximum) of its extent, unless the local maximum it climbs to (steepest
/// ascent, its summit) is already the floor of a scar before it: then the darkest point is
/// that floor itself or its flank, cut off by the earlier scar's extent. Then only the part of
/// its extent that no earlier scar holds is its own, and its floor
/// is the deepest local maximum of `scar_response` there that `is_floor` accepts, or, when
/// that part holds a relief dipole of its own (`own_dipole`), its deepest local maximum
/// (the shadowed wall). `None` when it holds neither: the extent is the earlier scar's skirt,
/// not a lesion.
///
/// Why: the half-max extent of a faint energy maximum beside a deeper scar can cover that scar
/// (half of a small energy reaches far). A large pore at such a maximum was then judged by the
/// icepick's or boxcar's floor, which had already been counted, and passed as a scar of its
/// own: 10 scars for 8 on most clean images of the independent renderer's seed 4, whose two
/// 0.43-mm pores 40–50% darker than skin lie 3–4 mm from an icepick and a boxcar. Judged at
/// its own pit, it is a pore-sized pit and goes to the pore-or-icepick rule.
/// - A local maximum, because the darkest pixel of the part left is otherwise the flank of the
///   earlier scar's floor; a floor or a dipole, because texture bumps are local maxima too.
/// - The dipole keeps a shallow rolling scar beside a boxcar, which has no floor and whose
///   extent reaches the boxcar's (see [`split_scars`]).
/// - Only a floor counted twice is replaced: among many large, dark pores a candidate's first
///   maxima can be pores whose extents cover shallow scars whose own maxima are then never
///   visited, and each such extent stands for the scar whose floor it holds. (Replacing every
///   floor that an earlier extent covers found 3–5 of 7 scars among 200 such pores packed
///   against the scars, seeds 41–43.)
/// - A floor is named by its summit, not by the darkest pixel itself: an extent cut off by an
///   earlier one has its darkest pixel on the earlier floor's flank, one or two pixels from it,
///   and that flank passed as a floor of its own. On the independent renderer's seed 2 a
///   2.2-mm boxcar's flank stood for a second scar in an extent around two 0.39–0.44-mm pores
///   1.6 mm apart, 5 scars for 4 on 7 of its 78 images (light and very light skin at 8, 10 and
///   20 px/mm); judged at their own pit they are pores. The cost: among the 150 packed pores
///   below (`a_dark_pore_beside_a_scar_is_not_a_scar`), seeds 41 and 43 find 3 of 7 scars
///   (4 and 5 before). There the flank had stood for a scar the extent also covers, by luck:
///   on seed 41 a 0.86-mm icepick only 0.36 mm deep, which judged at its own pit (0.76, 1.6×
///   the quartile of these dark pores) the pit rule sorts to the pores; on seed 43 a 2.8-mm
///   rolling scar 0.14 mm deep whose extent's own deepest floor is a pore's pit, and a second
///   flank for no drawn scar (temporary debug prints).
///
/// Extents stay inside their candidate, so only scars of the same candidate overlap.
fn own_floors(
    scars: &[Blob],
    scar_response: ndarray::ArrayView2<'_, f32>,
    is_floor: &dyn Fn(Pixel) -> bool,
    own_dipole: &dyn Fn(&[Pixel]) -> bool,
) -> Vec<Option<Pixel>> {
    let (h, w) = scar_response.dim();
    let deepest = |pixels: &mut dyn Iterator<Item = Pixel>| {
        pixels.max_by(|a, b| scar_response[*a].total_cmp(&scar_response[*b]))
    };
    // The highest neighbour above `p`, if any: `None` at a local maximum.
    let uphill = |(y, x): Pixel| {
        let mut up = (y, x);
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                if scar_response[[ny, nx]] > scar_response[up] {
                    up = (ny, nx);
                }
            }
        }
        (up != (y, x)).then_some(up)
    };
    let local_max = |p: Pixel| uphill(p).is_none();
    // The local maximum that steepest ascent from `p` reaches: the floor whose slope `p` is on.
    let summit = |mut p: Pixel| {
        while let Some(up) = uphill(p) {
            p = up;
        }
        p
    };
    let mut held = Array2::from_elem((h, w), false);
    let mut counted = std::collections::HashSet::new();
    scars
        .iter()
        .map(|scar| {
            let darkest = deepest(&mut scar.pixels.iter().copied())?;
            let floor = if counted.insert(summit(darkest)) {
                Some(darkest)
            } else {
                let own: Vec<Pixel> = scar.pixels.iter().copied().filter(|&p| !held[p]).collect();
                let pits = || own.iter().copied().filter(|&p| local_max(p));
                match deepest(&mut pits().filter(|&p| is_floor(p))) {
                    Some(floor) => Some(floor),
                    None if own_dipole(&own) => deepest(&mut pits()),
                    None => None,
                }
            };
            for &p in &scar.pixels {
                held[p] = true;
            }
            floor
        })
        .collect()
}

/// `Some(pore-scale peak)` when the scar whose floor is `floor` is a pore-sized pit (see
/// [`PIT_SCALE_RATIO`]): its `scar_response` there above `r_median`, against the largest
/// `pore_response` within `reach` pixels.
fn pore_sized_pit(
    (py, px): Pixel,
    scar_response: ndarray::ArrayView2<'_, f32>,
    pore_response: ndarray::ArrayView2<'_, f32>,
    r_median: f32,
    reach: usize,
) -> Option<f32> {
    let pit = disk_max(pore_response, (py, px), reach);
    (scar_response[[py, px]] - r_median < PIT_SCALE_RATIO * pit).then_some(pit)
}

/// Resolution at which [`ChromophoreLeak`] is fitted, px/mm: fine enough for the scar band
/// (σ 0.4 mm is one pixel there), coarse enough to cost little on a 10-px/mm portrait.
const LEAK_PX_PER_MM: f64 = 2.5;

/// Largest leak coefficient believed, either sign. A chromophore vector 16° off the model's
/// leaks 0.11–0.25 of it into the shading (independent renderer); on real portraits the fit
/// gives up to 1.1, which is no longer a leak but true co-variation of relief and colour at the
/// scar scale (shadowed folds are redder, lips and brows sit next to skin). Believed whole, it
/// varied with the capture and widened the portraits' scar noise floor (area 0.064 → 0.108);
/// capped here, to 0.087 (`cargo run --release --example noise_floor`).
const LEAK_MAX: f64 = 0.3;

/// A dark floor, or the shadowed wall of a relief dipole, is not relief when the chromophore
/// leak explains more than this fraction of its shading band-pass (see [`ChromophoreLeak`]).
/// Real scars of both phantom renderers kept at least 0.77 unexplained on clean images; the
/// independent renderer's erythema floors were 0.87–1.5 explained.
const LEAK_MAX_EXPLAINED: f64 = 0.5;

/// Relief is grey: a depression's floor or shadowed wall darkens every channel's optical
/// density alike (the shading column of the model is (1, 1, 1)), so there the scar band-pass
/// of the red and green densities (their mean) must lie within this factor of the Tsumura
/// shading's, either way (see [`ChromophoreLeak::grey`]). The lower bound is also met by their
/// relief past a melanin deficit they share ([`relief_past_deficit`]): a lighter patch of
/// mottle brightens them.
///
/// Why: the Tsumura shading row weighs blue heavily (1.19, 0.90, −1.09 on R, G, B), and blue
/// is the channel that JPEG's chroma rounding and 4:2:0 subsampling move on their own, and
/// the noisiest on pigmented skin. At q85 that left scar-deep dips in `scar_response` that red
/// and green did not share (mean ≤ 0.1 of the shading's), and dips at macule edges where red
/// and green darkened 3–7× more than the shading (chroma blurred across a melanin edge):
/// light, tan and brown phantoms at q85 counted 42 scars too many over 24 photos, 3 with the
/// test. True scars read 0.85–1.15 clean and 0.7–1.4 under JPEG, and none was lost on the
/// seed 7–9 phantom sets. The red and green channels are the bright, low-noise ones on every
/// tone, and the comparison is made on the same 2.5-px/mm band as the leak fit.
const GREY_MIN_FRACTION: f32 = 0.5;

/// The model's melanin vector on the red and green optical densities: the first column of its
/// decomposition matrix (`graph.decomposition.matrix`, skin-v1's `physics.sigma_mel_rgb`),
/// which [`relief_past_deficit`] splits red and green by.
fn melanin_red_green(weighting: &crate::model::ChromophoreWeighting) -> [f32; 2] {
    let m = weighting.matrix();
    [m[0][0] as f32, m[1][0] as f32]
}

/// A melanin deficit is taken out of the red and green band-passes ([`relief_past_deficit`])
/// only when they see between these multiples of the deficit the model measures there.
///
/// Why: red and green alone split into relief and melanin by their difference, which JPEG's
/// chroma rounding moves and the split amplifies (relief = 3.07 red − 2.07 green).
/// - At least half: with the split used everywhere, or wherever both the model and red and
///   green saw a deficit of any size, a brown phantom of seed 13 at 5 px/mm under JPEG q85
///   counted 10 and 9 scars for 7 (`jpeg_chroma_is_not_relief`, which allows 8; a temporary
///   switch).
/// - At most 1.25 times: the accuracy report's tan wide-patch phantom with nuisances (JPEG
///   q85, noise, a cast) counted 12 scars for 7 (8 without the split). Its floors that passed
///   only through the split lay in the rings outside its 10–15-mm macules, where red and green
///   saw 1.3–2.5 times the model's deficit, mostly (temporary debug prints): there their
///   difference is not melanin alone.
/// - A mottle's lighter patch is a deficit every channel shares: on the independent renderer's
///   brown skin below, red and green saw 0.45 of the model's deficit at the floor's deepest
///   cell and 0.55–0.74 at the cells beside it, where the floor passes.
const DEFICIT_SEEN: [f32; 2] = [0.5, 1.25];

/// The relief in the red and green band-passes once a melanin deficit is taken out of them:
/// `Some` where the model's melanin band-pass `melanin` is a deficit and red and green show it
/// too (see [`DEFICIT_SEEN`]), `None` elsewhere. In the red and green densities
/// relief is `(1, 1)` and melanin `[sr, sg]` ([`melanin_red_green`]), so two channels give
/// both.
///
/// Why: a shallow scar's floor that lies on a lighter patch of the skin's melanin mottle
/// darkens the Tsumura shading, but red and green less than the shading (the lighter melanin
/// brightens them), and the floor failed [`GREY_MIN_FRACTION`]. On the independent renderer's
/// brown skin at 5 px/mm (seed 4, a rolling scar 4.65 mm wide and 0.23 mm deep; temporary
/// debug prints) its floor's deepest cell read shading 0.118, red 0.039, green 0.020 (their
/// mean 0.25 of the shading) and melanin −0.25. Red and green see −0.11 of melanin there (0.45
/// of the model's deficit, just short of [`DEFICIT_SEEN`]) and 0.55–0.74 of it at the cells
/// beside it, where the floor now passes. Only a deficit is taken out: a melanin excess that red and green
/// share is the chromophore leak the grey test is there to refuse, and a blue-only dip
/// (JPEG chroma, noise clipped at code 0) is a deficit red and green do not share.
fn relief_past_deficit(red: f32, green: f32, melanin: f32, [sr, sg]: [f32; 2]) -> Option<f32> {
    let seen = (green - red) / (sg - sr);
    let [least, most] = DEFICIT_SEEN;
    (melanin < 0.0 && seen <= least * melanin && seen >= most * melanin)
        .then(|| relief_on_red_green(red, green, [sr, sg]))
}

/// A cell of the leak bands whose mean blue is at most this code value (of 255) has no blue
/// measurement at the scar band's scale: its relief is read on red and green alone
/// ([`relief_on_red_green`]), and must clear their rounding ([`RED_GREEN_QUANTA`]).
///
/// Why: one code step at code `c` is about `ln((c + 0.5) / (c − 0.5))` in optical density,
/// 0.29 at code 3.5 and more below, over three times a scar floor's threshold (≈ 0.08); code
/// 0 is clipped, a bound and not a value. Inside the 8–20-mm macules of the independent
/// renderer's dark skin (`independent_phantoms.py --probe macules --probe-res 10`), blue sat
/// at codes 1–3 while red and green (≈ 50 and 16) still followed the macule's melanin mottle.
/// The Tsumura shading, which weighs blue by −1.09, then darkened by 0.14–0.36 where the
/// mottle rose (the model read a melanin *deficit* and a hemoglobin excess there), and the
/// scar detector counted 1, 2, 4 and 4 scars in macules of 8, 12, 16 and 20 mm. At those
/// floors red and green read 0.02–0.07 of relief; now none is counted. Our own phantoms show
/// it once rounded to 8 bits (`macules_whose_blue_is_clipped_are_not_scars`).
/// - 2.5 left one scar in each of the 16- and 20-mm probes (cells of mean code 3).
/// - 3.5: on the independent renderer's five seeds (390 images) five dark images each lost a
///   scar too many (9 → 8, 8 → 7, 8 → 7, 9 → 8 and 5 → 4 for 7, 7, 7, 8 and 4) and no other
///   scar count moved.
/// - 5.5 also moved four more dark images, two of them away from the truth (a true scar lost
///   under JPEG, one false scar gained).
const BLUE_UNMEASURED_CODE: f32 = 3.5;

/// Where blue is unmeasured ([`BLUE_UNMEASURED_CODE`]), relief on red and green must reach
/// this many σ of their 8-bit rounding at the cell's mean codes
/// ([`crate::model::rounding_density`], through [`relief_on_red_green`]'s weights). At red ≈ 50
/// and green ≈ 16 (a dark macule) that σ is 0.05, so a floor needs 0.1 of grey relief there.
/// Without this a quantization contour in red and green that [`relief_on_red_green`] amplifies
/// (3.1 × red − 2.1 × green) passed: one such floor in a clean dark macule read 0.11 of
/// "relief" (red 0.74 of green, the independent renderer's melanin against the model's 0.67).
const RED_GREEN_QUANTA: f32 = 2.0;

/// The relief in the red and green band-passes `red`, `green` with the melanin of the model's
/// vector `[sr, sg]` on them ([`melanin_red_green`]) taken out: in the red and green densities
/// relief is `(1, 1)` and melanin `(sr, sg)`, so two channels give both. Hemoglobin, which
/// darkens green five times as much as red, lowers it: a red floor reads less relief, never
/// more.
fn relief_on_red_green(red: f32, green: f32, [sr, sg]: [f32; 2]) -> f32 {
    (sg * red - sr * green) / (sg - sr)
}

/// Relief darkens red and green alike; melanin darkens red 0.67 as much as green (the model's
/// melanin vector, 0.34 and 0.51 on R and G; the independent renderer's 0.69) and hemoglobin
/// 0.19. Where the shading band-pass darkens, the red density's band-pass must reach this
/// fraction of the green's, summed over the darkened cells of the 3 × 3 around the pixel
/// (1.2 mm on the 2.5-px/mm leak bands; see [`ChromophoreLeak::grey`]).
///
/// Why: on dark skin under sensor noise or JPEG, blue (≈ 10–20 codes of 255, a macule's centre
/// ≈ 1) is where the Tsumura projection fails: noise clipped at code 0 reads a macule's blue
/// brighter than it is (2 codes instead of 1 on the independent renderer at σ 4 codes), so
/// part of its melanin lands in the shading, as deep as a scar's floor, and red and green
/// share it. Dark phantoms with six macules and no scars counted 1–3 scars on 10 of 16
/// noisy or JPEG images (`macules_on_noisy_dark_skin_are_not_scars`), and the independent
/// renderer's dark noise and JPEG images counted their macules as scars. The test uses only
/// the bright channels and the ratio of melanin to relief on them, which no noise in blue
/// moves. Measured with a temporary debug print at the floors the scar detector kept on the
/// independent renderer's seeds 1–4 (288 images, one cell): macules 0.62–0.86 (nine in ten ≤ 0.74), true scars' median
/// 1.00 with one in twenty below 0.81; chromophore texture on the darkest skin spreads the
/// ratio of shallow scars.
const RED_GREEN_MIN: f32 = 0.8;

/// How much of the region's melanin and hemoglobin the Tsumura shading still holds, and where.
///
/// Why: the model splits optical density along fixed melanin and hemoglobin vectors. When a
/// photo's chromophore colours differ (another camera's spectral sensitivities, another skin
/// optics), part of every pigment or erythema patch stays in the shading, and a 10-mm erythema
/// patch then darkens `scar_response` like a shallow scar. In the linear model the leak is
/// exact: `s_est = s + a·m_est + b·h_est`, so `a` and `b` are the least-squares fit of the
/// shading's band-pass on the chromophores' band-passes over the region (relief is
/// uncorrelated with pigment). Tsumura et al. (1999) estimated the vectors per image by
/// independent component analysis for the same reason; fitting only the leak into shading is
/// the part the scar detector needs. The independent phantom renderer, whose hemoglobin vector
/// is 16° from the model's, gives `b` ≈ 0.11–0.25 and `a` ≈ −0.03; the model's own phantoms
/// give |a|, |b| < 0.02 when clean.
///
/// Fitted on [`LeakBands`].
struct ChromophoreLeak<'a> {
    a: f64,
    b: f64,
    bands: &'a LeakBands,
    /// The whole-crop pixel of the region window's `(0, 0)`: the bands cover the whole crop.
    origin: Pixel,
}

/// The melanin, hemoglobin and shading maps, and the red and green optical densities,
/// box-downsampled to [`LEAK_PX_PER_MM`] and band-passed like `scar_response` (σ 0.4/2 mm):
/// what [`ChromophoreLeak`] is fitted on and tests relief with. The same for every region of a
/// photo, so [`SkinMaps::leak_bands`] computes them once.
#[derive(Debug, Clone)]
pub(crate) struct LeakBands {
    factor: usize,
    melanin: Array2<f32>,
    hemoglobin: Array2<f32>,
    /// The model's (Tsumura) shading: what the leak is fitted on.
    shading: Array2<f32>,
    /// The relief the scar detector measures when it is not `shading`: `shading` plus the
    /// melanin and hemoglobin the noise-weighted relief lets in (see
    /// [`crate::relief::Relief`]); `None` where the model's own map is measured.
    weighted_relief: Option<Array2<f32>>,
    red: Array2<f32>,
    green: Array2<f32>,
    /// `Some` in the cells whose mean blue is at most [`BLUE_UNMEASURED_CODE`]: there the
    /// Tsumura shading is not a measurement, and relief is read on red and green alone
    /// ([`relief_on_red_green`]), whose 8-bit quantization σ this is (see
    /// [`RED_GREEN_QUANTA`]).
    red_green_only: Array2<Option<f32>>,
    /// The model's melanin vector on red and green ([`melanin_red_green`]); `None` when the
    /// model does not describe its decomposition (no deficit is then taken out).
    melanin_red_green: Option<[f32; 2]>,
}

impl LeakBands {
    /// The relief the scar detector measures, at the bands' resolution.
    fn relief(&self) -> &Array2<f32> {
        self.weighted_relief.as_ref().unwrap_or(&self.shading)
    }

    pub(crate) fn compute(maps: &SkinMaps) -> LeakBands {
        let factor = ((maps.px_per_mm / LEAK_PX_PER_MM).round() as usize).max(1);
        let scale_px = maps.px_per_mm / factor as f64;
        // Box-downsampled from `value` on the fly: no full-resolution copy of any map.
        let cell_mean = |q: Pixel, dim: (usize, usize), value: &dyn Fn(Pixel) -> f32| {
            let (sum, n) =
                block(q, factor, dim).fold((0f32, 0usize), |(s, n), p| (s + value(p), n + 1));
            sum / n.max(1) as f32
        };
        let box_mean = |(h, w): (usize, usize), value: &dyn Fn(Pixel) -> f32| {
            Array2::from_shape_fn(((h / factor).max(1), (w / factor).max(1)), |q| {
                cell_mean(q, (h, w), value)
            })
        };
        let band_of = |dim: (usize, usize), value: &dyn Fn(Pixel) -> f32| {
            let small = box_mean(dim, value);
            smooth(small.view(), (0.4 * scale_px) as f32)
                - smooth(small.view(), (2.0 * scale_px) as f32)
        };
        let band = |name: &str| {
            let map = maps
                .channel(name)
                .unwrap_or_else(|| panic!("skin model manifest lacks channel {name}"));
            band_of(map.dim(), &|p| map[p])
        };
        let (w, h) = maps.srgb.dimensions();
        let srgb_dim = (h as usize, w as usize);
        let density = |c: usize| {
            band_of(srgb_dim, &|(y, x)| {
                optical_density(maps.srgb.get_pixel(x as u32, y as u32).0[c])
            })
        };
        let code =
            |c: usize| move |(y, x): Pixel| 255.0 * maps.srgb.get_pixel(x as u32, y as u32).0[c];
        let (melanin, hemoglobin, shading) = (band("melanin"), band("hemoglobin"), band("shading"));
        let melanin_red_green = maps.weighting.as_ref().map(melanin_red_green);
        // Red and green's rounding, read only where blue is unmeasured (few cells of a face).
        let blue = box_mean(srgb_dim, &code(2));
        let red_green_only = Array2::from_shape_fn(blue.dim(), |q| {
            melanin_red_green.and_then(|[sr, sg]| {
                (blue[q] <= BLUE_UNMEASURED_CODE).then(|| {
                    let [r, g] = [0, 1].map(|c| {
                        crate::model::rounding_density(f64::from(cell_mean(q, srgb_dim, &code(c))))
                            as f32
                    });
                    (sg * r).hypot(sr * g) / (sg - sr)
                })
            })
        });
        // The relief the scar detector measures: the model's shading plus the melanin and
        // hemoglobin share its noise weighting lets in (see [`crate::relief::Relief`]).
        let weighted_relief = maps.relief().map(|relief| {
            Array2::from_shape_fn(shading.dim(), |q @ (qy, qx)| {
                let [a, b] = relief.leak_at((qy * factor + factor / 2, qx * factor + factor / 2));
                shading[q] + a * melanin[q] + b * hemoglobin[q]
            })
        });
        LeakBands {
            factor,
            melanin,
            hemoglobin,
            shading,
            weighted_relief,
            red: density(0),
            green: density(1),
            red_green_only,
            melanin_red_green,
        }
    }

    /// The low-resolution pixel that holds working pixel `(y, x)`.
    fn cell(&self, (y, x): Pixel) -> Pixel {
        let (h, w) = self.shading.dim();
        ((y / self.factor).min(h - 1), (x / self.factor).min(w - 1))
    }
}

/// The working pixels of low-resolution pixel `(y, x)` when `factor`² of them make one.
fn block(
    (y, x): (usize, usize),
    factor: usize,
    (h, w): (usize, usize),
) -> impl Iterator<Item = (usize, usize)> {
    (y * factor..((y + 1) * factor).min(h))
        .flat_map(move |yy| (x * factor..((x + 1) * factor).min(w)).map(move |xx| (yy, xx)))
}

impl<'a> ChromophoreLeak<'a> {
    /// Fits the leak over the cells mostly inside `mask`, a region window's mask whose
    /// `(0, 0)` is whole-crop pixel `origin`.
    fn fit(maps: &'a SkinMaps, mask: &Array2<bool>, origin: Pixel) -> ChromophoreLeak<'a> {
        let bands = maps.leak_bands();
        let f = bands.factor;
        let (_, h, w) = maps.maps.dim();
        let (oy, ox) = origin;
        let (mh_px, mw_px) = mask.dim();
        let in_mask = |(y, x): Pixel| {
            (oy..oy + mh_px).contains(&y) && (ox..ox + mw_px).contains(&x) && mask[[y - oy, x - ox]]
        };
        // Only the cells that meet the window can hold mask pixels; they are visited in the
        // same row-major order as over the whole crop, so the sums are the same.
        let (bh, bw) = bands.shading.dim();
        let cells =
            |o: usize, n: usize, len: usize| (o / f).min(len)..((o + n).div_ceil(f)).min(len);
        let (mut mm, mut hh, mut mh, mut sm, mut sh) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for q in cells(oy, mh_px, bh).flat_map(|qy| cells(ox, mw_px, bw).map(move |qx| (qy, qx))) {
            let inside = block(q, f, (h, w)).filter(|&p| in_mask(p)).count();
            if 2 * inside <= f * f {
                continue;
            }
            let s = bands.shading[q];
            let (m, hb, s) = (
                f64::from(bands.melanin[q]),
                f64::from(bands.hemoglobin[q]),
                f64::from(s),
            );
            (mm, hh, mh, sm, sh) = (
                mm + m * m,
                hh + hb * hb,
                mh + m * hb,
                sm + s * m,
                sh + s * hb,
            );
        }
        let det = mm * hh - mh * mh;
        let (a, b) = if det > 1e-12 * (mm * hh).max(f64::MIN_POSITIVE) {
            ((sm * hh - sh * mh) / det, (sh * mm - sm * mh) / det)
        } else {
            (0.0, 0.0)
        };
        ChromophoreLeak {
            a: a.clamp(-LEAK_MAX, LEAK_MAX),
            b: b.clamp(-LEAK_MAX, LEAK_MAX),
            bands,
            origin,
        }
    }

    /// True when the shading band-pass at working pixel `p` is not a darkening, or is one the
    /// red and green densities share within a factor [`GREY_MIN_FRACTION`] (past a melanin
    /// deficit, [`relief_past_deficit`]) and darken alike
    /// (red at least [`RED_GREEN_MIN`] of green over the darkened cells around `p`): relief.
    /// Where blue is unmeasured ([`BLUE_UNMEASURED_CODE`]) the shading is not consulted: the
    /// relief on red and green ([`relief_on_red_green`]) must clear [`RED_GREEN_QUANTA`] of
    /// their rounding, and red darken like green.
    fn grey(&self, (y, x): Pixel) -> bool {
        let bands = self.bands;
        let q = bands.cell((y + self.origin.0, x + self.origin.1));
        let relief = bands.relief();
        let shading = relief[q];
        let (red, green) = (bands.red[q], bands.green[q]);
        let red_green = 0.5 * (red + green);
        // Red at least `RED_GREEN_MIN` of green over the cells around `q` that `darkened`
        // holds at. Summed only when the cheaper tests pass: most pixels asked about are not
        // darkenings.
        let red_like_green = |darkened: &dyn Fn(Pixel) -> bool| {
            let (h, w) = bands.shading.dim();
            let (mut red, mut green) = (0f32, 0f32);
            for qy in q.0.saturating_sub(1)..=(q.0 + 1).min(h - 1) {
                for qx in q.1.saturating_sub(1)..=(q.1 + 1).min(w - 1) {
                    if darkened((qy, qx)) {
                        red += bands.red[[qy, qx]];
                        green += bands.green[[qy, qx]];
                    }
                }
            }
            red >= RED_GREEN_MIN * green
        };
        if let (Some(quantum), Some(vector)) = (bands.red_green_only[q], bands.melanin_red_green) {
            // Blue unmeasured: the relief is red and green's alone, and must clear their
            // rounding.
            let relief = relief_on_red_green(red, green, vector);
            return relief >= RED_GREEN_QUANTA * quantum
                && red_like_green(&|c| bands.red[c] + bands.green[c] > 0.0);
        }
        // The relief red and green share, past a melanin deficit both they and the model see.
        let shared = bands
            .melanin_red_green
            .and_then(|vector| relief_past_deficit(red, green, bands.melanin[q], vector))
            .map_or(red_green, |relief| relief.max(red_green));
        shading <= 0.0
            || (shared >= GREY_MIN_FRACTION * shading
                && GREY_MIN_FRACTION * red_green <= shading
                && red_like_green(&|c| relief[c] > 0.0))
    }

    /// The fraction of the shading band-pass at working pixel `p` that the leak explains; 0
    /// where the band-pass is not a darkening at this resolution.
    fn explained(&self, (y, x): Pixel) -> f64 {
        let bands = self.bands;
        let q = bands.cell((y + self.origin.0, x + self.origin.1));
        let shading = f64::from(bands.shading[q]);
        if shading <= 0.0 {
            return 0.0;
        }
        (self.a * f64::from(bands.melanin[q]) + self.b * f64::from(bands.hemoglobin[q])) / shading
    }
}

/// Smallest pore counted, in source pixels across (its half-max extent). A pore of 1.5–2
/// source pixels can measure less than 1.5 at half maximum once resampled to the working
/// scale, so a limit of 1.5 dropped 15–20% of the pores of 5 px/mm phantoms (0.30–0.40 mm
/// pores); 1.3 found them all. Pores narrower than a source pixel are still drawn by it (a
/// 0.15-mm pore 40% darker darkens one 5-px/mm pixel by ~10%), and the independent renderer's
/// 0.12–0.25-mm pores at 5 px/mm were missed at 1.3: 1.0 finds 91% of its pores there (85% at
/// 1.3; pore-count failures 23 → 16 of 45 images), leaves the seed 7–9 phantom sets as they
/// were, and on real portraits (≈3.5 px/mm, where such pores sit at the resolution limit)
/// moved the pore-count noise floor from 16.3 to 15 (leave-one-out false alarms 13 → 12 of 78).
/// When split scars were still counted twice, a lower limit had widened that floor (16 → 24);
/// below one source pixel there is no size to measure.
const PORE_MIN_SOURCE_PX: f64 = 1.0;

/// Smallest pore diameter counted on a photo sampled at `source_px_per_mm`, mm: the setting,
/// or one photo pixel where that is wider (see `PORE_MIN_SOURCE_PX`).
pub fn smallest_pore_mm(settings: &MetricSettings, source_px_per_mm: f64) -> f64 {
    settings
        .pore_min_diameter_mm
        .max(PORE_MIN_SOURCE_PX / source_px_per_mm)
}

/// Narrowest icepick scar told from a pore, in source pixels across.
///
/// Why: below it an icepick and a large, dark pore are both a dark dot a pixel or two wide, and
/// the pit rule ([`PIT_PORE_FACTOR`]) has only their darkness to go by, which the photo's
/// pixels dilute. On the independent renderer's seeds 1–4 (`scripts/independent_phantoms.py`,
/// clean images, 48 icepick scars per resolution) 34 of 48 were counted as scars at 5 px/mm
/// and 191 of 192 at 8–20 px/mm. The ones lost at 5 px/mm were 0.40–0.49 mm wide (2.0–2.45
/// pixels), and were counted as pores: their pits read 0.70–0.76 OD against 0.55–0.66 for the
/// darkest pores of the same skin (a temporary debug print). Those of 0.51–0.54 mm (2.55–2.7
/// pixels) were counted as scars.
const ICEPICK_MIN_SOURCE_PX: f64 = 2.5;

/// Narrowest icepick scar told from a pore on a photo sampled at `source_px_per_mm`, mm (see
/// `ICEPICK_MIN_SOURCE_PX`); narrower ones may be counted as pores.
pub fn narrowest_icepick_mm(source_px_per_mm: f64) -> f64 {
    ICEPICK_MIN_SOURCE_PX / source_px_per_mm
}

/// How many times the `*_excess` smoothing may be doubled (0.3 → 0.6 → 1.2 mm by default)
/// when a photo is too noisy for the finest.
const PATCH_SCALE_STEPS: u32 = 2;

/// A doubled smoothing of the `*_excess` maps is used only when it lowers the region's
/// adaptive threshold by at least this factor.
///
/// Why: on noisy photos (sensor noise on dark skin, where one code value is a large optical
/// density) the adaptive threshold of the 0.3-mm map rises far above real macules: on a dark
/// phantom with σ 0.01 linear noise it is 1.7 melanin units, against 0.4–0.9 for the macules,
/// and every macule was lost. Doubling the smoothing halves white noise (threshold ÷ ≈2) but
/// not texture or real structure (÷ ≈1.1 on the clean phantoms and portraits), so this
/// ratio tells noise-limited photos from textured ones, and clean photos are measured
/// exactly as before. Larger macules, the ones a coarse smoothing keeps, are then found;
/// macules narrower than the smoothing stay lost, as they must at that noise.
const PATCH_SCALE_GAIN: f32 = 1.5;

/// Width of the ring around a pigment or erythema patch against which its darkening in the
/// low-noise shading is measured, mm.
const CONFIRM_RING_MM: f64 = 1.0;

/// A macule must darken the low-noise shading by at least this fraction of what its mean
/// melanin excess predicts (see [`shading_darkening`]); an erythema patch at least
/// [`ERYTHEMA_CONFIRM_FRACTION`] of what its hemoglobin excess predicts.
const CONFIRM_FRACTION: f64 = 0.5;

/// [`CONFIRM_FRACTION`] for erythema patches.
///
/// Why lower: a blue-only excursion (JPEG's chroma contours) darkens the low-noise shading by
/// about a twenty-fourth of the prediction, a patch of the model's own colour by all of it,
/// and one whose colour differs from the model's vectors by less. The independent renderer's
/// erythema (hemoglobin 16° from the model's) read 0.44–0.61 (temporary debug prints), so at
/// 0.5 its 10-mm patches on tan skin were confirmed at 10 px/mm (5.0% for a half-maximum area
/// of 4.8%) and rejected at 5 px/mm (0%, ratios 0.44 and 0.50): the same skin, two numbers
/// (`independent_phantoms.py --probe erythema --probe-res 5,10`; now 4.65% and 5.0%). For
/// macules 0.25 let a JPEG q90 contour through on a tan phantom (5 macules for 4,
/// `jpeg_keeps_pores_and_invents_no_macules`), so melanin keeps 0.5.
const ERYTHEMA_CONFIRM_FRACTION: f64 = 0.25;

/// Where blue is left out ([`crate::model::SkinMaps::blue_left_out`]), a pigment patch that
/// darkens the low-noise shading by more than this multiple of what its melanin predicts is
/// relief, not pigment (see [`shading_darkening`]).
///
/// Why: without blue the chromophore estimate assumes the shading flat wherever red and green
/// do not change alike, and a shallow relief whose red and green excess is too small to read
/// pixel by pixel goes to melanin. Relief darkens the shading in full, and melanin by its
/// gain. Measured (a temporary debug print): on our dark phantoms under σ 0.002–0.006 noise,
/// two boxcar walls that became 0.8–2-mm² "macules" read 1.64 and 3.28, and the macules
/// 1.05–1.26; on the independent renderer's noisy dark macules 0.97–1.40. Erythema patches
/// read up to 1.58, so hemoglobin is not checked.
const RELIEF_DARKENING: f64 = 1.5;

/// A hole in a patch's extent is filled when its mean chromophore level lies at least this
/// fraction of the way from the skin around the patch to the patch's own rim
/// (see [`fill_hollow`]).
const HOLLOW_FILL_FRACTION: f64 = 0.5;

/// A patch's extent with its hollow centre filled: each hole (in-mask pixels the extent
/// encloses) whose mean `level` (the melanin or hemoglobin map itself, before the background
/// is subtracted) lies at least [`HOLLOW_FILL_FRACTION`] of the way from the skin in a ring
/// of `ring_px` around the patch to the patch's rim. A hole that reaches outside the region's
/// mask (an eye, a nostril) is left open. With the extent comes, when a hole was filled, the
/// patch's contrast: its mean `level` minus the skin's.
///
/// Why: the excess maps subtract a Gaussian background of σ 3.2 mm, and under a patch wider
/// than about 8 mm that background rises to the patch's own level, so the centre reads as
/// skin and the half-maximum extent is a ring: 10–15-mm macules measured about 4.0% for
/// 5.4%, 12–20-mm erythema 2.4% for 4.6%. Melasma and post-inflammatory patches are often
/// that wide. A hole at the rim's level is that centre; a hole at the skin's level is skin
/// the patch surrounds and stays out. Measuring every patch against the skin outside it
/// (normalized convolution) fixed the phantoms too, but it moved every excess value and made
/// the portraits' pigment and redness areas 1.5–3× less repeatable; this touches only
/// pixels a patch encloses.
fn fill_hollow(
    extent: Blob,
    level: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    ring_px: usize,
) -> (Blob, Option<f32>) {
    let Some(((y0, x0), (y1, x1))) = bounding_box(extent.pixels.iter().copied()) else {
        return (extent, None);
    };
    // The box with a one-pixel border, so that everything outside the extent is reached
    // from the border; local (i, j) is (y0 + i - 1, x0 + j - 1).
    let (bh, bw) = (y1 - y0 + 3, x1 - x0 + 3);
    let mut member = Array2::from_elem((bh, bw), false);
    for &(y, x) in &extent.pixels {
        member[[y - y0 + 1, x - x0 + 1]] = true;
    }
    // 4-connected outside, so that an 8-connected rim closes a hole.
    let mut outside = Array2::from_elem((bh, bw), false);
    let mut stack: Vec<Pixel> = (0..bh)
        .flat_map(|i| [(i, 0), (i, bw - 1)])
        .chain((1..bw - 1).flat_map(|j| [(0, j), (bh - 1, j)]))
        .collect();
    for &p in &stack {
        outside[p] = true;
    }
    while let Some((i, j)) = stack.pop() {
        let neighbours = [
            (i.wrapping_sub(1), j),
            (i + 1, j),
            (i, j.wrapping_sub(1)),
            (i, j + 1),
        ];
        for (ni, nj) in neighbours {
            if ni < bh && nj < bw && !member[[ni, nj]] && !outside[[ni, nj]] {
                outside[[ni, nj]] = true;
                stack.push((ni, nj));
            }
        }
    }
    let enclosed = ndarray::Zip::from(&member)
        .and(&outside)
        .map_collect(|&m, &o| !m && !o);
    if !enclosed.iter().any(|&e| e) {
        return (extent, None);
    }
    let global = |(i, j): Pixel| (y0 + i - 1, x0 + j - 1);
    let mean = |pixels: &mut dyn Iterator<Item = Pixel>| {
        let (sum, count) =
            pixels.fold((0f64, 0usize), |(s, c), p| (s + f64::from(level[p]), c + 1));
        (count > 0).then(|| sum / count as f64)
    };
    let rim = mean(&mut extent.pixels.iter().copied());
    let (h, w) = mask.dim();
    let skin = mean(
        &mut (y0.saturating_sub(ring_px)..=(y1 + ring_px).min(h - 1))
            .flat_map(|y| {
                (x0.saturating_sub(ring_px)..=(x1 + ring_px).min(w - 1)).map(move |x| (y, x))
            })
            .filter(|&(y, x)| {
                let local = (y + 1).checked_sub(y0).zip((x + 1).checked_sub(x0));
                let in_box_not_outside = local
                    .filter(|&(i, j)| i < bh && j < bw)
                    .is_some_and(|l| !outside[l]);
                mask[[y, x]] && !in_box_not_outside
            }),
    );
    let (Some(rim), Some(skin)) = (rim, skin) else {
        return (extent, None);
    };
    if rim <= skin {
        return (extent, None);
    }
    let rim_len = extent.len();
    let mut pixels = extent.pixels;
    // Holes that touch only diagonally are judged together.
    for hole in components(&enclosed) {
        let hole: Vec<Pixel> = hole.pixels.into_iter().map(global).collect();
        if hole.iter().any(|&p| !mask[p]) {
            continue;
        }
        let inside = mean(&mut hole.iter().copied()).expect("components are non-empty");
        if inside - skin >= HOLLOW_FILL_FRACTION * (rim - skin) {
            pixels.extend(hole);
        }
    }
    if pixels.len() == rim_len {
        return (Blob { pixels }, None);
    }
    pixels.sort_unstable();
    let contrast = mean(&mut pixels.iter().copied()).expect("the rim is non-empty") - skin;
    (Blob { pixels }, Some(contrast as f32))
}

/// A wide patch's extent grown to its edge on the chromophore map itself: the pixels within
/// `ring_px` of it where `level` (smoothed with `sigma_px`) is above half-way from the skin
/// beyond that ring to the patch's mean level, and connected to it.
///
/// Why: the excess of a wide patch is low at its edge as well as at its centre (the
/// background has risen under it there too), so its half-maximum extent lies inside the
/// edge: 10–15-mm macules measured 0.91 of their area and 12–20-mm erythema 0.85 once
/// filled ([`fill_hollow`]).
fn wide_edge(
    extent: Blob,
    level: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    ring_px: usize,
    sigma_px: f32,
) -> Blob {
    let Some(((y0, x0), (y1, x1))) = bounding_box(extent.pixels.iter().copied()) else {
        return extent;
    };
    let (h, w) = mask.dim();
    let margin = 2 * ring_px + (3.0 * sigma_px).ceil() as usize + 1;
    let (wy0, wx0) = (y0.saturating_sub(margin), x0.saturating_sub(margin));
    let (wy1, wx1) = ((y1 + margin + 1).min(h), (x1 + margin + 1).min(w));
    let smoothed = smooth(level.slice(ndarray::s![wy0..wy1, wx0..wx1]), sigma_px);
    let mut member = Array2::from_elem(smoothed.dim(), false);
    for &(y, x) in &extent.pixels {
        member[[y - wy0, x - wx0]] = true;
    }
    let near = dilate(&member, ring_px);
    let beyond = dilate(&near, ring_px);
    let (mut skin, mut count) = (0f64, 0usize);
    for ((i, j), &b) in beyond.indexed_iter() {
        if b && !near[[i, j]] && mask[[i + wy0, j + wx0]] {
            skin += f64::from(smoothed[[i, j]]);
            count += 1;
        }
    }
    if count == 0 {
        return extent;
    }
    let skin = skin / count as f64;
    let patch = extent
        .pixels
        .iter()
        .map(|&(y, x)| f64::from(smoothed[[y - wy0, x - wx0]]))
        .sum::<f64>()
        / extent.len() as f64;
    if patch <= skin {
        return extent;
    }
    let half = (skin + 0.5 * (patch - skin)) as f32;
    let mut stack: Vec<Pixel> = extent
        .pixels
        .iter()
        .map(|&(y, x)| (y - wy0, x - wx0))
        .collect();
    let mut pixels = extent.pixels;
    while let Some((i, j)) = stack.pop() {
        for ni in i.saturating_sub(1)..(i + 2).min(member.nrows()) {
            for nj in j.saturating_sub(1)..(j + 2).min(member.ncols()) {
                if !member[[ni, nj]]
                    && near[[ni, nj]]
                    && mask[[ni + wy0, nj + wx0]]
                    && smoothed[[ni, nj]] >= half
                {
                    member[[ni, nj]] = true;
                    pixels.push((ni + wy0, nj + wx0));
                    stack.push((ni, nj));
                }
            }
        }
    }
    pixels.sort_unstable();
    Blob { pixels }
}

/// How much a chromophore patch darkens the low-noise shading `u · OD`
/// ([`crate::model::LowNoiseShading`]), and how much its excess predicts: `(darkening,
/// predicted)`, the patch's mean shading minus the mean over a ring of `ring_px` around its
/// bounding box, and `gain` × its mean excess. A patch is confirmed when the darkening is at
/// least [`CONFIRM_FRACTION`] of the prediction ([`ERYTHEMA_CONFIRM_FRACTION`] for erythema).
///
/// Why: melanin and hemoglobin come from the Tsumura projection, which leans on the blue
/// channel. On pigmented skin one code value of blue is 0.02–0.07 OD, and JPEG's Y/Cb/Cr
/// rounding draws ±1-code contours across smooth skin that the projection turns into
/// macule-sized "patches" (a tan phantom at JPEG q90 gained 9 false macules). A real
/// macule or erythema patch absorbs in every channel and darkens `u · OD` by `gain` per unit
/// of excess (0.46 for melanin, 0.38 for hemoglobin); a blue-only excursion moves it by a
/// twenty-fourth of that (u_B = 0.15 against the melanin row's 3.6 on blue).
fn shading_darkening(
    blob: &Blob,
    excess: ndarray::ArrayView2<'_, f32>,
    shading: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    gain: f32,
    ring_px: usize,
) -> (f64, f64) {
    let (h, w) = mask.dim();
    let Some(((y0, x0), (y1, x1))) = bounding_box(blob.pixels.iter().copied()) else {
        return (0.0, 0.0);
    };
    let (mut inside, mut predicted) = (0f64, 0f64);
    for &(y, x) in &blob.pixels {
        inside += f64::from(shading[[y, x]]);
        predicted += f64::from(excess[[y, x]]);
    }
    let n = blob.pixels.len() as f64;
    let members: std::collections::HashSet<(usize, usize)> = blob.pixels.iter().copied().collect();
    let (mut ring, mut count) = (0f64, 0usize);
    for y in y0.saturating_sub(ring_px)..=(y1 + ring_px).min(h - 1) {
        for x in x0.saturating_sub(ring_px)..=(x1 + ring_px).min(w - 1) {
            if mask[[y, x]] && !members.contains(&(y, x)) {
                ring += f64::from(shading[[y, x]]);
                count += 1;
            }
        }
    }
    if count == 0 {
        return (0.0, 0.0);
    }
    (
        inside / n - ring / count as f64,
        f64::from(gain) * predicted / n,
    )
}

/// `response` with each pixel's deviation from the region's median (`median` and robust spread
/// `sigma` are [`robust_stats`] of `response`) scaled down where the
/// photo's noise there (`noise`, the band's standard deviation from
/// [`crate::model::SkinMaps::pore_noise`]) is above the region's typical noise, so that one
/// threshold admits the same rate of noise everywhere.
///
/// Why only the noise part: the region's spread σ of the band is its texture and its noise,
/// `σ² = τ² + ν²` with ν the typical (median) noise; at a pixel whose noise is `n` the spread
/// is `√(τ² + n²)`, and the deviation is scaled by `σ / √(τ² + n²)`. A pixel is never scaled
/// up: where the photo is brighter and cleaner than typical the region's threshold stands, as
/// it did before the noise was modelled. On a clean photo `n ≪ σ` and nothing changes; on a
/// noisy one a macule that reflects 60% of the skin's light has 1.6 times its noise, and its
/// threshold is raised by as much.
///
/// Why the band's own spread as well ([`spread_by_noise_ratio`]): the prediction is only as
/// good as the noise measured on the photo's pixels, and JPEG smooths away the pixel-to-pixel
/// part of the noise while the band still passes the rest. On the independent renderer's dark
/// skin under 3 codes of noise and JPEG q85 (15 px/mm) the predicted band noise was 0.003 for
/// a band spread of 0.028, so nothing was scaled, while the pixels the model calls 1.6–2 times
/// noisier than typical (the macules) spread 0.062: all 17 of its extra pores (81 for 67) lay
/// inside macules (temporary debug prints). Which pixels are noisier is still the model's call
/// (their level says so); how much noisier, where the band measures more than the model
/// predicts, is measured. That image now reads 64, and the independent sets' pore-count
/// failures went from 9 to 6 (seed 1) and 7 to 6 (seed 2). On the portraits the darker,
/// textured parts of a region (lashes, the inner corner of the eye, brow hairs) measure a
/// wider band too and stop passing for pores (seen on cc0_zoom_15cm's overlays): 687 pores
/// over the 13 portraits became 545, and a region's pore count changes under re-capture by
/// 2.3 on average (2.7).
fn noise_scaled(
    response: ndarray::ArrayView2<'_, f32>,
    (median, sigma): (f32, f32),
    noise: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    px_per_mm: f64,
) -> Array2<f32> {
    let (typical, _) = robust_stats(noise, mask);
    if typical <= 0.0 || sigma <= 0.0 {
        return response.to_owned();
    }
    let nu = typical.min(sigma);
    let tau2 = sigma * sigma - nu * nu;
    let ratio = smooth(noise, (NOISE_BIN_SMOOTHING_MM * px_per_mm) as f32).mapv(|n| n / typical);
    let min_px = (SPREAD_BIN_MIN_MM2 * px_per_mm * px_per_mm).ceil() as usize;
    let factors = spread_by_noise_ratio(response, &ratio, mask, min_px);
    let mut out = response.to_owned();
    ndarray::Zip::from(&mut out)
        .and(noise)
        .and(&ratio)
        .for_each(|v, &n, &r| {
            let n = nu * n / typical;
            let spread = (tau2 + n * n)
                .sqrt()
                .max(sigma)
                .max(sigma * ratio_bin(r).map_or(0.0, |b| factors[b]));
            *v = median + (*v - median) * sigma / spread;
        });
    out
}

/// Width of the bins of predicted noise ratio (a pixel's noise over the region's typical) in
/// which [`spread_by_noise_ratio`] measures the band.
const NOISE_RATIO_BIN: f32 = 0.1;

/// Bins above the typical noise: ratios from 1 to 5; a noisier pixel shares the last bin.
const NOISE_RATIO_BINS: usize = 40;

/// Area a bin needs before its spread is measured, mm² (500 working pixels at 10 px/mm).
const SPREAD_BIN_MIN_MM2: f64 = 5.0;

/// A bin's measured spread counts at its lower bound, this many standard errors below (the
/// robust spread of n Gaussian samples is uncertain by 1.17/√n of itself: 10% at 500 pixels
/// for two). Why: on a clean photo every bin measures the region's spread give or take that
/// error, and without the margin half of them would raise their pixels' thresholds by chance.
const SPREAD_MARGIN_SE: f32 = 2.0;

/// The noise map is smoothed over this (σ, mm) before it is binned. Why: a pore darkens the
/// 0.3-mm block its noise is predicted from, which moves it into a noisier bin; unsmoothed,
/// the pores' own response raised those bins' spread (in a draft without the smoothing, the
/// independent renderer's brown skin under a white-balance cast lost 4 of its 67 pores).
const NOISE_BIN_SMOOTHING_MM: f64 = 0.5;

/// The bin of predicted noise ratio `r`, or `None` below the typical noise, where the region's
/// own spread stands.
fn ratio_bin(r: f32) -> Option<usize> {
    (r >= 1.0).then(|| (((r - 1.0) / NOISE_RATIO_BIN) as usize).min(NOISE_RATIO_BINS - 1))
}

/// How many times the typical pixels' spread `response` has in each bin of predicted noise
/// `ratio` above the typical ([`ratio_bin`]) inside `mask`; the first bin (ratios 1–1.1, the
/// typical pixels) is the reference. Each bin counts at its lower bound (see
/// [`SPREAD_MARGIN_SE`]), and the factors never fall: a bin with fewer than `min_px` pixels,
/// or measuring less than a quieter bin, takes the largest factor below it (noise does not
/// fall as it is predicted to rise; a sparse bin of a few dark pixels is no measure). All
/// zero when the reference bin is too sparse.
///
/// Why a factor, not the bin's spread itself: the region's spread σ, which the threshold is
/// set on, mixes the typical pixels with the noisier ones; a noisier bin is held to σ times
/// how much noisier it is than the typical pixels.
fn spread_by_noise_ratio(
    response: ndarray::ArrayView2<'_, f32>,
    ratio: &Array2<f32>,
    mask: &Array2<bool>,
    min_px: usize,
) -> Vec<f32> {
    let mut bins: Vec<Vec<f32>> = vec![Vec::new(); NOISE_RATIO_BINS];
    ndarray::Zip::from(response)
        .and(ratio)
        .and(mask)
        .for_each(|&v, &r, &m| {
            if let (true, Some(b)) = (m, ratio_bin(r)) {
                bins[b].push(v);
            }
        });
    let min_px = min_px.max(1);
    let reference = match bins.first_mut() {
        Some(typical) if typical.len() >= min_px => median_and_spread(typical).1,
        _ => 0.0,
    };
    if reference <= 0.0 {
        return vec![0.0; NOISE_RATIO_BINS];
    }
    let mut floor = 1.0f32;
    bins.into_iter()
        .map(|mut values| {
            let n = values.len();
            if n >= min_px {
                let (_, spread) = median_and_spread(&mut values);
                let margin = SPREAD_MARGIN_SE * 1.17 / (n as f32).sqrt();
                floor = floor.max(spread * (1.0 - margin) / reference);
            }
            floor
        })
        .collect()
}

/// How far from a bright spot in `pore_response` a darker partner is looked for, mm: the lit
/// and shadowed walls of an icepick scar or a deep pore are less than a millimetre apart.
const RELIEF_PARTNER_MM: f64 = 0.6;

/// True when a bright spot (a blob of the negated `pore_response` with peak `strength`) has a
/// dark spot at least as strong within `reach` pixels: the lit wall of a pit whose shadowed
/// side is right beside it. Such relief dipoles (icepick scars the scar detector did not take,
/// deep pores under oblique light) are real structure, not the texture and noise the mirrored
/// detector is meant to sample, so they do not raise the pore threshold.
fn has_darker_partner(
    blob: &Blob,
    strength: f32,
    response: ndarray::ArrayView2<'_, f32>,
    reach: usize,
) -> bool {
    blob.pixels
        .iter()
        .max_by(|a, b| response[**b].total_cmp(&response[**a]))
        .is_some_and(|&p| disk_max(response, p, reach) >= strength)
}

/// The largest value of `response` within `reach` pixels of `(py, px)`.
fn disk_max(response: ndarray::ArrayView2<'_, f32>, (py, px): (usize, usize), reach: usize) -> f32 {
    let (h, w) = response.dim();
    let r2 = (reach * reach) as f64;
    let mut max = f32::MIN;
    for y in py.saturating_sub(reach)..=(py + reach).min(h - 1) {
        for x in px.saturating_sub(reach)..=(px + reach).min(w - 1) {
            let d2 = (y as f64 - py as f64).powi(2) + (x as f64 - px as f64).powi(2);
            if d2 <= r2 {
                max = max.max(response[[y, x]]);
            }
        }
    }
    max
}

/// The largest value of `response` inside a blob.
fn peak(blob: &Blob, response: ndarray::ArrayView2<'_, f32>) -> f32 {
    blob.pixels
        .iter()
        .map(|&p| response[p])
        .fold(f32::MIN, f32::max)
}

/// True when the blob's strongest pixel touches the region's edge (or the map's). Such a
/// finding is the tail of something outside the region — brows, hairline, lips, the shadow
/// of the face contour — whose response keeps rising across the edge, not a lesion whose
/// centre lies inside; it cannot be measured whole either, so it is not counted.
fn peak_on_boundary(
    blob: &Blob,
    response: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
) -> bool {
    let (h, w) = mask.dim();
    let Some(&(y, x)) = blob
        .pixels
        .iter()
        .max_by(|a, b| response[**a].total_cmp(&response[**b]))
    else {
        return false;
    };
    if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
        return true;
    }
    (y - 1..=y + 1).any(|ny| (x - 1..=x + 1).any(|nx| !mask[[ny, nx]]))
}

fn disk_area_px(diameter_mm: f64, px_per_mm: f64) -> f64 {
    let r = diameter_mm * px_per_mm / 2.0;
    std::f64::consts::PI * r * r
}

fn threshold(map: ndarray::ArrayView2<'_, f32>, mask: &Array2<bool>, t: f32) -> Array2<bool> {
    let mut out = Array2::from_elem(mask.dim(), false);
    ndarray::Zip::from(&mut out)
        .and(map)
        .and(mask)
        .for_each(|o, &v, &m| *o = m && v > t);
    out
}

fn paint(blobs: &[Blob], dim: (usize, usize)) -> Array2<bool> {
    let mut out = Array2::from_elem(dim, false);
    for &(y, x) in blobs.iter().flat_map(|b| b.pixels.iter()) {
        out[[y, x]] = true;
    }
    out
}

/// 8-connected components of a binary map, in raster order of their first pixel.
pub(crate) fn components(binary: &Array2<bool>) -> Vec<Blob> {
    let (h, w) = binary.dim();
    let mut seen = Array2::from_elem((h, w), false);
    let mut blobs = Vec::new();
    let mut stack = Vec::new();
    for ((y, x), &on) in binary.indexed_iter() {
        if !on || seen[[y, x]] {
            continue;
        }
        let mut blob = Blob::default();
        seen[[y, x]] = true;
        stack.push((y, x));
        while let Some((cy, cx)) = stack.pop() {
            blob.pixels.push((cy, cx));
            for ny in cy.saturating_sub(1)..=(cy + 1).min(h - 1) {
                for nx in cx.saturating_sub(1)..=(cx + 1).min(w - 1) {
                    if binary[[ny, nx]] && !seen[[ny, nx]] {
                        seen[[ny, nx]] = true;
                        stack.push((ny, nx));
                    }
                }
            }
        }
        blobs.push(blob);
    }
    blobs
}

/// The extent of a detected spot at half its peak response: the connected set around the
/// peak where the response is at least half of it. Unlike a fixed threshold, this size does
/// not grow with contrast, so a deeper pore is not reported as a wider one.
fn half_max_extent(
    blob: &Blob,
    response: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    reach: usize,
) -> Blob {
    let seed = peak_pixel(blob, response);
    extent_at(seed, 0.5 * response[seed], response, mask, reach)
}

fn peak_pixel(blob: &Blob, response: ndarray::ArrayView2<'_, f32>) -> Pixel {
    *blob
        .pixels
        .iter()
        .max_by(|a, b| response[**a].total_cmp(&response[**b]))
        .expect("components are non-empty")
}

/// Farthest a patch's extent is followed from its peak, mm, unless it is a wide patch
/// ([`WIDE_PATCH_REACH_MM`]).
const PATCH_REACH_MM: f64 = 8.0;

/// Farthest a wide patch's extent is followed from its peak, mm: the widest patch measured
/// whole, as melasma and post-inflammatory patches reach 20–30 mm. A wide patch's peak lies
/// on its rim (its background rises under its centre, see [`fill_hollow`]), so its extent
/// reaches [`PATCH_REACH_MM`] before it closes.
///
/// An extent cut at [`PATCH_REACH_MM`] is followed this far only when the result is compact
/// ([`WIDE_PATCH_MIN_COMPACTNESS`]). Why not always: on the portraits, open elongated
/// patches (along a lip's border, a fold, the jaw's shadow) then ran on far from their peak:
/// a perioral pigment area doubled (1.8% → 3.8%) and a cheek's redness rose by a quarter.
const WIDE_PATCH_REACH_MM: f64 = 30.0;

/// Least [`compactness`] of a patch followed beyond [`PATCH_REACH_MM`]. The wide macules and
/// erythema of the phantoms (irregular, hollow centres filled) measure 0.64–0.80; the
/// extents that run on along lip borders, folds and the jaw on the 13 shared portraits
/// 0.05–0.21. A 3 : 1 ellipse is 0.33.
const WIDE_PATCH_MIN_COMPACTNESS: f64 = 0.35;

/// A blob's area over that of the disc around its centroid through its farthest pixel:
/// 1 for a disc, 0.5 for a 2 : 1 ellipse, near 0 for a thin band.
fn compactness(blob: &Blob) -> f64 {
    let n = blob.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (sy, sx) = blob.pixels.iter().fold((0.0, 0.0), |(sy, sx), &(y, x)| {
        (sy + y as f64, sx + x as f64)
    });
    let (cy, cx) = (sy / n, sx / n);
    let r2 = blob
        .pixels
        .iter()
        .map(|&(y, x)| (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2))
        .fold(0.0, f64::max);
    // A pixel is a unit square, not a point: half a pixel more radius.
    n / (std::f64::consts::PI * (r2.sqrt() + 0.5).powi(2))
}

/// Distances, in working pixels, that [`whole_patch`] measures a patch with.
struct PatchReach {
    /// [`PATCH_REACH_MM`].
    near: usize,
    /// [`WIDE_PATCH_REACH_MM`].
    wide: usize,
    /// The ring of skin around a patch ([`CONFIRM_RING_MM`]).
    ring: usize,
    /// The chromophore smoothing ([`MetricSettings::excess_smoothing_mm`]).
    smoothing: f32,
}

/// A patch's extent measured whole, from `extent_within(reach)` (its extent followed at most
/// `reach` pixels from its peak `seed`), with its contrast against the skin around it when a
/// hollow centre was filled.
///
/// An extent cut at [`PATCH_REACH_MM`] is followed to [`WIDE_PATCH_REACH_MM`] if that extent,
/// filled, is compact; a hollow centre is filled ([`fill_hollow`]); and a patch that was
/// filled or followed gets its edge from the chromophore map ([`wide_edge`]; the flag
/// returned last). Any other patch is its extent as found.
fn whole_patch(
    extent_within: impl Fn(usize) -> Blob,
    seed: Pixel,
    level: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    reach: &PatchReach,
) -> (Blob, Option<f32>, bool) {
    let near = extent_within(reach.near);
    let wide = reaches(&near, seed, reach.near)
        .then(|| fill_hollow(extent_within(reach.wide), level, mask, reach.ring))
        .filter(|(wide, _)| compactness(wide) >= WIDE_PATCH_MIN_COMPACTNESS);
    let followed = wide.is_some();
    let (mut extent, contrast) = wide.unwrap_or_else(|| fill_hollow(near, level, mask, reach.ring));
    let edge_read = followed || contrast.is_some();
    if edge_read {
        extent = wide_edge(extent, level, mask, reach.ring, reach.smoothing);
    }
    (extent, contrast, edge_read)
}

/// A patch at least [`LEVEL_EDGE_MIN_MM`] across that [`whole_patch`] did not already give an
/// edge on the chromophore map gets one ([`wide_edge`]), unless that edge would grow its area
/// by more than [`LEVEL_EDGE_MAX_GROWTH`].
///
/// Why: the local background (a Gaussian of σ 3.2 mm) rises under a macule a few millimetres
/// wide as well, less at its rim than at its centre, so half of its excess peak lies inside
/// its edge. The independent renderer's macule probe (`scripts/independent_phantoms.py
/// --probe macules --probe-res 10`, very light, tan and dark skin) read 6- and 8-mm macules
/// at 0.90–0.92 and 0.82–0.89 of their area; on its five seeds, whose macules are 1.5–8 mm,
/// the pigmented area read 0.41 points under the truth on average. Read on the melanin map,
/// the edge lies half-way between the patch and the skin around it, where the truth puts it.
/// Smaller patches keep their excess extent: there the background hardly rises (4-mm macules
/// read 0.90–0.97 of their area, 2.5-mm ones 0.96–1.03), and half-way to a small spot's mean
/// level lies outside its half-maximum.
fn level_edge(
    extent: Blob,
    level: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    reach: &PatchReach,
    min_diameter_px: f64,
) -> Blob {
    let diameter_px = 2.0 * (extent.len() as f64 / std::f64::consts::PI).sqrt();
    if diameter_px < min_diameter_px {
        return extent;
    }
    let before = extent.len() as f64;
    let grown = wide_edge(extent.clone(), level, mask, reach.ring, reach.smoothing);
    if grown.len() as f64 <= LEVEL_EDGE_MAX_GROWTH * before {
        grown
    } else {
        extent
    }
}

/// Smallest equivalent diameter, mm, of a patch's excess extent for [`level_edge`]. The
/// probe's 4-mm macules (excess extents about 3.9 mm across) stay as found; at 3 mm they read
/// 1.04–1.08 of their area.
const LEVEL_EDGE_MIN_MM: f64 = 5.0;

/// Largest growth of a patch's area that [`level_edge`] accepts. On clean skin the melanin
/// map's edge grew the independent renderer's macules by 1.03–1.19×; under noise (dark skin,
/// 3 codes of noise, with or without JPEG) the unsmoothed map's noise carried it 1.36–1.70×
/// (temporary debug prints), which read seed 3's dark noisy image at 6.24% for 4.35%. Past
/// this growth the edge follows noise, and the excess extent is kept.
const LEVEL_EDGE_MAX_GROWTH: f64 = 1.3;

/// True when `extent` reaches the edge of the box of `reach` pixels around `seed`, where
/// [`extent_at`] stops following it.
fn reaches(extent: &Blob, (sy, sx): Pixel, reach: usize) -> bool {
    extent
        .pixels
        .iter()
        .any(|&(y, x)| y.abs_diff(sy) >= reach || x.abs_diff(sx) >= reach)
}

/// Largest smoothing of a patch map, mm, under which a patch's peak is read for its
/// half-maximum extent ([`patch_extent`]).
const PATCH_PEAK_SMOOTHING_MM: f64 = 1.2;

/// A patch's peak is read under a smoothing of at most this fraction of its equivalent
/// radius, so a small spot's peak is hardly lowered by it.
const PATCH_PEAK_SMOOTHING_FRACTION: f64 = 0.5;

/// A macule's smoothed peak counts as at least this fraction of its highest pixel.
///
/// Why: a small bright spot on a broad faint pedestal (a JPEG chroma block beside a
/// speck) reads the pedestal under a wide smoothing, and the iteration then settles on the
/// pedestal's extent: an intermediate phantom at 5 px/mm and JPEG q85 measured 3.8% for
/// 1.2%. The textured macules of the independent renderer read 0.55–0.92 of their highest
/// pixel (a few 0.4–0.5), so this bound costs them little (0.902 → 0.898 of the true area).
const MACULE_PEAK_MIN_FRACTION: f32 = 0.5;

/// An erythema patch's smoothed peak counts as at least this fraction of its highest pixel.
///
/// Why a smoothed peak at all: JPEG's coarse chroma (4:2:0 and the chroma quantization table)
/// low-passes a patch's hemoglobin. On a light phantom (seed 41) at q90 the top of a 5-mm
/// patch fell from 0.310 to 0.275 OD at the same pixel while its flanks rose, so half of the
/// highest pixel cut 12% further out (2111 → 2366 px; a temporary debug print of the map).
/// Read under smoothing, the clean dome and the flattened one give nearly the same peak.
/// Over seeds 41 and 11–14 (light and tan skin at q90, every tone under σ 0.002 noise, whose
/// highest pixel is plateau plus noise), 5 of those 25 pairs moved the erythema area by more
/// than 5%, against 10 with the highest pixel; worst +7.3% and −14.5%, against +25.5% and
/// −62% (printed by the accuracy test `jpeg_and_noise_keep_the_erythema_area`; a bound of
/// 1.0 is the old rule exactly).
///
/// What it costs: on a textureless dome the smoothed peak falls to this bound and the extent
/// reads 14% wide. On the phantoms that partly offsets the local background's rise under a
/// patch, which shrinks its excess: clean phantoms read 8–14% under the true area, against
/// 17–20% with the highest pixel.
///
/// Why higher than the macules' bound: hemoglobin has no mottle that grows with the skin's
/// colour, so its highest pixel is near the plateau, while the portraits' faint redness (a
/// speck on faint broad redness around the eyes or on a forehead) flickers in and out
/// between re-photographs. With 0.5 such a speck arrived measured as its pedestal, and the
/// portrait noise floor of redness area rose from 4.8× to 5.5× the median non-zero area
/// (0.0174 at 0.0036 → 0.0303 at 0.0055); with 0.8 it is 4.7× (0.0236 at 0.0050). Figures
/// from `cargo run --release --example noise_floor` with this constant at 1.0, 0.5 and 0.8.
const ERYTHEMA_PEAK_MIN_FRACTION: f32 = 0.8;

/// Rounds of [`patch_extent`]'s fixed-point iteration; the extent changes by a few pixels
/// at most after the third.
const PATCH_EXTENT_ROUNDS: usize = 4;

/// The extent of a patch (a macule or erythema): connected to its peak, at half of the
/// patch's peak read under a smoothing of half its equivalent radius (at most
/// [`PATCH_PEAK_SMOOTHING_MM`]), found by a few rounds of fixed-point iteration started
/// from the largest smoothing. The level stays at or above half the detection threshold
/// `t` (below it the map is the texture's, not the patch's) and the smoothed peak at or above
/// `min_fraction` of the highest pixel.
///
/// Why not the plain [`half_max_extent`]: skin texture rides on a macule as on the skin
/// around it, so the map's highest pixel in a macule is its plateau plus the texture's
/// highest excursion in it, and half of that cuts into the macule. On the independently
/// rendered phantoms (6% melanin mottle, 1 mm grain) the plain half-max extent was 0.72 of
/// the true macule areas in all, down to 0.08 on dark skin where a dip in the mottle split
/// a 6.7-mm macule; with the smoothed peak, 0.90. The smoothing follows the patch's size
/// because a fixed 1.2 mm would lower a 2-mm spot's peak by a third and inflate its extent.
fn patch_extent(
    blob: &Blob,
    map: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    reach: usize,
    max_smoothing_px: f32,
    t: f32,
    min_fraction: f32,
) -> Blob {
    let seed = peak_pixel(blob, map);
    let mut extent = extent_at(seed, 0.5 * map[seed], map, mask, reach);
    for round in 0..PATCH_EXTENT_ROUNDS {
        if extent.pixels.is_empty() {
            break;
        }
        let radius = (extent.len() as f64 / std::f64::consts::PI).sqrt();
        let sigma = if round == 0 {
            max_smoothing_px
        } else {
            ((PATCH_PEAK_SMOOTHING_FRACTION * radius) as f32).min(max_smoothing_px)
        };
        let peak = smoothed_peak(&extent, map, sigma).max(min_fraction * map[seed]);
        let level = (0.5 * peak).max(0.5 * t);
        if level >= map[seed] {
            break;
        }
        extent = extent_at(seed, level, map, mask, reach);
    }
    extent
}

/// The top-left and bottom-right pixels (inclusive) of the box around `pixels`; `None` when
/// there are none.
fn bounding_box(pixels: impl IntoIterator<Item = Pixel>) -> Option<(Pixel, Pixel)> {
    pixels.into_iter().fold(None, |bounds, (y, x)| {
        Some(match bounds {
            None => ((y, x), (y, x)),
            Some(((y0, x0), (y1, x1))) => ((y0.min(y), x0.min(x)), (y1.max(y), x1.max(x))),
        })
    })
}

/// The highest value over `blob` of `map` smoothed with a Gaussian of `sigma_px`, smoothing
/// only a window around the blob.
fn smoothed_peak(blob: &Blob, map: ndarray::ArrayView2<'_, f32>, sigma_px: f32) -> f32 {
    let (h, w) = map.dim();
    let margin = (3.0 * sigma_px).ceil() as usize + 1;
    let Some(((y0, x0), (y1, x1))) = bounding_box(blob.pixels.iter().copied()) else {
        return f32::MIN;
    };
    let (y0, x0) = (y0.saturating_sub(margin), x0.saturating_sub(margin));
    let (y1, x1) = ((y1 + margin + 1).min(h), (x1 + margin + 1).min(w));
    let window = smooth(map.slice(ndarray::s![y0..y1, x0..x1]), sigma_px);
    blob.pixels
        .iter()
        .map(|&(y, x)| window[[y - y0, x - x0]])
        .fold(f32::MIN, f32::max)
}

/// The 8-connected set around `seed` where `response ≥ level` inside the mask, searched
/// within `reach` pixels of the seed (the largest expected finding) so a pathological map
/// cannot flood the image; its pixels in raster order. Empty when the seed itself is below
/// the level.
///
/// A flood fill from the seed: its work follows the extent, not the `(2·reach + 1)²` box,
/// so the reach can be as wide as the widest patch.
fn extent_at(
    (py, px): Pixel,
    level: f32,
    response: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    reach: usize,
) -> Blob {
    if !mask[[py, px]] || response[[py, px]] < level {
        return Blob::default();
    }
    let (h, w) = response.dim();
    let (y0, x0) = (py.saturating_sub(reach), px.saturating_sub(reach));
    let (y1, x1) = ((py + reach + 1).min(h), (px + reach + 1).min(w));
    let mut seen = Array2::from_elem((y1 - y0, x1 - x0), false);
    seen[[py - y0, px - x0]] = true;
    let mut stack = vec![(py, px)];
    let mut pixels = Vec::new();
    while let Some((cy, cx)) = stack.pop() {
        pixels.push((cy, cx));
        for ny in cy.saturating_sub(1).max(y0)..(cy + 2).min(y1) {
            for nx in cx.saturating_sub(1).max(x0)..(cx + 2).min(x1) {
                let fresh = &mut seen[[ny - y0, nx - x0]];
                if !*fresh && mask[[ny, nx]] && response[[ny, nx]] >= level {
                    *fresh = true;
                    stack.push((ny, nx));
                }
            }
        }
    }
    pixels.sort_unstable();
    Blob { pixels }
}

/// Least multiple of the robust σ̂ at which a patch may be detected, however low the
/// mirrored level ([`mirrored_level`]) falls.
///
/// Why 4 and not lower: the independently rendered dark and brown skins need about 4.4 σ̂;
/// on the portraits a floor of 3 let faint melanin patches flicker in and out between
/// re-photographs (pigment-area noise floor 0.0168 before the mottle rules; 0.0282 with a
/// floor of 3 and 0.0235 with 4, both measured before [`patch_extent`]'s bounds; 0.0198 now).
const PATCH_MIN_K: f32 = 4.0;

/// The mirrored level is raised by this factor before it is used as a threshold: the largest
/// of the texture's dark excursions estimates the largest of its bright ones, and a factor
/// keeps the bright ones below the threshold in most photos rather than half of them.
const PATCH_MIRROR_MARGIN: f32 = 1.25;

/// The detection threshold of a mottled patch map (melanin; see [`PatchChannel::mottled`]),
/// given the map's [`robust_stats`] in the region: `median + k·σ̂` as for every map,
/// lowered to the mirrored level × [`PATCH_MIRROR_MARGIN`] where that is lower, but not
/// below `median + PATCH_MIN_K·σ̂` nor below the fixed threshold `t`.
///
/// Why: on darker skin the melanin map's spread is texture, not sensor noise. Skin mottling
/// is a relative variation of the melanin density, so its absolute spread grows with the
/// melanin, while a macule's excess over the surrounding skin does not grow as fast. On an
/// independently rendered ITA −40° skin with a 6% mottle, macules of ΔL* −10 to −14 peaked at
/// only 6–8 σ̂, so `median + 5σ̂` left them half weighted or lost (pigmented area 2 points
/// low). Texture is two-signed and hyperpigmentation one-signed: how far the texture alone
/// reaches is read from its dark side, the excess's mirror image, which no macule feeds.
fn mottled_threshold(
    map: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    (median, sigma): (f32, f32),
    t: f32,
    noise_k: f32,
    min_px: usize,
) -> f32 {
    let k_sigma = match mirrored_level(map, mask, median, min_px) {
        Some(level) => (noise_k * sigma)
            .min(PATCH_MIRROR_MARGIN * level)
            .max(PATCH_MIN_K * sigma),
        None => noise_k * sigma,
    };
    t.max(median + k_sigma)
}

/// The largest depth `d` below `median` such that some 8-connected part of the mask of at
/// least `min_px` pixels lies wholly at `median − d` or below: how far a patch-sized
/// excursion of the map reaches on its negative side. Computed in one pass, adding pixels in
/// order of depth to a union–find forest until one tree holds `min_px` pixels. `None` when
/// no such part exists (a region hardly larger than one patch).
fn mirrored_level(
    map: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    median: f32,
    min_px: usize,
) -> Option<f32> {
    // Work inside the bounding box of the pixels below the median, which is all a region
    // mask of a face photo needs.
    let below = |y: usize, x: usize| mask[[y, x]] && map[[y, x]] < median;
    let ((y0, x0), (y1, x1)) = bounding_box(
        mask.indexed_iter()
            .map(|(p, _)| p)
            .filter(|&(y, x)| below(y, x)),
    )?;
    let (h, w) = (y1 - y0 + 1, x1 - x0 + 1);
    let at = |i: usize| (y0 + i / w, x0 + i % w);
    let mut order: Vec<usize> = (0..h * w)
        .filter(|&i| {
            let (y, x) = at(i);
            below(y, x)
        })
        .collect();
    order.sort_unstable_by(|&a, &b| map[at(a)].total_cmp(&map[at(b)]));
    const NONE: u32 = u32::MAX;
    let mut parent = vec![NONE; h * w];
    let mut size = vec![0u32; h * w];
    fn root(parent: &mut [u32], mut i: usize) -> usize {
        while parent[i] as usize != i {
            let up = parent[i] as usize;
            parent[i] = parent[up];
            i = up;
        }
        i
    }
    let min_px = min_px.max(1) as u32;
    for &i in &order {
        parent[i] = i as u32;
        size[i] = 1;
        let (y, x) = (i / w, i % w);
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                let j = ny * w + nx;
                if parent[j] == NONE {
                    continue;
                }
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    let (big, small) = if size[a] >= size[b] { (a, b) } else { (b, a) };
                    parent[small] = big as u32;
                    size[big] += size[small];
                }
            }
        }
        if size[root(&mut parent, i)] >= min_px {
            return Some(median - map[at(i)]);
        }
    }
    None
}

/// Median and robust standard deviation (1.4826 · median absolute deviation) of a map inside
/// a mask, from a regular subsample of at most ~65k pixels (exact enough for a threshold).
fn robust_stats(map: ndarray::ArrayView2<'_, f32>, mask: &Array2<bool>) -> (f32, f32) {
    // Contiguous maps and masks (all of the model's) are walked as slices: the same row-major
    // order as the element iterators, several times faster over a whole crop.
    fn sample<'a>(pairs: impl Iterator<Item = (&'a f32, &'a bool)>, step: usize) -> Vec<f32> {
        pairs
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
            .step_by(step)
            .collect()
    }
    let n = match mask.as_slice() {
        Some(m) => m.iter().filter(|&&m| m).count(),
        None => mask.iter().filter(|&&m| m).count(),
    };
    let step = (n / 65_536).max(1);
    let mut values = match (map.as_slice(), mask.as_slice()) {
        (Some(v), Some(m)) => sample(v.iter().zip(m), step),
        _ => sample(map.iter().zip(mask.iter()), step),
    };
    median_and_spread(&mut values)
}

/// Median and robust standard deviation (1.4826 · median absolute deviation) of `values`
/// (reordered); `(0, 0)` when empty.
fn median_and_spread(values: &mut [f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mid = values.len() / 2;
    let median = *values.select_nth_unstable_by(mid, f32::total_cmp).1;
    let mut deviations: Vec<f32> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = *deviations.select_nth_unstable_by(mid, f32::total_cmp).1;
    (median, 1.4826 * mad)
}

/// σ of the wide background that patches wider than the model's are measured against, mm
/// ([`wide_excess`]).
///
/// Why: the model's `melanin_excess` subtracts a Gaussian background of σ 3.2 mm (the local
/// background of 5–10 mm that keeps a face's slow tone changes out), and under a patch wider
/// than about 8 mm it rises to the patch's own level, so only a rim of excess is left.
/// [`fill_hollow`] closes that rim into the patch where the rim is whole. On mottled skin it is
/// not: the skin's melanin texture, which grows with its melanin, breaks the rim into pieces
/// below the threshold. The independent renderer's macule probe (`scripts/independent_phantoms.py
/// --probe macules --probe-res 10`) read 16- and 20-mm macules on tan skin at 1.3% and 0% for
/// 12.6%, and 12–20-mm ones on dark skin at 4.3%, 0.5% and 0.07%; our own phantoms with
/// 14–20-mm macules under a melanin mottle of σ 0.1–0.3 read 0% on every tone
/// (`melasma_sized_patches_are_measured_whole`). Melasma, most common on darker skin, is that
/// wide. Against a background of σ 10 mm a 20-mm patch keeps 0.6 of its contrast at its
/// centre, and the region's own threshold ([`mottled_threshold`]) holds the face's wider
/// structure out: on the 13 portraits no pigment area changed.
const WIDE_BACKGROUND_MM: f64 = 10.0;

/// Smoothing of the melanin map for the wide excess, mm: the 1.2-mm smoothing of the finest
/// patches' coarsest step left a 2.5-mm-grained mottle of σ 0.2 high enough to lose one
/// 14-mm macule of four; at 2.4 mm all were found.
const WIDE_SMOOTHING_MM: f64 = 2.4;

/// Least area of a patch's extent found on the wide excess, mm² (a 10-mm disc): smaller
/// patches are the finest pass's, and the wide smoothing makes their extents too wide (4-mm
/// macules read 33 mm² for 12.6). At 50 mm² (an 8-mm disc) the smoothed extent of a 7-mm
/// macule on the independent renderer's clean dark skin passed, and seed 1 at 8 px/mm read
/// 4.96% for 4.46% (4.41% without it).
const WIDE_MIN_AREA_MM2: f64 = 80.0;

/// Least area of a patch's thresholded core on the wide excess, mm² (an 8-mm disc), and of
/// the excursions that set its mirrored threshold ([`mottled_threshold`]): at 80 mm² one
/// 14-mm macule of four under a σ 0.3 mottle was lost (`melasma_sized_patches_are_measured_whole`,
/// seed 12), its core above the threshold being smaller than its extent.
const WIDE_MIN_CORE_MM2: f64 = 50.0;

/// A wide patch is kept only when the patches found on the model's excess hold less than this
/// fraction of it, pixels counted at their patches' area weights: a patch they already measured
/// (the probe's 12-mm macules on very light and tan skin, whose hollow rims were filled) keeps
/// their extent, which the wide smoothing does not blur.
const WIDE_MAX_HELD: f64 = 0.8;

/// A chromophore map's excess over a wide background: `level` smoothed by `smoothing_px`,
/// less its mean over the region's `mask` weighted by a Gaussian of `background_px`
/// (normalized convolution). Both are computed on coarse grids (about a quarter of their σ
/// apart, [`crate::reference::pyramid_sigma`]) and read back bilinearly: the excess
/// only has to find patches 8 mm and wider, and a full-resolution 2.4-mm blur of every region
/// added a quarter to a portrait's analysis time. Public for its benchmark
/// (`cargo bench --bench pipeline -- wide_excess`).
pub fn wide_excess(
    level: ndarray::ArrayView2<'_, f32>,
    mask: &Array2<bool>,
    smoothing_px: f64,
    background_px: f64,
) -> Array2<f32> {
    let smoothed = |f: usize, sigma_px: f64, in_mask: &dyn Fn(Pixel) -> bool| {
        let (h, w) = level.dim();
        let (sh, sw) = (h.div_ceil(f), w.div_ceil(f));
        let mut sum = Array2::<f32>::zeros((sh, sw));
        let mut weight = Array2::<f32>::zeros((sh, sw));
        for (p @ (y, x), &v) in level.indexed_iter() {
            if in_mask(p) {
                sum[[y / f, x / f]] += v;
                weight[[y / f, x / f]] += 1.0;
            }
        }
        let sigma = crate::reference::pyramid_sigma(sigma_px, f) as f32;
        let (sum, weight) = (smooth(sum.view(), sigma), smooth(weight.view(), sigma));
        Array2::from_shape_fn((sh, sw), |q| sum[q] / weight[q].max(1e-6))
    };
    let grid = |sigma_px: f64, spacing: f64| ((sigma_px * spacing).floor() as usize).max(1);
    let (g, f) = (grid(smoothing_px, 0.25), grid(background_px, 0.25));
    let fine = smoothed(g, smoothing_px, &|_| true);
    let background = smoothed(f, background_px, &|p| mask[p]);
    Array2::from_shape_fn(level.dim(), |p| {
        bilinear(&fine, g, p) - bilinear(&background, f, p)
    })
}

/// `small`, a grid whose cells are `f` × `f` pixels, read at pixel `(y, x)` by bilinear
/// interpolation between cell centres (clamped at the edges).
fn bilinear(small: &Array2<f32>, f: usize, (y, x): Pixel) -> f32 {
    let (sh, sw) = small.dim();
    let at = |t: usize, n: usize| {
        let u = ((t as f64 + 0.5) / f as f64 - 0.5).clamp(0.0, (n - 1) as f64);
        let i = (u.floor() as usize).min(n.saturating_sub(2));
        (i, (i + 1).min(n - 1), (u - i as f64) as f32)
    };
    let (i0, i1, a) = at(y, sh);
    let (j0, j1, b) = at(x, sw);
    (1.0 - a) * ((1.0 - b) * small[[i0, j0]] + b * small[[i0, j1]])
        + a * ((1.0 - b) * small[[i1, j0]] + b * small[[i1, j1]])
}

/// `fine` patches (disjoint) with the `wide` ones added: a wide patch and the fine patches it
/// overlaps become one patch, whose weight counts each pixel once, at the larger of its
/// fine and wide patches' weights where it has both and at the wide patch's elsewhere.
fn absorb_wide(fine: Vec<(Blob, f64)>, wide: Vec<(Blob, f64)>) -> Vec<(Blob, f64)> {
    let mut patches = fine;
    for (blob, weight) in wide {
        let mut pixels: std::collections::HashSet<Pixel> = blob.pixels.iter().copied().collect();
        let (overlapping, rest): (Vec<_>, Vec<_>) = patches
            .into_iter()
            .partition(|(b, _)| b.pixels.iter().any(|p| pixels.contains(p)));
        let mut fine_sum = 0.0;
        let mut fine_len = 0usize;
        for (b, w) in overlapping {
            fine_sum += b.len() as f64 * w.max(weight);
            fine_len += b.len();
            pixels.extend(b.pixels);
        }
        let total = pixels.len();
        let merged_weight = (fine_sum + (total - fine_len) as f64 * weight) / total.max(1) as f64;
        let mut pixels: Vec<Pixel> = pixels.into_iter().collect();
        pixels.sort_unstable();
        patches = rest;
        patches.push((Blob { pixels }, merged_weight));
    }
    patches
}

/// Half-max growth can make two detections of one macule reach the same pixels; keep each
/// pixel once by merging blobs that share any.
fn merge_overlapping(blobs: Vec<(Blob, f64)>) -> Vec<(Blob, f64)> {
    let mut merged: Vec<(Blob, f64)> = Vec::with_capacity(blobs.len());
    for (blob, weight) in blobs {
        let set: std::collections::HashSet<(usize, usize)> = blob.pixels.iter().copied().collect();
        match merged
            .iter_mut()
            .find(|(m, _)| m.pixels.iter().any(|p| set.contains(p)))
        {
            Some((m, w)) => {
                let existing: std::collections::HashSet<(usize, usize)> =
                    m.pixels.iter().copied().collect();
                m.pixels
                    .extend(blob.pixels.into_iter().filter(|p| !existing.contains(p)));
                *w = w.max(weight);
            }
            None => merged.push((blob, weight)),
        }
    }
    merged
}

/// Gaussian smoothing of one map (imageproc's separable kernel, edges clamped).
pub(crate) fn smooth(map: ndarray::ArrayView2<'_, f32>, sigma_px: f32) -> Array2<f32> {
    let (h, w) = map.dim();
    if sigma_px <= 0.0 {
        return map.to_owned();
    }
    let img =
        image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_fn(w as u32, h as u32, |x, y| {
            image::Luma([map[[y as usize, x as usize]]])
        });
    let blurred = imageproc::filter::gaussian_blur_f32(&img, sigma_px);
    Array2::from_shape_vec((h, w), blurred.into_raw()).expect("same size")
}

/// Margin around each finding that the tone leaves out, mm: a macule's or erythema patch's
/// edge beyond its half-maximum extent still carries part of its colour.
const TONE_MARGIN_MM: f64 = 0.5;

/// Least fraction of a region that must remain once findings are left out for the tone to be
/// measured on it; below, the whole region is used (skin that is mostly lesion has no other
/// colour to report).
const TONE_MIN_UNAFFECTED: f64 = 0.25;

/// The region's constitutive tone: CIELAB of the mean linear colour of its skin outside
/// `findings` (dilated by [`TONE_MARGIN_MM`]), averaged in linear light as a
/// spectrophotometer's aperture would. `mask` and `findings` are a region window's, whose
/// `(0, 0)` is working pixel `(oy, ox)` of the model input.
///
/// Why: ITA° classifies the skin's own colour (Chardon et al. measure it on unexposed,
/// unaffected skin). Averaged over everything, a cheek with 12% of its area in macules read
/// 3.4° darker than its skin on an independent phantom renderer, and every phantom with
/// features read 0.5–1.5° low; pigment and redness already have their own metrics.
fn region_tone(
    maps: &SkinMaps,
    mask: &Array2<bool>,
    (oy, ox): Pixel,
    findings: &Array2<bool>,
    px_per_mm: f64,
) -> Option<Tone> {
    let excluded = dilate(findings, (TONE_MARGIN_MM * px_per_mm).round() as usize);
    // Sums over the whole region and over its unaffected skin, in one pass.
    let (mut all, mut skin) = (([0f64; 3], 0u64), ([0f64; 3], 0u64));
    for ((y, x), &inside) in mask.indexed_iter() {
        if inside {
            let p = maps
                .srgb
                .get_pixel((x + ox) as u32, (y + oy) as u32)
                .0
                .map(srgb_to_linear);
            let add = |(sum, n): &mut ([f64; 3], u64)| {
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                *n += 1;
            };
            add(&mut all);
            if !excluded[[y, x]] {
                add(&mut skin);
            }
        }
    }
    let (sum, n) = if skin.1 as f64 >= TONE_MIN_UNAFFECTED * all.1 as f64 && skin.1 > 0 {
        skin
    } else {
        all
    };
    (n > 0).then(|| tone_from_lab(linear_srgb_to_lab(sum.map(|s| s / n as f64))))
}

/// `mask` dilated by a square of half-side `r` pixels (separable running maximum).
///
/// Each pass keeps, per line, the index of the last set pixel seen, so a pixel costs O(1)
/// whatever `r`: a pixel is set when a set pixel lies within `r` before or after it.
fn dilate(mask: &Array2<bool>, r: usize) -> Array2<bool> {
    if r == 0 {
        return mask.clone();
    }
    let mut rows = Array2::from_elem(mask.dim(), false);
    for (src, dst) in mask.rows().into_iter().zip(rows.rows_mut()) {
        dilate_line(src, dst, r);
    }
    let mut out = Array2::from_elem(mask.dim(), false);
    for (src, dst) in rows.columns().into_iter().zip(out.columns_mut()) {
        dilate_line(src, dst, r);
    }
    out
}

/// One line of [`dilate`]: `dst[i]` is set when any `src[j]` with `|i − j| ≤ r` is.
fn dilate_line(
    src: ndarray::ArrayView1<'_, bool>,
    mut dst: ndarray::ArrayViewMut1<'_, bool>,
    r: usize,
) {
    let n = src.len();
    // Forward: the nearest set pixel at or before i; backward: at or after i.
    let mut last: Option<usize> = None;
    for i in 0..n {
        if src[i] {
            last = Some(i);
        }
        dst[i] = last.is_some_and(|j| i - j <= r);
    }
    let mut next: Option<usize> = None;
    for i in (0..n).rev() {
        if src[i] {
            next = Some(i);
        }
        dst[i] |= next.is_some_and(|j| j - i <= r);
    }
}

/// Converts a mean *linear* sRGB color to CIELAB under D65 (IEC 61966-2-1 matrix, CIE 15:2004).
pub fn linear_srgb_to_lab(rgb: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = rgb;
    let x = 0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b;
    let y = 0.212_672_9 * r + 0.715_152_2 * g + 0.072_175_0 * b;
    let z = 0.019_333_9 * r + 0.119_192_0 * g + 0.950_304_1 * b;
    let f = |t: f64| {
        const D: f64 = 6.0 / 29.0;
        if t > D * D * D {
            t.cbrt()
        } else {
            t / (3.0 * D * D) + 4.0 / 29.0
        }
    };
    let (fx, fy, fz) = (f(x / 0.950_47), f(y), f(z / 1.088_83));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// ITA° and Chardon category from L*, b*.
pub fn tone_from_lab(lab: [f64; 3]) -> Tone {
    let [l, a, b] = lab;
    // atan((L−50)/b) is the published formula; b* ≤ 0 does not occur on skin but must not
    // produce NaN, so the quadrant-aware form is used (identical for b* > 0).
    let ita_deg = (l - 50.0).atan2(b).to_degrees();
    let category = match ita_deg {
        v if v > 55.0 => "very_light",
        v if v > 41.0 => "light",
        v if v > 28.0 => "intermediate",
        v if v > 10.0 => "tan",
        v if v > -30.0 => "brown",
        _ => "dark",
    };
    Tone {
        ita_deg,
        category: category.into(),
        l,
        a,
        b,
    }
}

/// `pixels` and every mask pixel within `radius` of one of them, in raster order.
fn grow(pixels: &[Pixel], radius: usize, mask: &Array2<bool>) -> Vec<Pixel> {
    if radius == 0 {
        return pixels.to_vec();
    }
    let Some(((y0, x0), (y1, x1))) = bounding_box(pixels.iter().copied()) else {
        return Vec::new();
    };
    let (h, w) = mask.dim();
    let (y0, x0) = (y0.saturating_sub(radius), x0.saturating_sub(radius));
    let (y1, x1) = ((y1 + radius).min(h - 1), (x1 + radius).min(w - 1));
    let mut grown = Array2::from_elem((y1 - y0 + 1, x1 - x0 + 1), false);
    let r = radius as isize;
    for &(py, px) in pixels {
        for dy in -r..=r {
            for dx in -r..=r {
                let (y, x) = (py as isize + dy, px as isize + dx);
                let inside = (y0 as isize..=y1 as isize).contains(&y)
                    && (x0 as isize..=x1 as isize).contains(&x);
                if dy * dy + dx * dx <= r * r && inside && mask[[y as usize, x as usize]] {
                    grown[[y as usize - y0, x as usize - x0]] = true;
                }
            }
        }
    }
    grown
        .indexed_iter()
        .filter(|(_, g)| **g)
        .map(|((y, x), _)| (y + y0, x + x0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_adds_a_disk_around_each_pixel_inside_the_mask() {
        let mut mask = Array2::from_elem((9, 9), true);
        mask[[4, 6]] = false;
        let grown = grow(&[(4, 4)], 2, &mask);
        // A radius-2 disk has 13 pixels; one of them is outside the mask.
        assert_eq!(grown.len(), 12);
        assert!(grown.contains(&(2, 4)) && grown.contains(&(4, 2)) && grown.contains(&(5, 5)));
        assert!(!grown.contains(&(4, 6)) && !grown.contains(&(2, 2)));
        assert!(grown.windows(2).all(|w| w[0] < w[1]), "raster order");
        // Clipped at the map's edge, and radius 0 keeps the pixels.
        assert_eq!(grow(&[(0, 0)], 1, &mask).len(), 3);
        assert_eq!(grow(&[(3, 3), (0, 8)], 0, &mask), vec![(3, 3), (0, 8)]);
    }

    #[test]
    fn components_are_eight_connected() {
        let mut b = Array2::from_elem((5, 6), false);
        for (y, x) in [(0, 0), (1, 1), (2, 2), (0, 5), (4, 0), (4, 1)] {
            b[[y, x]] = true;
        }
        let blobs = components(&b);
        let sizes: Vec<usize> = blobs.iter().map(Blob::len).collect();
        assert_eq!(sizes, vec![3, 1, 2]);
    }

    /// A reproducible pseudo-random mask (xorshift), set with probability `density`.
    fn scattered_mask((h, w): (usize, usize), density: f64, seed: u64) -> Array2<bool> {
        let mut state = seed.max(1);
        Array2::from_shape_fn((h, w), |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f64 / 10_000.0 < density
        })
    }

    /// Reproducible standard normal samples (xorshift + Box–Muller).
    fn gaussian_field((h, w): (usize, usize), seed: u64) -> Array2<f32> {
        let mut state = seed.max(1);
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        Array2::from_shape_fn((h, w), |_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
    }

    /// A band of texture (0.002) and noise (0.01) whose central ninth is 1.7 times as noisy,
    /// as a macule reflecting 60% of the light is; the noise map says so.
    fn band_with_a_noisier_patch() -> (Array2<f32>, Array2<f32>, Array2<bool>) {
        let (h, w) = (300, 300);
        let inside = Array2::from_shape_fn((h, w), |(y, x)| {
            (100..200).contains(&y) && (100..200).contains(&x)
        });
        let noise = inside.mapv(|i| if i { 0.017f32 } else { 0.01 });
        let (texture, sensor) = (gaussian_field((h, w), 3), gaussian_field((h, w), 5));
        let band = 0.002 * &texture + &(&noise * &sensor);
        (band, noise, inside)
    }

    /// The fraction of the patch's pixels and of the skin's (farther than `clear` pixels
    /// from the patch) above `t`.
    fn false_alarm_rates(
        map: &Array2<f32>,
        inside: &Array2<bool>,
        t: f32,
        clear: usize,
    ) -> (f64, f64) {
        let near = dilate(inside, clear);
        let count = |want: &dyn Fn((usize, usize)) -> bool| {
            let (hits, n) = map
                .indexed_iter()
                .filter(|(p, _)| want(*p))
                .fold((0, 0), |(h, n), (_, v)| (h + usize::from(*v > t), n + 1));
            hits as f64 / n as f64
        };
        (count(&|p| inside[p]), count(&|p| !near[p]))
    }

    /// Pixels per mm the noise-scaling tests' maps are drawn at.
    const TEST_PX_PER_MM: f64 = 10.0;

    /// [`band_with_a_noisier_patch`], its copy scaled by [`noise_scaled`] with the noise map
    /// times `noise_factor`, the patch mask, and the region's 3 σ threshold.
    fn scaled_noisier_patch(noise_factor: f32) -> (Array2<f32>, Array2<f32>, Array2<bool>, f32) {
        let (band, noise, inside) = band_with_a_noisier_patch();
        let mask = Array2::from_elem(band.dim(), true);
        let (median, sigma) = robust_stats(band.view(), &mask);
        let scaled = noise_scaled(
            band.view(),
            (median, sigma),
            (&noise * noise_factor).view(),
            &mask,
            TEST_PX_PER_MM,
        );
        (band, scaled, inside, median + 3.0 * sigma)
    }

    #[test]
    fn a_noisier_patch_is_held_to_the_regions_false_alarm_rate() {
        let (band, scaled, inside, t) = scaled_noisier_patch(1.0);
        // One threshold: the patch's noise crosses it 20 times as often as the skin's.
        let (patch, skin) = false_alarm_rates(&band, &inside, t, 0);
        assert!(patch > 10.0 * skin, "{patch} vs {skin}");
        // Scaled to the noise, about as often (10 000 patch pixels: ±30% is 2σ of the count).
        let (patch, skin) = false_alarm_rates(&scaled, &inside, t, 0);
        assert!(
            patch < 1.6 * skin && patch > 0.4 * skin,
            "{patch} vs {skin}"
        );
        // Where the noise is the region's typical, beyond the smoothing of the noise map,
        // nothing is scaled (to float rounding).
        let clear = (3.0 * NOISE_BIN_SMOOTHING_MM * TEST_PX_PER_MM).ceil() as usize;
        let near = dilate(&inside, clear);
        for ((v, s), n) in band.iter().zip(&scaled).zip(&near) {
            if !n {
                assert!((v - s).abs() <= 1e-6 * v.abs().max(1e-3), "{v} -> {s}");
            }
        }
    }

    #[test]
    fn noise_the_photos_pixels_hide_is_measured_in_the_band() {
        // The same band, but the noise map is a tenth of the truth (JPEG smooths away the
        // pixel-to-pixel noise the prediction is read from): it still says which pixels are
        // noisier, and the band itself says by how much.
        let (band, scaled, inside, t) = scaled_noisier_patch(0.1);
        let (patch, skin) = false_alarm_rates(&scaled, &inside, t, 15);
        assert!(
            patch < 1.6 * skin && patch > 0.4 * skin,
            "{patch} vs {skin}"
        );
        // (The prediction alone reads the region's spread as texture, ν = 0.001 for σ ≈ 0.011,
        // and moves the patch by 1%.) The band measures the patch 1.7 times as noisy as the
        // typical pixels.
        let ratio = inside.mapv(|i| if i { 1.7f32 } else { 1.0 });
        let mask = Array2::from_elem(band.dim(), true);
        let factors = spread_by_noise_ratio(band.view(), &ratio, &mask, 500);
        assert_eq!(factors[0], 1.0);
        assert!((1.55..1.75).contains(&factors[7]), "{factors:?}");
    }

    #[test]
    fn a_band_without_noise_is_left_as_it_is() {
        let (_, noise, _) = band_with_a_noisier_patch();
        // Texture alone, on a photo whose noise is a thousandth of it: no bin of predicted
        // noise measures more than the region's spread beyond its sampling error.
        let band = 0.002 * gaussian_field(noise.dim(), 3);
        let mask = Array2::from_elem(band.dim(), true);
        let stats = robust_stats(band.view(), &mask);
        let clean = noise_scaled(
            band.view(),
            stats,
            (&noise * 1e-4).view(),
            &mask,
            TEST_PX_PER_MM,
        );
        let moved = band
            .iter()
            .zip(&clean)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved < 1e-6, "{moved}");
        assert_eq!(
            noise_scaled(
                band.view(),
                stats,
                (&noise * 0.0).view(),
                &mask,
                TEST_PX_PER_MM
            ),
            band
        );
    }

    #[test]
    fn a_region_window_is_its_box_plus_the_margin_clipped_to_the_maps() {
        let mut mask = Array2::from_elem((40, 60), false);
        mask[[10, 20]] = true;
        mask[[15, 57]] = true;
        let w = Window::around(&mask, 5).unwrap();
        assert_eq!((w.y0, w.x0, w.y1, w.x1), (5, 15, 21, 60));
        assert_eq!(w.origin(), (5, 15));
        // Cut and embedded back, a mask inside the window is unchanged.
        let local = w.cut(mask.view()).to_owned();
        assert_eq!(local.dim(), (16, 45));
        assert!(local[[10 - 5, 20 - 15]] && local[[15 - 5, 57 - 15]]);
        assert_eq!(w.embed(local, mask.dim()), mask);
        assert!(Window::around(&Array2::from_elem((4, 4), false), 5).is_none());
    }

    #[test]
    fn dilation_matches_the_brute_force_square_maximum() {
        for (seed, density) in [(1, 0.002), (2, 0.02), (3, 0.3)] {
            let mask = scattered_mask((37, 53), density, seed);
            for r in [0, 1, 2, 5, 40, 60] {
                let (h, w) = mask.dim();
                let brute = Array2::from_shape_fn((h, w), |(y, x)| {
                    (y.saturating_sub(r)..(y + r + 1).min(h)).any(|ny| {
                        (x.saturating_sub(r)..(x + r + 1).min(w)).any(|nx| mask[[ny, nx]])
                    })
                });
                assert_eq!(dilate(&mask, r), brute, "seed {seed}, r {r}");
            }
        }
    }

    #[test]
    fn robust_stats_agree_on_contiguous_and_strided_maps() {
        // 140 000 masked pixels: more than 65 536, so every second one is sampled and the
        // order of the walk matters.
        let (h, w) = (400, 500);
        let map = Array2::from_shape_fn((h, w), |(y, x)| ((y * 31 + x * 17) % 97) as f32 * 0.01);
        let mask = scattered_mask((h, w), 0.7, 9);
        // The same logical arrays in column-major memory: no slices, the generic path.
        use ndarray::ShapeBuilder;
        let strided_map = Array2::from_shape_fn((h, w).f(), |p| map[p]);
        let strided_mask = Array2::from_shape_fn((h, w).f(), |p| mask[p]);
        assert!(strided_map.as_slice().is_none() && strided_mask.as_slice().is_none());
        let (median, sigma) = robust_stats(map.view(), &mask);
        assert_eq!(
            (median, sigma),
            robust_stats(strided_map.view(), &strided_mask)
        );
        // And they are the median and scaled MAD of every second masked value, row by row.
        let mut values: Vec<f32> = map
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
            .step_by(2)
            .collect();
        values.sort_by(f32::total_cmp);
        let mid = values.len() / 2;
        assert_eq!(median, values[mid]);
        let mut deviations: Vec<f32> = values.iter().map(|v| (v - median).abs()).collect();
        deviations.sort_by(f32::total_cmp);
        assert_eq!(sigma, 1.4826 * deviations[mid]);
    }

    #[test]
    fn mirrored_level_is_the_depth_of_the_deepest_patch_sized_dip() {
        // A 5×5 dip 0.3 deep holding a 2×2 core 0.8 deep, on a flat map at 0.
        let mut map = Array2::<f32>::zeros((20, 20));
        map.slice_mut(ndarray::s![5..10, 5..10]).fill(-0.3);
        map.slice_mut(ndarray::s![6..8, 6..8]).fill(-0.8);
        map[[15, 15]] = -2.0; // one deep pixel, too small to be a patch
        let mask = Array2::from_elem((20, 20), true);
        assert_eq!(mirrored_level(map.view(), &mask, 0.0, 4), Some(0.8));
        assert_eq!(mirrored_level(map.view(), &mask, 0.0, 5), Some(0.3));
        assert_eq!(mirrored_level(map.view(), &mask, 0.0, 25), Some(0.3));
        assert_eq!(mirrored_level(map.view(), &mask, 0.0, 26), None);
        // A patch cut in two by the mask is two parts, neither large enough.
        let mut cut = mask.clone();
        cut.column_mut(7).fill(false);
        assert_eq!(mirrored_level(map.view(), &cut, 0.0, 25), None);
    }

    #[test]
    fn a_patch_extent_is_not_cut_by_texture_riding_on_it() {
        // A 30-px plateau of 1.0 with three 3×3 bumps of +1.2 texture on it: half of the
        // highest pixel (1.1) cuts the plateau down to one bump; the smoothed peak does not.
        let n = 64;
        let mut map = Array2::<f32>::zeros((n, n));
        let (c, r) = (32.0f32, 15.0f32);
        for ((y, x), v) in map.indexed_iter_mut() {
            let d = ((y as f32 - c).powi(2) + (x as f32 - c).powi(2)).sqrt();
            *v = 1.0 / (1.0 + ((d - r) / 1.0).exp());
        }
        for (y, x) in [(25, 25), (25, 38), (38, 30)] {
            map.slice_mut(ndarray::s![y - 1..y + 2, x - 1..x + 2])
                .mapv_inplace(|v| v + 1.2);
        }
        let mask = Array2::from_elem((n, n), true);
        let seed = Blob {
            pixels: vec![(25, 25)],
        };
        let truth = std::f32::consts::PI * r * r;
        let plain = half_max_extent(&seed, map.view(), &mask, n).len() as f32;
        let patch = patch_extent(
            &seed,
            map.view(),
            &mask,
            n,
            12.0,
            0.5,
            MACULE_PEAK_MIN_FRACTION,
        )
        .len() as f32;
        assert!(plain < 0.5 * truth, "plain half-max {plain} of {truth}");
        assert!(
            (patch / truth - 1.0).abs() < 0.1,
            "patch extent {patch} of {truth}"
        );
    }

    /// An erythema-like dome, exp(−ln2·ρ⁴) of radius `r` px and height `peak`, centred on an
    /// `n`×`n` map: the phantoms' profile, at half its peak exactly at ρ = 1.
    fn dome(n: usize, r: f32, peak: f32) -> Array2<f32> {
        let c = n as f32 / 2.0;
        Array2::from_shape_fn((n, n), |(y, x)| {
            let rho2 = ((y as f32 - c).powi(2) + (x as f32 - c).powi(2)) / (r * r);
            peak * (-std::f32::consts::LN_2 * rho2 * rho2).exp()
        })
    }

    #[test]
    fn an_erythema_extent_holds_when_its_top_is_flattened() {
        // JPEG's coarse chroma low-passes a patch's hemoglobin: its top falls and its flanks
        // rise. A 6-px Gaussian blur of a 20-px dome stands in for it (its top falls 2.4%).
        // Half of the highest pixel moves the extent by 5.7%; the smoothed peak by 0.6%.
        let (n, r) = (96, 20.0);
        let clean = dome(n, r, 0.3);
        let flattened = smooth(clean.view(), 6.0);
        let mask = Array2::from_elem((n, n), true);
        let c = n / 2;
        let seed = Blob {
            pixels: vec![(c, c)],
        };
        let area = |map: &Array2<f32>, smoothed: bool| {
            let b = if smoothed {
                patch_extent(
                    &seed,
                    map.view(),
                    &mask,
                    n,
                    12.0,
                    0.05,
                    ERYTHEMA_PEAK_MIN_FRACTION,
                )
            } else {
                half_max_extent(&seed, map.view(), &mask, n)
            };
            b.len() as f32
        };
        let plain = area(&flattened, false) / area(&clean, false) - 1.0;
        let patch = area(&flattened, true) / area(&clean, true) - 1.0;
        assert!(
            plain.abs() > 0.04,
            "the blur should move the plain extent: {plain:+.3}"
        );
        assert!(patch.abs() < 0.02, "smoothed-peak extent moved {patch:+.3}");
        // The cost (see ERYTHEMA_PEAK_MIN_FRACTION): the clean dome's smoothed peak falls to
        // the bound, and its extent reads 14% wide.
        let wide = area(&clean, true) / (std::f32::consts::PI * r * r);
        assert!(
            (1.10..1.18).contains(&wide),
            "clean dome read {wide:.3} of its area"
        );
    }

    #[test]
    fn a_speck_on_faint_redness_is_measured_as_the_speck() {
        // A 3-px speck of 1.0 on a 20-px pedestal of 0.35 (a red speck on faint broad
        // redness). A bound of half the highest pixel lets the smoothed peak settle on the
        // pedestal; the erythema bound keeps the level above it.
        let n = 96;
        let c = (n / 2) as f32;
        let map = Array2::from_shape_fn((n, n), |(y, x)| {
            let d = ((y as f32 - c).powi(2) + (x as f32 - c).powi(2)).sqrt();
            if d <= 3.0 {
                1.0
            } else if d <= 20.0 {
                0.35
            } else {
                0.0
            }
        });
        let mask = Array2::from_elem((n, n), true);
        let seed = Blob {
            pixels: vec![(n / 2, n / 2)],
        };
        let extent = |min_fraction| {
            patch_extent(&seed, map.view(), &mask, n, 12.0, 0.05, min_fraction).len()
        };
        let speck = half_max_extent(&seed, map.view(), &mask, n).len();
        let pedestal = std::f32::consts::PI * 20.0 * 20.0;
        assert_eq!(extent(ERYTHEMA_PEAK_MIN_FRACTION), speck);
        assert!(extent(MACULE_PEAK_MIN_FRACTION) as f32 > 0.9 * pedestal);
    }

    #[test]
    fn an_extent_is_the_thresholded_component_around_its_seed() {
        // Against the definition: the 8-connected component of {mask ∧ response ≥ level}
        // within the reach box that holds the seed.
        for seed in 1..=12u64 {
            let (h, w) = (37, 53);
            let noise = scattered_mask((h, w), 0.5, seed);
            let response = Array2::from_shape_fn((h, w), |(y, x)| {
                f32::from(u8::from(noise[[y, x]])) + 0.3 * ((y * 7 + x * 3) % 5) as f32
            });
            let mask = scattered_mask((h, w), 0.9, seed + 100);
            let (level, reach) = (0.9, 5 + seed as usize);
            let (py, px) = ((seed as usize * 11) % h, (seed as usize * 17) % w);
            let (y0, x0) = (py.saturating_sub(reach), px.saturating_sub(reach));
            let (y1, x1) = ((py + reach + 1).min(h), (px + reach + 1).min(w));
            let inside = Array2::from_shape_fn((y1 - y0, x1 - x0), |(y, x)| {
                mask[[y + y0, x + x0]] && response[[y + y0, x + x0]] >= level
            });
            let mut expected: Vec<Pixel> = components(&inside)
                .into_iter()
                .find(|b| b.pixels.contains(&(py - y0, px - x0)))
                .map(|b| b.pixels.iter().map(|&(y, x)| (y + y0, x + x0)).collect())
                .unwrap_or_default();
            expected.sort_unstable();
            let got = extent_at((py, px), level, response.view(), &mask, reach);
            assert_eq!(got.pixels, expected, "seed {seed}");
        }
    }

    /// The pixels of `(h, w)` whose distance from `(c, c)` lies in `[r0, r1]`.
    fn annulus(dim: (usize, usize), c: f64, r0: f64, r1: f64) -> Blob {
        let pixels = (0..dim.0)
            .flat_map(|y| (0..dim.1).map(move |x| (y, x)))
            .filter(|&(y, x)| {
                let r = ((y as f64 - c).powi(2) + (x as f64 - c).powi(2)).sqrt();
                (r0..=r1).contains(&r)
            })
            .collect();
        Blob { pixels }
    }

    #[test]
    fn a_scar_is_judged_at_a_floor_no_earlier_scar_has() {
        let dim = (40, 80);
        // A scar's floor at x = 20, a pore-deep pit at x = 50 and a texture bump at x = 65.
        let pits = [(20.0, 0.3_f32, 3.0), (50.0, 0.1, 1.0), (65.0, 0.02, 1.0)];
        let response = Array2::from_shape_fn(dim, |(y, x)| {
            pits.iter()
                .map(|&(c, depth, sigma)| {
                    let r2 = (y as f64 - 20.0).powi(2) + (x as f64 - c).powi(2);
                    depth * (-r2 / (2.0 * sigma * sigma)).exp() as f32
                })
                .sum::<f32>()
        });
        let is_floor = |p: Pixel| response[p] > 0.07;
        let (no_dipole, dipole) = (|_: &[Pixel]| false, |_: &[Pixel]| true);
        let columns = |xs: std::ops::Range<usize>| Blob {
            pixels: (0..dim.0)
                .flat_map(|y| xs.clone().map(move |x| (y, x)))
                .collect(),
        };
        let scar = columns(10..30);
        // A pore's extent over the scar is judged at the pore, not at the counted floor.
        let pore = columns(10..58);
        let floors = own_floors(
            &[scar.clone(), pore.clone()],
            response.view(),
            &is_floor,
            &no_dipole,
        );
        assert_eq!(floors, [Some((20, 20)), Some((20, 50))]);
        // Alone, the same extent holds the scar's floor and stands for that scar.
        let floors = own_floors(
            std::slice::from_ref(&pore),
            response.view(),
            &is_floor,
            &no_dipole,
        );
        assert_eq!(floors, [Some((20, 20))]);
        // An extent cut off one pixel from the scar's floor has its darkest pixel on the
        // floor's flank: that climbs to the counted floor, so it too is judged at the pore.
        let beside = [columns(10..21), columns(21..58)];
        assert_eq!(
            own_floors(&beside, response.view(), &is_floor, &no_dipole),
            [Some((20, 20)), Some((20, 50))]
        );
        // A skirt whose own part holds only a texture bump is no scar, unless it holds a
        // relief dipole (then its shadowed wall, the deepest local maximum, is its floor).
        let mut skirt = columns(10..30);
        skirt.pixels.extend(columns(60..80).pixels);
        let both = [scar, skirt];
        assert_eq!(
            own_floors(&both, response.view(), &is_floor, &no_dipole),
            [Some((20, 20)), None]
        );
        assert_eq!(
            own_floors(&both, response.view(), &is_floor, &dipole),
            [Some((20, 20)), Some((20, 65))]
        );
    }

    #[test]
    fn a_hollow_centre_at_the_rims_level_is_filled_and_enclosed_skin_is_not() {
        let dim = (81, 81);
        let rim = annulus(dim, 40.0, 14.0, 20.0);
        let disc = annulus(dim, 40.0, 0.0, 20.0);
        let mask = Array2::from_elem(dim, true);
        // A wide macule: level 1 over the whole disc, skin at 0; its extent is the rim.
        let macule = paint(std::slice::from_ref(&disc), dim).mapv(|m| f32::from(u8::from(m)));
        let (filled, contrast) = fill_hollow(rim.clone(), macule.view(), &mask, 10);
        assert_eq!(filled.len(), disc.len());
        let contrast = contrast.expect("a hole was filled");
        assert!((contrast - 1.0).abs() < 1e-4, "{contrast}");
        // An annular lesion: the skin it encloses stays out.
        let ring = paint(std::slice::from_ref(&rim), dim).mapv(|m| f32::from(u8::from(m)));
        let (kept, contrast) = fill_hollow(rim.clone(), ring.view(), &mask, 10);
        assert_eq!((kept.len(), contrast), (rim.len(), None));
        // A hole that reaches outside the region (an eye in the rim) stays open.
        let mut holed = mask.clone();
        holed[[40, 40]] = false;
        let (kept, _) = fill_hollow(rim.clone(), macule.view(), &holed, 10);
        assert_eq!(kept.len(), rim.len());
    }

    #[test]
    fn compactness_tells_a_disc_from_an_ellipse_and_a_band() {
        let disc = annulus((81, 81), 40.0, 0.0, 30.0);
        assert!(compactness(&disc) > 0.93, "{}", compactness(&disc));
        let ellipse = Blob {
            pixels: (0..41)
                .flat_map(|y| (0..81).map(move |x| (y, x)))
                .filter(|&(y, x)| {
                    ((y as f64 - 20.0) / 20.0).powi(2) + ((x as f64 - 40.0) / 40.0).powi(2) <= 1.0
                })
                .collect(),
        };
        let c = compactness(&ellipse);
        assert!((0.45..0.52).contains(&c), "{c}");
        let band = Blob {
            pixels: (0..5).flat_map(|y| (0..100).map(move |x| (y, x))).collect(),
        };
        assert!(compactness(&band) < 0.07, "{}", compactness(&band));
    }

    #[test]
    fn a_wide_patch_grows_to_its_edge_on_the_chromophore_map() {
        // A disc of radius 25 px with a soft edge; its extent was read 5 px inside the edge.
        let dim = (101, 101);
        let level = Array2::from_shape_fn(dim, |(y, x)| {
            let r = ((y as f32 - 50.0).powi(2) + (x as f32 - 50.0).powi(2)).sqrt();
            0.4 / (1.0 + ((r - 25.0) / 1.5).exp())
        });
        let mask = Array2::from_elem(dim, true);
        let inner = annulus(dim, 50.0, 0.0, 20.0);
        let grown = wide_edge(inner.clone(), level.view(), &mask, 10, 3.0);
        let truth = annulus(dim, 50.0, 0.0, 25.0).len() as f64;
        let error = grown.len() as f64 / truth - 1.0;
        assert!(error.abs() < 0.05, "{} px for {truth}", grown.len());
        assert!(
            inner
                .pixels
                .iter()
                .all(|p| grown.pixels.binary_search(p).is_ok())
        );
    }

    #[test]
    fn half_max_extent_does_not_grow_with_contrast() {
        // A blurred disk of radius 3 at two contrasts: the half-max extent is the same.
        let make = |amp: f32| {
            Array2::from_shape_fn((41, 41), |(y, x)| {
                let r =
                    (((y as f32 - 20.0).powi(2) + (x as f32 - 20.0).powi(2)).sqrt() - 3.0) / 0.8;
                amp / (1.0 + r.exp())
            })
        };
        let mask = Array2::from_elem((41, 41), true);
        let seed = Blob {
            pixels: vec![(20, 20)],
        };
        let a = half_max_extent(&seed, make(0.05).view(), &mask, 16).len();
        let b = half_max_extent(&seed, make(0.5).view(), &mask, 16).len();
        assert_eq!(a, b);
        // ≈ π·3² pixels.
        assert!((a as f64 - 28.3).abs() < 6.0, "{a}");
    }

    #[test]
    fn severities_are_monotone_and_bounded() {
        let xs = [0.0, 0.001, 0.01, 0.05, 0.2, 1.0];
        for f in [severity::pores, severity::scars] {
            let ys: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
            assert_eq!(ys[0], 0.0);
            assert!(
                ys.windows(2).all(|w| w[1] > w[0]) && ys[5] <= 100.0,
                "{ys:?}"
            );
        }
        assert!(severity::patches(0.1, 0.2) > severity::patches(0.1, 0.1));
        assert!(severity::patches(0.2, 0.1) > severity::patches(0.1, 0.1));
    }

    #[test]
    fn lab_of_white_and_mid_gray() {
        let [l, a, b] = linear_srgb_to_lab([1.0, 1.0, 1.0]);
        assert!((l - 100.0).abs() < 1e-3 && a.abs() < 1e-2 && b.abs() < 1e-2);
        // sRGB 119/255 is L* ≈ 50.
        let g = crate::model::srgb_to_linear(119.0 / 255.0) as f64;
        assert!((linear_srgb_to_lab([g, g, g])[0] - 50.0).abs() < 0.3);
    }

    #[test]
    fn ita_formula_and_categories() {
        // L* = 70, b* = 15: atan(20/15) = 53.13° → light.
        let t = tone_from_lab([70.0, 10.0, 15.0]);
        assert!((t.ita_deg - 53.130_1).abs() < 1e-3);
        assert_eq!(t.category, "light");
        assert_eq!(tone_from_lab([80.0, 5.0, 12.0]).category, "very_light");
        assert_eq!(tone_from_lab([30.0, 10.0, 15.0]).category, "dark");
        assert_eq!(tone_from_lab([45.0, 10.0, 20.0]).category, "brown");
    }

    /// A 3 × 3 patch of uniform leak bands (one working pixel per cell) around `(1, 1)`:
    /// shading, red, green and melanin band-passes.
    fn uniform_bands(shading: f32, red: f32, green: f32, melanin: f32) -> LeakBands {
        let cells = |v: f32| Array2::from_elem((3, 3), v);
        LeakBands {
            factor: 1,
            melanin: cells(melanin),
            hemoglobin: cells(0.0),
            shading: cells(shading),
            weighted_relief: None,
            red: cells(red),
            green: cells(green),
            red_green_only: Array2::from_elem((3, 3), None),
            melanin_red_green: Some(MELANIN),
        }
    }

    /// skin-v1's melanin vector on red and green, as [`melanin_red_green`] reads it.
    const MELANIN: [f32; 2] = [0.341595, 0.507213];

    #[test]
    fn the_red_and_green_melanin_vector_is_the_model_manifests() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/skin-v1.json");
        let manifest = crate::model::SkinManifest::load(std::path::Path::new(path)).unwrap();
        let weighting = crate::model::ChromophoreWeighting::from_manifest(&manifest).unwrap();
        let sigma = &manifest.extra["physics"]["sigma_mel_rgb"];
        let vector = melanin_red_green(&weighting);
        for (c, got) in vector.iter().enumerate() {
            let want = sigma[c].as_f64().expect("sigma_mel_rgb holds numbers");
            assert!(
                (f64::from(*got) - want).abs() < 1e-6,
                "channel {c}: {got} vs {want}"
            );
        }
        assert_eq!(vector, MELANIN, "the tests' vector is skin-v1's");
    }

    #[test]
    fn red_and_green_give_the_relief_past_a_melanin_deficit() {
        let [sr, sg] = MELANIN;
        let (relief, melanin) = (0.12, -0.2);
        let (red, green) = (relief + sr * melanin, relief + sg * melanin);
        let found = relief_past_deficit(red, green, melanin, MELANIN).expect("a shared deficit");
        assert!((found - relief).abs() < 1e-5, "{found}");
        // More than half the model's deficit seen by red and green is enough, less is not.
        let most = (relief + sr * 0.6 * melanin, relief + sg * 0.6 * melanin);
        assert!(relief_past_deficit(most.0, most.1, melanin, MELANIN).is_some());
        let little = (relief + sr * 0.4 * melanin, relief + sg * 0.4 * melanin);
        assert_eq!(
            relief_past_deficit(little.0, little.1, melanin, MELANIN),
            None
        );
        // Far more than the model's deficit is not melanin alone (JPEG's chroma error).
        let much = (relief + sr * 1.5 * melanin, relief + sg * 1.5 * melanin);
        assert_eq!(relief_past_deficit(much.0, much.1, melanin, MELANIN), None);
        // A melanin excess is never taken out.
        assert_eq!(relief_past_deficit(sr * 0.3, sg * 0.3, 0.3, MELANIN), None);
    }

    #[test]
    fn relief_on_a_lighter_mottle_is_grey_and_a_blue_only_dip_is_not() {
        let [sr, sg] = MELANIN;
        let grey = |bands: &LeakBands| {
            ChromophoreLeak {
                a: 0.0,
                b: 0.0,
                bands,
                origin: (0, 0),
            }
            .grey((1, 1))
        };
        let shading = 0.12;
        // Relief that red and green share whole.
        assert!(grey(&uniform_bands(shading, shading, shading, 0.0)));
        // The same relief on a lighter patch of mottle (the model reads −0.25 of melanin, red
        // and green −0.15): their mean darkening is under half the shading's, the relief past
        // the deficit is all of it.
        let m = -0.15;
        let (red, green) = (shading + sr * m, shading + sg * m);
        assert!(0.5 * (red + green) < GREY_MIN_FRACTION * shading);
        assert!(grey(&uniform_bands(shading, red, green, -0.25)));
        // A dip in the shading that red and green do not share (blue moved alone) is not
        // relief, whatever melanin deficit the model reads there.
        assert!(!grey(&uniform_bands(shading, 0.01, 0.01, -0.25)));
        // A melanin excess leaking into the shading darkens red 0.67 as much as green.
        assert!(!grey(&uniform_bands(shading, sr * 0.3, sg * 0.3, 0.3)));
    }

    #[test]
    fn where_blue_is_unmeasured_relief_is_read_on_red_and_green_past_their_rounding() {
        let [sr, sg] = MELANIN;
        let quantum = 0.05;
        let grey = |shading: f32, red: f32, green: f32, melanin: f32| {
            let bands = LeakBands {
                red_green_only: Array2::from_elem((3, 3), Some(quantum)),
                ..uniform_bands(shading, red, green, melanin)
            };
            ChromophoreLeak {
                a: 0.0,
                b: 0.0,
                bands: &bands,
                origin: (0, 0),
            }
            .grey((1, 1))
        };
        // Grey relief past two quanta, whatever the shading (blue is no measurement).
        assert!(grey(0.3, 0.15, 0.15, 0.0));
        assert!(grey(-0.1, 0.15, 0.15, 0.0));
        // Grey but within two quanta of red and green's rounding.
        assert!(!grey(0.3, 0.08, 0.08, 0.0));
        // A deep melanin darkening of red and green, which a clipped blue turns into a deep
        // shading floor (the model reads a melanin deficit there): no relief.
        assert!(!grey(0.35, sr * 0.5, sg * 0.5, -0.5));
        // Where blue is measured, the same shading floor with no red and green darkening at
        // this resolution passes as a fine floor (the band is not a darkening here)...
        let measured = |shading, red, green| {
            ChromophoreLeak {
                a: 0.0,
                b: 0.0,
                bands: &uniform_bands(shading, red, green, 0.0),
                origin: (0, 0),
            }
            .grey((1, 1))
        };
        assert!(measured(-0.01, -0.04, -0.06));
        // ...and where it is not, red and green brightening is no relief.
        assert!(!grey(-0.01, -0.04, -0.06, 0.0));
    }

    #[test]
    fn wide_excess_is_measured_against_the_skin_of_the_region_only() {
        let (h, w) = (120, 120);
        let r2 = |(y, x): Pixel| (y as f64 - 60.0).powi(2) + (x as f64 - 60.0).powi(2);
        // Skin at melanin 1 in the region, with a 30-px-wide patch of +1 at its centre;
        // left of column 20 lies something far lighter that is not skin (an eye).
        let mask = Array2::from_shape_fn((h, w), |(_, x)| x >= 20);
        let level = Array2::from_shape_fn((h, w), |p @ (_, x)| {
            if x < 20 {
                -5.0
            } else if r2(p) <= 15.0f64.powi(2) {
                2.0
            } else {
                1.0
            }
        });
        // At 1 px/mm: smoothing 2 px, background σ 10 px.
        let excess = wide_excess(level.view(), &mask, 2.0, 10.0);
        // Against a σ-10 background a 15-px-radius disc keeps about exp(-15²/200) = 0.32 of its
        // contrast at its centre, whatever the skin level.
        let centre = excess[[60, 60]];
        assert!((0.25..0.45).contains(&centre), "centre {centre}");
        // Skin next to the lighter non-skin is not an excess.
        let beside = excess[[100, 25]];
        assert!(beside.abs() < 0.05, "beside the eye {beside}");
    }

    #[test]
    fn a_wide_patch_absorbs_the_fragments_it_overlaps_at_the_larger_weight() {
        let blob = |pixels: Vec<Pixel>| Blob { pixels };
        let row = |x0: usize, x1: usize| (x0..x1).map(|x| (0, x)).collect::<Vec<_>>();
        // A faint fine fragment inside a strong wide patch, and a strong fine patch apart.
        let fine = vec![(blob(row(2, 6)), 0.25), (blob(row(20, 24)), 1.0)];
        let merged = absorb_wide(fine, vec![(blob(row(0, 10)), 1.0)]);
        assert_eq!(merged.len(), 2);
        let (wide, w) = merged.iter().find(|(b, _)| b.len() == 10).unwrap();
        assert!(wide.pixels.contains(&(0, 0)) && wide.pixels.contains(&(0, 9)));
        assert!((w - 1.0).abs() < 1e-12, "weight {w}");
        // A faint wide patch around a strong fragment adds its own pixels at its own weight.
        let merged = absorb_wide(vec![(blob(row(2, 6)), 1.0)], vec![(blob(row(0, 10)), 0.5)]);
        let area: f64 = merged.iter().map(|(b, w)| b.len() as f64 * w).sum();
        assert!((area - (4.0 + 6.0 * 0.5)).abs() < 1e-12, "area {area}");
    }

    /// One candidate holding a strong energy maximum without a floor (a macule's rim) and a
    /// weaker one with a floor (a scar) 3 mm away.
    fn rim_and_scar(darkest_is_relief: bool, weighted_relief: bool) -> Vec<Blob> {
        let (h, w) = (40, 60);
        let bump = |(y, x): Pixel, (cy, cx): (f64, f64), a: f32| {
            let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
            a * (-d2 / 18.0).exp() as f32
        };
        let energy = Array2::from_shape_fn((h, w), |p| {
            0.01 + bump(p, (20.0, 15.0), 1.0) + bump(p, (20.0, 45.0), 0.6)
        });
        let mask = Array2::from_elem((h, w), true);
        let candidate = Blob {
            pixels: mask.indexed_iter().map(|(p, _)| p).collect(),
        };
        let mut taken = Array2::from_elem((h, w), false);
        split_scars(
            &candidate,
            energy.view(),
            &ReliefTests {
                is_floor: &|p| p == (20, 45),
                dipole: &|_| false,
                darkest_is_relief: &|_| darkest_is_relief,
            },
            (&mask, weighted_relief),
            &mut taken,
            10.0,
        )
    }

    #[test]
    fn a_strongest_maximum_without_floor_or_relief_is_not_a_scar() {
        let at = |scars: &[Blob], p: Pixel| scars.iter().any(|s| s.pixels.contains(&p));
        // The rim's darkest point is relief: both are scars.
        let scars = rim_and_scar(true, false);
        assert_eq!(scars.len(), 2);
        assert!(at(&scars, (20, 15)) && at(&scars, (20, 45)));
        // It is not (the chromophore darkens it), or the relief is the noise-weighted one:
        // only the scar with the floor.
        for scars in [rim_and_scar(false, false), rim_and_scar(true, true)] {
            assert_eq!(scars.len(), 1);
            assert!(at(&scars, (20, 45)) && !at(&scars, (20, 15)));
        }
    }
}

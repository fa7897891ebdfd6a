//! Stage 6: per-region metrics from [`crate::model::SkinMaps`] → [`RegionMetrics`].
//!
//! Why: clinicians and trials need a handful of interpretable numbers per region — how many
//! pores and how big, how much skin is hyperpigmented, how many atrophic scars, how red, what
//! constitutive tone — in physical units, so that sessions and subjects can be compared.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::model::{SkinManifest, SkinMaps, srgb_to_linear};
use crate::regions::RegionMask;

/// Constitutive skin tone in CIELAB (D65) and the Individual Typology Angle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperpigmentation {
    /// Number of distinct pigmented macules.
    pub spot_count: u32,
    /// Fraction of the region that is hyperpigmented.
    pub area_fraction: f64,
    /// Mean melanin excess over local background inside the spots (optical density).
    pub mean_contrast: f64,
    /// 0 (none) … 100 (most severe).
    pub severity: f64,
}

/// Atrophic scar measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redness {
    /// Mean hemoglobin optical density component (erythema index, model units).
    pub erythema_index: f64,
    /// Fraction of the region with hemoglobin clearly above its local background.
    pub area_fraction: f64,
    /// 0 (none) … 100 (most severe).
    pub severity: f64,
}

/// All measurements of one region. A metric is absent when it could not be computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Measures one region. Hidden regions get no metrics.
pub fn measure_region(
    maps: &SkinMaps,
    region: &RegionMask,
    _manifest: &SkinManifest,
) -> RegionMetrics {
    if !region.visible {
        return RegionMetrics::default();
    }
    let mask = working_mask(maps, region);
    RegionMetrics {
        tone: region_tone(maps, &mask),
        ..RegionMetrics::default()
    }
}

/// Tone from the mean linear color of the region (averaging in linear light, as a
/// spectrophotometer's aperture would).
fn region_tone(maps: &SkinMaps, mask: &Array2<bool>) -> Option<Tone> {
    let mut sum = [0f64; 3];
    let mut n = 0u64;
    for ((y, x), &inside) in mask.indexed_iter() {
        if inside {
            let p = maps.srgb.get_pixel(x as u32, y as u32).0;
            for c in 0..3 {
                sum[c] += f64::from(srgb_to_linear(p[c]));
            }
            n += 1;
        }
    }
    (n > 0).then(|| tone_from_lab(linear_srgb_to_lab(sum.map(|s| s / n as f64))))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

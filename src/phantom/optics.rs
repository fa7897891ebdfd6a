//! The phantom's camera model: chromophore optical densities to linear sRGB, sRGB encoding,
//! CIELAB and ITA°.
//!
//! Written independently of the analysis code on purpose: the phantom proves the analysis right
//! only if the two do not share a bug. Both follow the same published model:
//!
//! * **Optical densities add** (Beer–Lambert in the modified form used for skin by Tsumura et al.,
//!   "Independent-component analysis of skin color image", JOSA A 16(9), 1999, and "Image-based
//!   skin color and texture analysis/synthesis by extracting hemoglobin and melanin information
//!   in the skin", ACM TOG 22(3), 2003): per camera channel `c`,
//!   `R_c = S · exp(−(OD_base_c + m·σ_mel_c + h·σ_hb_c))`.
//! * **σ_mel** follows melanin's absorption `μa ∝ λ^−3.33` (Jacques, "Optical properties of
//!   biological tissues: a review", Phys. Med. Biol. 58, 2013) and **σ_hb** Prahl's tabulated
//!   oxy-hemoglobin extinction (omlc.org/spectra/hemoglobin, 1999), both integrated over Gaussian
//!   camera bands and scaled to unit norm, so `m` and `h` are optical densities along those
//!   directions.
//! * **sRGB** encoding and the linear-sRGB→XYZ matrix from IEC 61966-2-1:1999; **CIELAB** from
//!   CIE 15:2004 with the D65 white `(0.95047, 1, 1.08883)`; **ITA°** =
//!   `atan((L* − 50)/b*)·180/π` (Chardon, Cretois & Hourseau, Int. J. Cosmet. Sci. 13, 1991)
//!   with the skin categories of Del Bino et al. (Br. J. Dermatol. 155, 2006).

use serde::{Deserialize, Serialize};

/// Melanin's direction in camera optical-density space (R, G, B), unit norm: one unit of
/// melanin density adds this much optical density to each channel.
pub const SIGMA_MELANIN: [f64; 3] = [0.341595, 0.507213, 0.791232];

/// Oxy-hemoglobin's direction in camera optical-density space (R, G, B), unit norm.
pub const SIGMA_HEMOGLOBIN: [f64; 3] = [0.128287, 0.692455, 0.709964];

/// Optical density of everything in skin that is neither melanin nor hemoglobin (R, G, B).
///
/// Lumps the light lost to scattering out of the field, collagen, β-carotene and bilirubin.
/// Chosen so that the `light` preset reflects about (0.56, 0.35, 0.25) in linear sRGB, in the
/// range of measured diffuse reflectance of fair skin at 610/550/460 nm (Zonios et al., "Skin
/// melanin, hemoglobin, and light scattering properties can be quantitatively assessed in vivo
/// using diffuse reflectance spectroscopy", J. Invest. Dermatol. 117, 2001), and so that the
/// brightest preset keeps headroom for shading highlights (`S` > 1 on lit scar walls) below
/// sensor clipping. It is slightly bluer-dense, which gives skin its positive b*.
pub const OD_BASE: [f64; 3] = [0.20, 0.25, 0.30];

/// CIE D65 reference white in XYZ (Y = 1), as the brief of the analysis uses.
pub const D65_WHITE: [f64; 3] = [0.95047, 1.0, 1.08883];

/// Linear sRGB → CIE XYZ (IEC 61966-2-1:1999, §5.2).
const SRGB_TO_XYZ: [[f64; 3]; 3] = [
    [0.4124, 0.3576, 0.1805],
    [0.2126, 0.7152, 0.0722],
    [0.0193, 0.1192, 0.9505],
];

/// The constants of the camera model, copied into every truth document so the numbers a phantom
/// was made with travel with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpticalModel {
    /// [`SIGMA_MELANIN`].
    pub sigma_melanin: [f64; 3],
    /// [`SIGMA_HEMOGLOBIN`].
    pub sigma_hemoglobin: [f64; 3],
    /// [`OD_BASE`].
    pub od_base: [f64; 3],
    /// Formula, for readers of the JSON.
    pub formula: String,
    /// The output color encoding.
    pub encoding: String,
}

impl OpticalModel {
    /// The model this build renders with.
    pub fn current() -> OpticalModel {
        OpticalModel {
            sigma_melanin: SIGMA_MELANIN,
            sigma_hemoglobin: SIGMA_HEMOGLOBIN,
            od_base: OD_BASE,
            formula: "R_c = S * exp(-(od_base_c + m*sigma_melanin_c + h*sigma_hemoglobin_c)), \
                      linear sRGB"
                .into(),
            encoding: "sRGB (IEC 61966-2-1) transfer function, D65".into(),
        }
    }

    /// The model a spec renders with: [`OpticalModel::current`] with the spec's hemoglobin
    /// direction.
    pub fn for_spec(spec: &crate::phantom::PhantomSpec) -> OpticalModel {
        OpticalModel {
            sigma_hemoglobin: spec.hemoglobin_unit(),
            ..OpticalModel::current()
        }
    }
}

/// Linear sRGB reflectance of skin with melanin density `m`, hemoglobin density `h` under
/// shading `s` (1 = flat skin under the reference light).
pub fn skin_reflectance(m: f64, h: f64, s: f64) -> [f64; 3] {
    skin_reflectance_with(SIGMA_HEMOGLOBIN, m, h, s)
}

/// [`skin_reflectance`] with hemoglobin along `sigma_hemoglobin` (unit norm) instead of
/// [`SIGMA_HEMOGLOBIN`].
pub fn skin_reflectance_with(sigma_hemoglobin: [f64; 3], m: f64, h: f64, s: f64) -> [f64; 3] {
    std::array::from_fn(|c| {
        s * (-(OD_BASE[c] + m * SIGMA_MELANIN[c] + h * sigma_hemoglobin[c])).exp()
    })
}

/// The sRGB transfer function (IEC 61966-2-1): linear `[0, 1]` → encoded `[0, 1]`. Values are
/// clamped to `[0, 1]` first, as a camera clips.
pub fn srgb_encode(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.0031308 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// The inverse sRGB transfer function: encoded `[0, 1]` → linear.
pub fn srgb_decode(v: f64) -> f64 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// CIELAB (D65) of a linear sRGB color: `[L*, a*, b*]` (CIE 15:2004).
pub fn linear_srgb_to_lab(rgb: [f64; 3]) -> [f64; 3] {
    let xyz: [f64; 3] = std::array::from_fn(|i| {
        SRGB_TO_XYZ[i][0] * rgb[0] + SRGB_TO_XYZ[i][1] * rgb[1] + SRGB_TO_XYZ[i][2] * rgb[2]
    });
    let f = |t: f64| {
        const D: f64 = 6.0 / 29.0;
        if t > D * D * D {
            t.cbrt()
        } else {
            t / (3.0 * D * D) + 4.0 / 29.0
        }
    };
    let [fx, fy, fz] = std::array::from_fn(|i| f(xyz[i] / D65_WHITE[i]));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Individual Typology Angle in degrees, `atan((L* − 50)/b*)` (Chardon et al. 1991), computed
/// with `atan2` so that it stays defined (and continuous through 90°) when b* ≤ 0.
pub fn ita_deg(l: f64, b: f64) -> f64 {
    (l - 50.0).atan2(b).to_degrees()
}

/// The skin-color category of an ITA° value (Del Bino et al. 2006): `very_light` > 55 ≥
/// `light` > 41 ≥ `intermediate` > 28 ≥ `tan` > 10 ≥ `brown` > −30 ≥ `dark`.
pub fn ita_category(ita: f64) -> &'static str {
    match ita {
        x if x > 55.0 => "very_light",
        x if x > 41.0 => "light",
        x if x > 28.0 => "intermediate",
        x if x > 10.0 => "tan",
        x if x > -30.0 => "brown",
        _ => "dark",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_vectors_are_unit_norm() {
        for s in [SIGMA_MELANIN, SIGMA_HEMOGLOBIN] {
            let n = s.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
    }

    #[test]
    fn srgb_round_trips_and_hits_known_points() {
        for i in 0..=100 {
            let v = f64::from(i) / 100.0;
            assert!((srgb_decode(srgb_encode(v)) - v).abs() < 1e-12);
        }
        // 18% gray encodes to ~0.4614 (118/255).
        assert!((srgb_encode(0.18) - 0.46135).abs() < 1e-4);
    }

    #[test]
    fn lab_of_white_and_a_known_color() {
        let [l, a, b] = linear_srgb_to_lab([1.0, 1.0, 1.0]);
        assert!((l - 100.0).abs() < 1e-3 && a.abs() < 0.05 && b.abs() < 0.05);
        // sRGB (200, 150, 120) → Lab ≈ (66.1, 14.9, 23.1) (D65, IEC matrix).
        let lin = [200.0, 150.0, 120.0].map(|v: f64| srgb_decode(v / 255.0));
        let [l, a, b] = linear_srgb_to_lab(lin);
        assert!((l - 66.1).abs() < 0.1 && (a - 14.85).abs() < 0.1 && (b - 23.12).abs() < 0.1);
        assert_eq!(ita_category(ita_deg(l, b)), "intermediate");
    }
}

//! The ground-truth document of a phantom ([`PhantomTruth`]), written as `NAME.truth.json`.
//!
//! Every area here is counted from the masks (pixels set / all pixels), so a test comparing an
//! analysis's area with the truth compares like with like; nominal sizes (diameters, depths,
//! amplitudes) are the exact drawn parameters. Coordinates are millimetres from the image's
//! top-left corner, x to the right and y downwards; pixel `(i, j)` covers
//! `[i, i+1) × [j, j+1)` / `px_per_mm` mm, so its centre is at `((i + ½), (j + ½))/px_per_mm`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::optics::OpticalModel;
use super::spec::{PhantomSpec, ScarKind, TonePreset};

/// Version of the truth document's layout. Keys are only added within a version.
pub const PHANTOM_SCHEMA_VERSION: u32 = 1;

/// Everything known about a phantom by construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhantomTruth {
    /// [`PHANTOM_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// "dermatrack X.Y.Z phantom", the build that rendered it.
    pub generator: String,
    /// The seed (also in `spec`), repeated for convenience.
    pub seed: u64,
    /// Scale: pixels per millimetre.
    pub px_per_mm: f64,
    /// Image width in pixels.
    pub width_px: u32,
    /// Image height in pixels.
    pub height_px: u32,
    /// Image width in mm (`width_px / px_per_mm`, which may differ from the spec by rounding).
    pub width_mm: f64,
    /// Image height in mm.
    pub height_mm: f64,
    /// The full spec the phantom was rendered from.
    pub spec: PhantomSpec,
    /// The camera model's constants.
    pub model: OpticalModel,
    /// The background color.
    pub base_tone: ToneTruth,
    /// Pores.
    pub pores: PoreTruth,
    /// Pigmented macules.
    pub pigment: PigmentTruth,
    /// Atrophic scars.
    pub scars: ScarTruth,
    /// Erythema patches.
    pub erythema: ErythemaTruth,
    /// What was done to the clean image.
    pub nuisances: NuisanceTruth,
    /// How each mask is defined, keyed by mask name (`pores`, `pigment`, `scars`, `erythema`).
    pub mask_definitions: BTreeMap<String, String>,
}

/// The flat base color: melanin `m0`, hemoglobin `h0`, shading 1, no texture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToneTruth {
    /// The preset, when one was used.
    pub preset: Option<TonePreset>,
    /// Melanin density `m0`.
    pub melanin: f64,
    /// Hemoglobin density `h0`.
    pub hemoglobin: f64,
    /// Linear sRGB reflectance of flat base skin.
    pub linear_rgb: [f64; 3],
    /// The same, sRGB-encoded in `[0, 1]` (what the clean image holds, before 16-bit rounding).
    pub srgb: [f64; 3],
    /// CIE L* (D65).
    #[serde(rename = "L")]
    pub l: f64,
    /// CIE a*.
    pub a: f64,
    /// CIE b*.
    pub b: f64,
    /// ITA° = atan((L* − 50)/b*) in degrees.
    pub ita_deg: f64,
    /// Del Bino category of `ita_deg`.
    pub ita_category: String,
}

/// Pore truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoreTruth {
    /// Number of pores rendered (= requested).
    pub count: u32,
    /// Nominal diameters in mm, in rendering order.
    pub diameters_mm: Vec<f64>,
    /// Mean nominal diameter in mm (0 when there are none).
    pub mean_diameter_mm: f64,
    /// Pore mask pixels / image pixels.
    pub area_fraction: f64,
    /// Pores per cm² of the whole image.
    pub density_per_cm2: f64,
    /// Pixels in the pore mask.
    pub mask_pixels: u64,
    /// Each pore.
    pub items: Vec<PoreItem>,
}

/// One pore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoreItem {
    /// Centre x in mm.
    pub x_mm: f64,
    /// Centre y in mm.
    pub y_mm: f64,
    /// Nominal diameter (full width at half darkening) in mm.
    pub diameter_mm: f64,
    /// Peak fractional darkening `c` of linear reflectance.
    pub contrast: f64,
    /// Peak optical-density contrast `−ln(1 − c)`, equal in R, G and B.
    pub od_contrast: f64,
    /// Pixels of this pore in the mask.
    pub mask_pixels: u64,
}

/// Pigmented-macule truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PigmentTruth {
    /// Number of macules (= requested).
    pub spot_count: u32,
    /// Pigment mask pixels / image pixels.
    pub area_fraction: f64,
    /// Mean over macules of the peak melanin excess (0 when there are none).
    pub mean_melanin_excess: f64,
    /// Mean over macules of the melanin excess averaged inside each mask (peak × 0.8561 for the
    /// sixth-order profile).
    pub mean_melanin_excess_in_mask: f64,
    /// Pixels in the pigment mask.
    pub mask_pixels: u64,
    /// Each macule.
    pub spots: Vec<BlobItem>,
}

/// One macule or erythema patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobItem {
    /// Centre x in mm.
    pub x_mm: f64,
    /// Centre y in mm.
    pub y_mm: f64,
    /// Equivalent-circle diameter of the half-maximum boundary in mm.
    pub diameter_mm: f64,
    /// Peak chromophore excess (melanin for macules, hemoglobin for erythema).
    pub peak_excess: f64,
    /// Excess averaged over the mask region (exact, from the profile).
    pub mean_excess_in_mask: f64,
    /// Mask area in mm² (pixels / px_per_mm²).
    pub mask_area_mm2: f64,
    /// Pixels of this feature in its mask.
    pub mask_pixels: u64,
}

/// Scar truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScarTruth {
    /// Number of scars (= requested, all kinds).
    pub count: u32,
    /// Icepick scars.
    pub icepick: u32,
    /// Boxcar scars.
    pub boxcar: u32,
    /// Rolling scars.
    pub rolling: u32,
    /// Scar mask pixels / image pixels.
    pub area_fraction: f64,
    /// Pixels in the scar mask.
    pub mask_pixels: u64,
    /// Each scar.
    pub items: Vec<ScarItem>,
}

/// One scar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScarItem {
    /// Kind.
    pub kind: ScarKind,
    /// Centre x in mm.
    pub x_mm: f64,
    /// Centre y in mm.
    pub y_mm: f64,
    /// Nominal diameter (where depth = 10% of max) in mm.
    pub diameter_mm: f64,
    /// Maximum depth in mm.
    pub depth_mm: f64,
    /// Mask area in mm².
    pub mask_area_mm2: f64,
    /// Pixels of this scar in the mask.
    pub mask_pixels: u64,
    /// Smallest relief shading `S` (light × occlusion, 1 = flat skin) within the scar's extent.
    pub shading_min: f64,
    /// Largest relief shading `S` within the scar's extent (> 1 on walls facing the light).
    pub shading_max: f64,
    /// Mean relief shading over the scar's mask.
    pub shading_mean_in_mask: f64,
}

/// Erythema truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErythemaTruth {
    /// Number of patches (= requested).
    pub patch_count: u32,
    /// Erythema mask pixels / image pixels.
    pub area_fraction: f64,
    /// Mean over patches of the peak hemoglobin excess (0 when there are none).
    pub mean_hemoglobin_excess: f64,
    /// Mean over patches of the excess averaged inside each mask (peak × 0.8100 for the
    /// fourth-order profile).
    pub mean_hemoglobin_excess_in_mask: f64,
    /// Pixels in the erythema mask.
    pub mask_pixels: u64,
    /// Each patch.
    pub patches: Vec<BlobItem>,
}

/// The nuisances applied to `image` (identity values when none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NuisanceTruth {
    /// True when any nuisance differs from identity.
    pub applied: bool,
    /// Linear exposure multiplier.
    pub exposure: f64,
    /// Linear per-channel gains.
    pub white_balance: [f64; 3],
    /// Total relative change of the illumination ramp.
    pub gradient_strength: f64,
    /// Direction in which the ramp brightens, degrees counter-clockwise from +x.
    pub gradient_direction_deg: f64,
    /// Additive Gaussian noise σ on linear values.
    pub noise_sigma: f64,
    /// JPEG quality when the image went through JPEG.
    pub jpeg_quality: Option<u8>,
    /// Fraction of channel samples clipped to 0 or 1 after the nuisances.
    pub clipped_fraction: f64,
}

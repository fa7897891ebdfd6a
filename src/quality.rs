//! Stage 2: capture quality checks, turning a [`Photo`] into a [`CheckedPhoto`].
//!
//! Why: a number measured on a blown-out or badly underexposed photo is not a measurement.
//! Each check reports its value, its documented limit and whether it passed; a photo that fails
//! is still scored (the clinician may have nothing better) but is flagged, and later stages mark
//! its changes as unreliable. Checks here need only the pixels; checks that need the face
//! (pose, framing) or a second photo (registration) are added by those stages.

use image::{GrayImage, Rgb32FImage};
use serde::{Deserialize, Serialize};

use crate::io::Photo;
use crate::model::{resample_linear_light, srgb_to_linear};
use crate::regions::{RegionMask, RegionSet};

/// Fraction of pixels allowed to have a channel at or above 254/255 (blown highlights).
/// Above this, specular glare or overexposure hides pigment and redness. Default 2%.
pub const MAX_HIGHLIGHT_CLIPPED: f64 = 0.02;
/// Fraction of pixels allowed to have every channel at or below 2/255 (crushed shadows).
pub const MAX_SHADOW_CLIPPED: f64 = 0.05;
/// Fraction of pixels allowed to have *any* channel at or below 2/255.
///
/// Why a check of its own: the skin model works in optical density, `−ln` of each channel,
/// and separates melanin from hemoglobin mainly by blue against green. On dark skin blue is
/// the darkest channel, and in a deeply pigmented macule or an underexposed photo it reaches
/// black while red and green still look normal, so `shadow_clipping` (all channels black)
/// stays silent. A channel at 0–2 codes has no optical density to measure: one code is 0.4–0.7
/// OD there, and noise clipped at 0 raises the mean, so the melanin of such macules collapses.
/// Measured (skin pixels, `dermatrack analyze`): the 13 shared portraits and the demo study
/// 0–0.05%; the independent renderer's dark tone (ITA −40°, macules at 1–2 codes of blue)
/// 4.1% clean, 8.5% with noise (where its pigment area falls from 3.3% to 0.35%), 3.6% after
/// JPEG; our dark phantom 0% clean or JPEG, 28% with σ 0.01 noise. Like `highlight_clipping`,
/// 2% flags those photos and no portrait.
pub const MAX_DARK_CHANNEL_CLIPPED: f64 = 0.02;
/// Median blue level of the skin, in codes of 255, below which an 8-bit photo gets a note in
/// [`QualityReport::notes`] that its blue is too shallow for shallow scars and faint erythema.
///
/// Why: one code of blue is `2.4/(v + 14)` OD at level `v` (`1/v` below 10 codes; 0.07 OD at
/// 19 codes, 0.10 at 10), and the model weighs blue density by −1.09 in the shading and 3.6 in
/// the melanin. On our dark phantoms
/// (skin blue 19 codes) rounding to 8 bits raised the relief band's robust σ from 0.0045 to
/// 0.011–0.013 and lost shallow rolling scars (6, 5, 5, 7, 6 of 7 on seeds 11–15, against
/// 6, 7, 7, 7, 7 in 16 bits), and JPEG q90–95 took most of the erythema (0.3–1.3% for
/// 1.9–2.9%). The independent renderer's dark skin reads 10 codes, its brown skin 47 (whose
/// clean 8-bit images keep their counts), and the 13 shared portraits 48–155 (skin medians,
/// a temporary debug print; a photo below the limit shows its own in the note). 30 lies between,
/// where one code is 0.055 OD. Not a failed check: the photo is measured as well as 8 bits
/// allow, and the remedy is the capture (16 bits per channel, or more exposure without
/// clipping red), which the note names.
pub const MIN_BLUE_CODES: f64 = 30.0;

/// Mean sRGB luminance limits (0..1): outside them the exposure is too far off for reliable
/// color measurement even after normalization.
pub const MEAN_LUMA_RANGE: (f64, f64) = (0.12, 0.92);

/// Scale at which [`sharpness`] is measured, px/mm. Clinical portraits are ≈ 3–4 px/mm
/// (a 24 MP full-face frame); measuring every photo at the same physical scale makes the
/// value comparable between photos of different resolution and independent of the distance.
/// At 3 px/mm the Laplacian responds to detail of ≈ 0.3–1 mm: pores, fine lines, hair, the
/// first things a focus or motion blur erases.
pub const SHARPNESS_PX_PER_MM: f64 = 3.0;
/// Smallest accepted [`sharpness`]. Measured (`cargo run --release --example capture_qc`, table
/// in the README): 13 sharp real portraits read 80–490, textured phantoms 17–26; the same
/// portraits blurred by a Gaussian of σ = 0.25 mm read 17–62 and of σ = 0.5 mm (pores gone)
/// 2.5–7.7. A limit of 10 rejects the σ = 0.5 mm blur everywhere and passes every sharp photo.
pub const MIN_SHARPNESS: f64 = 10.0;

/// Accepted range of the skin's hue angle h_ab, degrees ([`skin_hue_chroma`]): the colour-cast
/// check. Measured (`cargo run --release --example capture_qc`): 13 real portraits under
/// studio and phone light read 24–75°, phantoms of six tones 57–60°; white-balance errors move
/// the bundled portrait from 52° to 45° (R ×0.8, B ×1.25), 67° (green, R and B ×0.85) and 29°
/// (magenta, G ×0.85). Skin's own hue varies too much for a tighter limit, so this flags only
/// gross casts (a green or magenta lamp, a wrong preset); moderate white-balance differences are
/// what `compare`'s colour normalization removes, and its pair check `skin_delta_e2000` reports.
pub const SKIN_HUE_RANGE_DEG: (f64, f64) = (20.0, 85.0);

/// One check: what was measured, against what limit, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityCheck {
    /// Stable identifier, e.g. "highlight_clipping".
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// The documented limit(s), e.g. "<= 0.02" or "0.12..0.92".
    pub limit: String,
    /// Whether the value is within the limit.
    pub passed: bool,
}

/// All checks run on one photo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityReport {
    /// True when every check passed.
    pub passed: bool,
    /// The individual checks, in the order they ran.
    pub checks: Vec<QualityCheck>,
    /// Human-readable remarks that are not pass/fail (e.g. "resolution below working scale").
    pub notes: Vec<String>,
}

impl QualityReport {
    /// Adds a check and updates [`QualityReport::passed`].
    pub fn push(&mut self, name: &str, value: f64, limit: String, passed: bool) {
        self.checks.push(QualityCheck {
            name: name.to_string(),
            value,
            limit,
            passed,
        });
        self.passed = self.checks.iter().all(|c| c.passed);
    }

    /// Adds a check of `value <= max`.
    pub fn push_max(&mut self, name: &str, value: f64, max: f64) {
        self.push(name, value, format!("<= {max}"), value <= max);
    }

    /// Adds a check of `lo <= value <= hi`.
    pub fn push_range(&mut self, name: &str, value: f64, (lo, hi): (f64, f64)) {
        self.push(
            name,
            value,
            format!("{lo}..{hi}"),
            (lo..=hi).contains(&value),
        );
    }

    /// Looks a check up by name.
    pub fn check(&self, name: &str) -> Option<&QualityCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// A photo with its pixel-level quality checks done.
#[derive(Debug, Clone)]
pub struct CheckedPhoto {
    /// The photo.
    pub photo: Photo,
    /// The checks run so far; later stages append theirs.
    pub quality: QualityReport,
}

/// Runs the exposure checks over the whole frame. Once the skin is known,
/// [`add_capture_checks`] measures them again over the skin only and replaces these values:
/// a white backdrop or a white shirt may clip without harm, clipped skin may not.
pub fn check_photo(photo: Photo) -> CheckedPhoto {
    let quality = exposure_checks(&photo.pixels, None);
    CheckedPhoto { photo, quality }
}

/// Highlight clipping, shadow clipping and mean luma over the pixels where `mask` is set (all
/// pixels without a mask).
fn exposure_checks(img: &Rgb32FImage, mask: Option<&GrayImage>) -> QualityReport {
    let mut highlight = 0u64;
    let mut shadow = 0u64;
    let mut dark_channel = 0u64;
    let mut luma_sum = 0f64;
    let mut n = 0u64;
    for (i, p) in img.pixels().enumerate() {
        if let Some(m) = mask
            && m.as_raw()[i] == 0
        {
            continue;
        }
        n += 1;
        let [r, g, b] = p.0;
        if r.max(g).max(b) >= 254.0 / 255.0 {
            highlight += 1;
        }
        if r.max(g).max(b) <= 2.0 / 255.0 {
            shadow += 1;
        }
        if r.min(g).min(b) <= 2.0 / 255.0 {
            dark_channel += 1;
        }
        // Rec. 709 luma on encoded values: a cheap exposure indicator, not a colorimetric one.
        luma_sum += f64::from(0.2126 * r + 0.7152 * g + 0.0722 * b);
    }
    let n = n.max(1) as f64;
    let mut quality = QualityReport {
        passed: true,
        ..QualityReport::default()
    };
    quality.push_max(
        "highlight_clipping",
        highlight as f64 / n,
        MAX_HIGHLIGHT_CLIPPED,
    );
    quality.push_max("shadow_clipping", shadow as f64 / n, MAX_SHADOW_CLIPPED);
    quality.push_max(
        "dark_channel_clipping",
        dark_channel as f64 / n,
        MAX_DARK_CHANNEL_CLIPPED,
    );
    quality.push_range("mean_luma", luma_sum / n, MEAN_LUMA_RANGE);
    quality
}

/// The median code value (0–255) of channel `c` over the pixels where `mask` is set, from a
/// histogram of the rounded codes (linear in the pixel count, for 8-bit photos whose samples
/// are codes); `None` on an empty mask.
fn median_code(img: &Rgb32FImage, mask: &GrayImage, c: usize) -> Option<f64> {
    let mut histogram = [0u64; 256];
    for (p, &m) in img.pixels().zip(mask.as_raw()) {
        if m != 0 {
            histogram[(255.0 * p.0[c].clamp(0.0, 1.0)).round() as usize] += 1;
        }
    }
    let n: u64 = histogram.iter().sum();
    let mut below = 0;
    for (code, &count) in histogram.iter().enumerate() {
        below += count;
        if n > 0 && 2 * below > n {
            return Some(code as f64);
        }
    }
    None
}

/// Focus measure: variance of the Laplacian of log-luminance over the skin (Pech-Pacheco et
/// al., "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000),
/// at [`SHARPNESS_PX_PER_MM`], times 10⁴.
///
/// Why log-luminance: a Laplacian of plain luminance scales with exposure, so a brighter photo
/// would look "sharper"; in log space an exposure factor is an additive constant and drops
/// out. Why the skin only: hair, eyelashes and the background have far more contrast than skin
/// and would hide a blur of the skin itself. Photos coarser than the measuring scale are
/// measured at their own scale (and read as less sharp, rightly: they hold less detail).
///
/// `roi` is a mask in photo pixels (non-zero = skin); `px_per_mm` the photo's scale. `None`
/// when fewer than 100 pixels of the downsampled ROI have all four neighbours inside it.
pub fn sharpness(img: &Rgb32FImage, roi: &GrayImage, px_per_mm: f64) -> Option<f64> {
    let bbox = bbox_of(roi)?;
    let zoom = (SHARPNESS_PX_PER_MM / px_per_mm).min(1.0);
    let small = resample_linear_light(img, bbox, zoom).ok()?;
    let (w, h) = small.dimensions();
    let (sx, sy) = (
        f64::from(bbox.2 - bbox.0) / f64::from(w),
        f64::from(bbox.3 - bbox.1) / f64::from(h),
    );
    let inside = |x: u32, y: u32| {
        let px = (f64::from(bbox.0) + (f64::from(x) + 0.5) * sx) as u32;
        let py = (f64::from(bbox.1) + (f64::from(y) + 0.5) * sy) as u32;
        roi.get_pixel(px.min(roi.width() - 1), py.min(roi.height() - 1))
            .0[0]
            != 0
    };
    let log_y: Vec<f64> = small
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(srgb_to_linear);
            let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
            // The offset keeps sensor noise in near-black pixels from dominating.
            (f64::from(y) + 0.01).ln()
        })
        .collect();
    let at = |x: u32, y: u32| log_y[(y * w + x) as usize];
    let (mut n, mut sum, mut sum2) = (0u64, 0f64, 0f64);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            if !(inside(x, y)
                && inside(x - 1, y)
                && inside(x + 1, y)
                && inside(x, y - 1)
                && inside(x, y + 1))
            {
                continue;
            }
            let lap = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            n += 1;
            sum += lap;
            sum2 += lap * lap;
        }
    }
    if n < 100 {
        return None;
    }
    let mean = sum / n as f64;
    Some((sum2 / n as f64 - mean * mean).max(0.0) * 1e4)
}

/// Hue angle h_ab (degrees) and chroma C*_ab of the skin's robust median colour (CIELAB, D65;
/// [`crate::color::skin_reference`]): the colour-cast statistic. `None` without enough usable
/// skin pixels.
pub fn skin_hue_chroma(img: &Rgb32FImage, roi: &GrayImage) -> Option<(f64, f64)> {
    let [_, a, b] = crate::metrics::linear_srgb_to_lab(crate::color::skin_reference(img, roi)?);
    Some((b.atan2(a).to_degrees(), a.hypot(b)))
}

/// Bounding box `(x0, y0, x1, y1)` of a mask's non-zero pixels.
fn bbox_of(mask: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut bbox: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] != 0 {
            let b = bbox.get_or_insert((x, y, x + 1, y + 1));
            *b = (b.0.min(x), b.1.min(y), b.2.max(x + 1), b.3.max(y + 1));
        }
    }
    bbox
}

/// The union of the visible masks of some regions: the skin the photo is measured on.
pub fn skin_mask(regions: &[RegionMask], width: u32, height: u32) -> GrayImage {
    let mut union = GrayImage::new(width, height);
    for r in regions.iter().filter(|r| r.visible) {
        if r.mask.dimensions() != (width, height) {
            continue;
        }
        for (u, m) in union.pixels_mut().zip(r.mask.pixels()) {
            u.0[0] = u.0[0].max(m.0[0]);
        }
    }
    union
}

/// Runs the checks that need to know where the skin is and how large a millimetre is: the
/// colour cast (`skin_hue_deg` within [`SKIN_HUE_RANGE_DEG`]), the exposure checks of
/// [`check_photo`] again over the skin only (replacing the whole-frame values), and, for face
/// regions, `sharpness` (≥ [`MIN_SHARPNESS`], see [`sharpness`]; other
/// modes get the value as a note). An 8-bit photo whose skin's median blue is below
/// [`MIN_BLUE_CODES`] gets a note saying so.
pub fn add_capture_checks(report: &mut QualityReport, photo: &Photo, regions: &RegionSet) {
    let img = &photo.pixels;
    let skin = skin_mask(&regions.regions, img.width(), img.height());
    if photo.bits_per_channel == 8
        && let Some(blue) = median_code(img, &skin, 2)
        && blue < MIN_BLUE_CODES
    {
        let od_per_code = crate::model::density_per_code(blue);
        report.notes.push(format!(
            "blue on the skin is {blue:.0}/255 in this 8-bit photo (below {MIN_BLUE_CODES}): one \
             code is {od_per_code:.2} OD there, so shallow rolling scars and faint erythema are \
             measured less reliably (README, known gaps); a 16-bit capture, or more exposure \
             without clipping red, measures them better"
        ));
    }
    let px_per_mm = regions.scale.px_per_mm;
    if let Some((hue, _)) = skin_hue_chroma(img, &skin) {
        report.push_range("skin_hue_deg", hue, SKIN_HUE_RANGE_DEG);
    }
    if skin.as_raw().iter().any(|&v| v != 0) {
        for check in exposure_checks(img, Some(&skin)).checks {
            match report.checks.iter_mut().find(|c| c.name == check.name) {
                Some(c) => *c = check,
                None => report.checks.push(check),
            }
        }
        report.passed = report.checks.iter().all(|c| c.passed);
    }
    match sharpness(img, &skin, px_per_mm) {
        // The limit was calibrated on faces, whose skin always has texture at 3 px/mm (pores,
        // follicles, fine lines); a close-up or a phantom may be sharp and featureless, so
        // there the value is reported without a verdict (compare still checks the ratio).
        Some(s) if regions.mode_used != "face" => report.notes.push(format!(
            "sharpness {s:.2} (not judged: the limit {MIN_SHARPNESS} is calibrated on face \
             photos)"
        )),
        Some(s) => {
            report.push(
                "sharpness",
                s,
                format!(">= {MIN_SHARPNESS}"),
                s >= MIN_SHARPNESS,
            );
            if px_per_mm < SHARPNESS_PX_PER_MM {
                report.notes.push(format!(
                    "sharpness measured at the photo's own {px_per_mm:.2} px/mm (coarser than \
                     {SHARPNESS_PX_PER_MM} px/mm): fine texture is below the resolution"
                ));
            }
        }
        None => report
            .notes
            .push("sharpness not measured: too little skin area".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, Rgb32FImage};

    #[test]
    fn overexposed_photo_fails_highlight_check() {
        let img = Rgb32FImage::from_fn(50, 50, |x, _| {
            if x < 10 {
                Rgb([1.0, 1.0, 1.0])
            } else {
                Rgb([0.6, 0.45, 0.4])
            }
        });
        let checked = check_photo(Photo::from_pixels("p", img));
        let c = checked.quality.check("highlight_clipping").unwrap();
        assert!((c.value - 0.2).abs() < 1e-9);
        assert!(!c.passed);
        assert!(!checked.quality.passed);
    }

    /// One region covering a 40 × 40-px photo at 10 px/mm, as `--regions whole` gives.
    fn whole_40_px() -> RegionSet {
        use crate::regions::{RegionMask, Scale, ScaleSource};
        RegionSet {
            regions: vec![RegionMask::whole(40, 40)],
            scale: Scale {
                px_per_mm: 10.0,
                source: ScaleSource::User,
                relative_uncertainty: None,
            },
            mode_used: "whole".into(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_gross_colour_cast_fails_the_skin_hue_check() {
        let set = whole_40_px();
        let hue = |rgb: [f32; 3]| {
            let img = Rgb32FImage::from_pixel(40, 40, image::Rgb(rgb));
            let mut report = QualityReport::default();
            add_capture_checks(&mut report, &Photo::from_pixels("p", img), &set);
            report.check("skin_hue_deg").cloned().unwrap()
        };
        // Skin under neutral light (hue ≈ 50°) passes; the same skin under a green lamp fails.
        let skin = hue([0.78, 0.58, 0.47]);
        assert!(
            skin.passed && (35.0..65.0).contains(&skin.value),
            "{skin:?}"
        );
        let green = hue([0.55, 0.62, 0.40]);
        assert!(!green.passed, "{green:?}");
    }

    #[test]
    fn shallow_blue_in_an_8_bit_photo_is_noted() {
        let set = whole_40_px();
        let notes = |blue: f32, bits: u8| {
            // Skin with a quarter of it (below the median) darker in blue.
            let img = Rgb32FImage::from_fn(40, 40, |x, _| {
                let b = if x < 10 { blue - 8.0 } else { blue };
                Rgb([97.0 / 255.0, 50.0 / 255.0, b / 255.0])
            });
            let photo = Photo {
                bits_per_channel: bits,
                ..Photo::from_pixels("p", img)
            };
            let mut report = QualityReport::default();
            add_capture_checks(&mut report, &photo, &set);
            report.notes
        };
        // Dark skin's blue (19 codes) in an 8-bit photo: noted, with its density per code.
        let dark = notes(19.0, 8);
        let blue_note = dark
            .iter()
            .find(|n| n.starts_with("blue on the skin is 19/255"));
        assert!(blue_note.is_some_and(|n| n.contains("0.07 OD")), "{dark:?}");
        // The same skin stored in 16 bits, and brown skin's blue (47 codes) in 8 bits: no note.
        for (blue, bits) in [(19.0, 16), (47.0, 8)] {
            let n = notes(blue, bits);
            assert!(
                !n.iter().any(|n| n.starts_with("blue on")),
                "{blue} {bits}: {n:?}"
            );
        }
        // The median, not the darkest quarter, decides: 32 codes with a quarter at 24 pass.
        assert!(!notes(32.0, 8).iter().any(|n| n.starts_with("blue on")));
    }

    #[test]
    fn well_exposed_skin_passes() {
        let img = Rgb32FImage::from_pixel(50, 50, Rgb([0.7, 0.5, 0.42]));
        let checked = check_photo(Photo::from_pixels("p", img));
        assert!(checked.quality.passed, "{:?}", checked.quality);
        assert_eq!(checked.quality.checks.len(), 4);
    }

    #[test]
    fn a_crushed_blue_channel_fails_only_the_dark_channel_check() {
        // Dark skin (blue at 14/255) with 10% of it, a deeply pigmented patch, at blue 1/255.
        let img = Rgb32FImage::from_fn(50, 50, |x, y| {
            let blue = if x < 10 && y < 25 { 1.0 } else { 14.0 };
            Rgb([95.0 / 255.0, 50.0 / 255.0, blue / 255.0])
        });
        let checked = check_photo(Photo::from_pixels("p", img));
        let dark = checked.quality.check("dark_channel_clipping").unwrap();
        assert!((dark.value - 0.1).abs() < 1e-9, "{dark:?}");
        assert!(!dark.passed && !checked.quality.passed);
        let shadow = checked.quality.check("shadow_clipping").unwrap();
        assert!(shadow.passed && shadow.value == 0.0, "{shadow:?}");
        // The same skin without the crushed patch passes.
        let img = Rgb32FImage::from_pixel(50, 50, Rgb([95.0 / 255.0, 50.0 / 255.0, 14.0 / 255.0]));
        let checked = check_photo(Photo::from_pixels("p", img));
        assert!(
            checked
                .quality
                .check("dark_channel_clipping")
                .unwrap()
                .passed
        );
    }
}

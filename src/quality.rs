//! Stage 2: capture quality checks, turning a [`Photo`] into a [`CheckedPhoto`].
//!
//! Why: a number measured on a blown-out or badly underexposed photo is not a measurement.
//! Each check reports its value, its documented limit and whether it passed; a photo that fails
//! is still scored (the clinician may have nothing better) but is flagged, and later stages mark
//! its changes as unreliable. Checks here need only the pixels; checks that need the face
//! (pose, framing) or a second photo (registration) are added by those stages.

use serde::{Deserialize, Serialize};

use crate::io::Photo;

/// Fraction of pixels allowed to have a channel at or above 254/255 (blown highlights).
/// Above this, specular glare or overexposure hides pigment and redness. Default 2%.
pub const MAX_HIGHLIGHT_CLIPPED: f64 = 0.02;
/// Fraction of pixels allowed to have every channel at or below 2/255 (crushed shadows).
pub const MAX_SHADOW_CLIPPED: f64 = 0.05;
/// Mean sRGB luminance limits (0..1): outside them the exposure is too far off for reliable
/// color measurement even after normalization.
pub const MEAN_LUMA_RANGE: (f64, f64) = (0.12, 0.92);

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

/// Runs the exposure checks.
pub fn check_photo(photo: Photo) -> CheckedPhoto {
    let mut highlight = 0u64;
    let mut shadow = 0u64;
    let mut luma_sum = 0f64;
    for p in photo.pixels.pixels() {
        let [r, g, b] = p.0;
        if r.max(g).max(b) >= 254.0 / 255.0 {
            highlight += 1;
        }
        if r.max(g).max(b) <= 2.0 / 255.0 {
            shadow += 1;
        }
        // Rec. 709 luma on encoded values: a cheap exposure indicator, not a colorimetric one.
        luma_sum += f64::from(0.2126 * r + 0.7152 * g + 0.0722 * b);
    }
    let n = f64::from(photo.width()) * f64::from(photo.height());
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
    quality.push_range("mean_luma", luma_sum / n, MEAN_LUMA_RANGE);
    CheckedPhoto { photo, quality }
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

    #[test]
    fn well_exposed_skin_passes() {
        let img = Rgb32FImage::from_pixel(50, 50, Rgb([0.7, 0.5, 0.42]));
        let checked = check_photo(Photo::from_pixels("p", img));
        assert!(checked.quality.passed, "{:?}", checked.quality);
        assert_eq!(checked.quality.checks.len(), 3);
    }
}

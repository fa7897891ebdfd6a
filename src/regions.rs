//! Stage 3: where to measure — region masks and the photo's physical scale.
//!
//! Why: clinicians grade per anatomical region (mMASI weights forehead 0.3, each malar region
//! 0.3, chin 0.1 — Pandya et al., J Am Acad Dermatol 2011), and trials compare the *same* skin
//! across visits. A [`RegionSet`] holds named, non-overlapping masks at photo resolution plus
//! the pixels-per-millimetre that turns pixel counts into mm². Face regions come from the
//! landmark stage; `whole` measures the entire frame (close-ups, phantoms, body sites).

use image::GrayImage;
use serde::{Deserialize, Serialize};

/// How the pixels-per-millimetre value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleSource {
    /// Given by the user (`--px-per-mm`), e.g. from a ruler or a calibrated camera rig.
    User,
    /// Estimated from the interpupillary distance of the detected face.
    FaceIpd,
    /// Nothing was known: the model's working scale was assumed, so areas in mm² and feature
    /// sizes are not physical. Reported so nobody mistakes them for measurements.
    Assumed,
}

/// The photo's physical scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Pixels per millimetre on the skin surface.
    pub px_per_mm: f64,
    /// Where the value comes from.
    pub source: ScaleSource,
    /// Relative standard uncertainty (e.g. 0.08 for ±8%), when known.
    pub relative_uncertainty: Option<f64>,
}

/// One named region: a binary mask at photo resolution.
#[derive(Debug, Clone)]
pub struct RegionMask {
    /// Region name, e.g. "forehead", "cheek_left" (the subject's left), "whole".
    pub name: String,
    /// 255 inside the region, 0 outside; same size as the photo.
    pub mask: GrayImage,
    /// False when the region is hidden (e.g. by head turn): it is reported, not scored.
    pub visible: bool,
}

impl RegionMask {
    /// A region covering the whole frame.
    pub fn whole(width: u32, height: u32) -> RegionMask {
        RegionMask {
            name: "whole".into(),
            mask: GrayImage::from_pixel(width, height, image::Luma([255])),
            visible: true,
        }
    }

    /// Number of pixels inside the mask.
    pub fn pixel_count(&self) -> u64 {
        self.mask.as_raw().iter().filter(|&&v| v != 0).count() as u64
    }

    /// Tight bounding box `(x0, y0, x1, y1)` (exclusive ends), or `None` if empty.
    pub fn bbox(&self) -> Option<(u32, u32, u32, u32)> {
        let (w, _) = self.mask.dimensions();
        let mut b: Option<(u32, u32, u32, u32)> = None;
        for (i, &v) in self.mask.as_raw().iter().enumerate() {
            if v == 0 {
                continue;
            }
            let (x, y) = ((i as u32) % w, (i as u32) / w);
            b = Some(match b {
                None => (x, y, x + 1, y + 1),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)),
            });
        }
        b
    }
}

/// Which regions to measure, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionMode {
    /// Anatomical face regions; an error when no face is found.
    Face,
    /// The whole frame as one region.
    Whole,
    /// Face regions when a face is found, else the whole frame (and the report says so).
    #[default]
    Auto,
}

/// The regions of one photo and its scale: the output of the region stage.
#[derive(Debug, Clone)]
pub struct RegionSet {
    /// The regions, in report order.
    pub regions: Vec<RegionMask>,
    /// The physical scale.
    pub scale: Scale,
    /// What was actually used: "face" or "whole".
    pub mode_used: String,
    /// Remarks for the report, e.g. why `auto` fell back to `whole`.
    pub notes: Vec<String>,
}

impl RegionSet {
    /// Bounding box of all visible regions together, `(x0, y0, x1, y1)`.
    pub fn union_bbox(&self) -> Option<(u32, u32, u32, u32)> {
        self.regions
            .iter()
            .filter(|r| r.visible)
            .filter_map(RegionMask::bbox)
            .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_region_covers_everything() {
        let r = RegionMask::whole(7, 5);
        assert_eq!(r.pixel_count(), 35);
        assert_eq!(r.bbox(), Some((0, 0, 7, 5)));
    }

    #[test]
    fn bbox_is_tight() {
        let mut r = RegionMask::whole(10, 10);
        r.mask.pixels_mut().for_each(|p| p.0 = [0]);
        r.mask.put_pixel(3, 4, image::Luma([255]));
        r.mask.put_pixel(6, 2, image::Luma([255]));
        assert_eq!(r.bbox(), Some((3, 2, 7, 5)));
        assert_eq!(r.pixel_count(), 2);
    }
}

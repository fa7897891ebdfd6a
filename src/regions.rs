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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

    /// Mean `(x, y)` of the pixel centres inside the mask, or `None` if empty.
    pub fn centroid(&self) -> Option<(f64, f64)> {
        let (w, _) = self.mask.dimensions();
        let (mut n, mut sx, mut sy) = (0u64, 0f64, 0f64);
        for (i, &v) in self.mask.as_raw().iter().enumerate() {
            if v != 0 {
                n += 1;
                sx += f64::from((i as u32) % w) + 0.5;
                sy += f64::from((i as u32) / w) + 0.5;
            }
        }
        (n > 0).then(|| (sx / n as f64, sy / n as f64))
    }

    /// A region filled from a polygon in pixel coordinates (see [`fill_polygon`]).
    pub fn from_polygon(name: &str, width: u32, height: u32, polygon: &[[f32; 2]]) -> RegionMask {
        let mut mask = GrayImage::new(width, height);
        fill_polygon(&mut mask, polygon, 255);
        RegionMask {
            name: name.to_string(),
            mask,
            visible: true,
        }
    }
}

/// Calls `span(y, x0, x1)` for every run of pixels `x0..x1` in row `y` whose centre
/// `(x + 0.5, y + 0.5)` lies inside `polygon` (even-odd rule), clipped to `width × height`.
///
/// Why pixel centres and even-odd: the result depends only on the polygon, not on the order
/// regions are drawn or on vertex rounding, so two polygons sharing an edge never both claim a
/// pixel on it, and a mask rotated with its photo keeps its area (to within the boundary
/// pixels). Coordinates are continuous: pixel `(i, j)` covers `[i, i+1) × [j, j+1)`.
pub fn polygon_spans(
    polygon: &[[f32; 2]],
    width: u32,
    height: u32,
    mut span: impl FnMut(u32, u32, u32),
) {
    if polygon.len() < 3 || width == 0 || height == 0 {
        return;
    }
    let ys = polygon.iter().map(|p| f64::from(p[1]));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return;
    }
    // Rows whose centre can be inside: y + 0.5 in [lo, hi].
    let y0 = (lo - 0.5).ceil().max(0.0) as u32;
    let y1 = ((hi - 0.5).floor() + 1.0).clamp(0.0, f64::from(height)) as u32;
    let mut xs: Vec<f64> = Vec::new();
    for y in y0..y1 {
        let yc = f64::from(y) + 0.5;
        xs.clear();
        for (i, a) in polygon.iter().enumerate() {
            let b = polygon[(i + 1) % polygon.len()];
            let (ax, ay, bx, by) = (
                f64::from(a[0]),
                f64::from(a[1]),
                f64::from(b[0]),
                f64::from(b[1]),
            );
            // Half-open in y: an edge counts when the centre line crosses [min y, max y).
            if (ay <= yc) != (by <= yc) {
                xs.push(ax + (yc - ay) * (bx - ax) / (by - ay));
            }
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            // Pixels whose centre x + 0.5 lies in [pair[0], pair[1]).
            let x0 = (pair[0] - 0.5).ceil().clamp(0.0, f64::from(width)) as u32;
            let x1 = (pair[1] - 0.5).ceil().clamp(0.0, f64::from(width)) as u32;
            if x1 > x0 {
                span(y, x0, x1);
            }
        }
    }
}

/// Sets every pixel whose centre lies inside `polygon` to `value` (see [`polygon_spans`]).
pub fn fill_polygon(mask: &mut GrayImage, polygon: &[[f32; 2]], value: u8) {
    let (w, h) = mask.dimensions();
    polygon_spans(polygon, w, h, |y, x0, x1| {
        let row = y as usize * w as usize;
        mask.as_mut()[row + x0 as usize..row + x1 as usize].fill(value);
    });
}

/// Names of the first two regions found to share a pixel, or `None` when the masks are
/// disjoint. Regions must not overlap: a pixel counted twice would weigh twice in any
/// face-level summary.
pub fn first_overlap(regions: &[RegionMask]) -> Option<(String, String)> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            let shared = a
                .mask
                .as_raw()
                .iter()
                .zip(b.mask.as_raw())
                .any(|(&p, &q)| p != 0 && q != 0);
            if shared {
                return Some((a.name.clone(), b.name.clone()));
            }
        }
    }
    None
}

/// Most regions a custom-regions file may define: each is a full-resolution mask.
pub const MAX_CUSTOM_REGIONS: usize = 32;

/// The setting name used in errors about a custom-regions file.
const CUSTOM_REGIONS_SETTING: &str = "regions-file";

/// A custom-regions file: `{"regions": [{"name": "...", "polygon": [[x, y], ...]}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRegionsFile {
    /// The regions, in report order.
    pub regions: Vec<CustomRegion>,
}

/// One user-drawn region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRegion {
    /// Name: non-empty, ASCII letters, digits, `_` and `-` only (it becomes a JSON key and a
    /// CSV column), unique within the file.
    pub name: String,
    /// Outline `[x, y]` in photo pixels of the upright photo (after EXIF orientation),
    /// continuous coordinates (pixel `(i, j)` covers `[i, i+1) × [j, j+1)`); at least three
    /// points; closed implicitly.
    pub polygon: Vec<[f64; 2]>,
}

/// Reads a custom-regions JSON file (see [`CustomRegionsFile`]) and rasterizes it for a
/// `width × height` photo.
///
/// Why custom regions: a treated lesion, a test patch or a body site has no landmark
/// definition; the clinician draws it once and the same polygon is applied to every session of
/// a registered series. Refused, with the file and the offending region named: unknown keys,
/// more than [`MAX_CUSTOM_REGIONS`] regions, invalid or duplicate names, polygons with fewer
/// than three points or non-finite coordinates, polygons covering no pixel of the photo, and
/// regions sharing pixels (every pixel must belong to at most one region).
pub fn load_custom_regions(
    path: &std::path::Path,
    width: u32,
    height: u32,
) -> crate::Result<Vec<RegionMask>> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| crate::Error::InvalidSetting {
        name: CUSTOM_REGIONS_SETTING,
        message: format!("{}: {message}", path.display()),
    };
    let file: CustomRegionsFile = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "not a custom-regions file ({e}); expected {{\"regions\": [{{\"name\": \"...\", \
             \"polygon\": [[x, y], ...]}}]}}"
        ))
    })?;
    custom_region_masks(&file, width, height).map_err(invalid)
}

/// Validates and rasterizes parsed custom regions; errors are messages without the path.
pub fn custom_region_masks(
    file: &CustomRegionsFile,
    width: u32,
    height: u32,
) -> std::result::Result<Vec<RegionMask>, String> {
    if file.regions.is_empty() {
        return Err("defines no region".into());
    }
    if file.regions.len() > MAX_CUSTOM_REGIONS {
        return Err(format!(
            "defines {} regions; at most {MAX_CUSTOM_REGIONS} are allowed",
            file.regions.len()
        ));
    }
    let mut masks: Vec<RegionMask> = Vec::with_capacity(file.regions.len());
    for (i, region) in file.regions.iter().enumerate() {
        let name = &region.name;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(format!(
                "region {} has name {name:?}; names must be 1-64 characters from A-Z, a-z, \
                 0-9, '_' and '-'",
                i + 1
            ));
        }
        if masks.iter().any(|m| &m.name == name) {
            return Err(format!(
                "region name {name:?} is used twice; names must be unique"
            ));
        }
        if region.polygon.len() < 3 {
            return Err(format!(
                "region {name:?} has {} point(s); a polygon needs at least 3",
                region.polygon.len()
            ));
        }
        if let Some(p) = region.polygon.iter().find(|p| {
            !(p[0].is_finite() && p[1].is_finite() && p[0].abs() < 1e7 && p[1].abs() < 1e7)
        }) {
            return Err(format!(
                "region {name:?} has the point [{}, {}]; coordinates must be finite pixel \
                 positions",
                p[0], p[1]
            ));
        }
        let polygon: Vec<[f32; 2]> = region
            .polygon
            .iter()
            .map(|p| [p[0] as f32, p[1] as f32])
            .collect();
        let mask = RegionMask::from_polygon(name, width, height, &polygon);
        if mask.pixel_count() == 0 {
            return Err(format!(
                "region {name:?} covers no pixel of the {width}×{height} photo (coordinates are \
                 pixels of the upright photo)"
            ));
        }
        if let Some(other) = masks.iter().find(|m| {
            m.mask
                .as_raw()
                .iter()
                .zip(mask.mask.as_raw())
                .any(|(&p, &q)| p != 0 && q != 0)
        }) {
            return Err(format!(
                "regions {:?} and {name:?} overlap; custom regions must not share pixels",
                other.name
            ));
        }
        masks.push(mask);
    }
    Ok(masks)
}

/// Which regions to measure, as asked on the command line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
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
    #[test]
    fn polygon_fill_samples_pixel_centres() {
        // Axis-aligned rectangle on pixel edges: exactly its pixels.
        let r = RegionMask::from_polygon(
            "r",
            20,
            20,
            &[[2.0, 3.0], [12.0, 3.0], [12.0, 8.0], [2.0, 8.0]],
        );
        assert_eq!(r.pixel_count(), 50);
        assert_eq!(r.bbox(), Some((2, 3, 12, 8)));
        assert_eq!(r.centroid(), Some((7.0, 5.5)));
        // Winding and a repeated closing vertex do not matter.
        let back = RegionMask::from_polygon(
            "b",
            20,
            20,
            &[[2.0, 3.0], [2.0, 8.0], [12.0, 8.0], [12.0, 3.0], [2.0, 3.0]],
        );
        assert_eq!(back.mask, r.mask);
        // Clipped to the image.
        let c = RegionMask::from_polygon(
            "c",
            10,
            10,
            &[[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]],
        );
        assert_eq!(c.pixel_count(), 25);
    }

    #[test]
    fn polygons_sharing_an_edge_partition_pixels() {
        // A rotated square cut along a diagonal: the halves never share a pixel and together
        // cover the square; the area matches the analytic one.
        let (s, c) = 0.3f32.sin_cos();
        let corner = |x: f32, y: f32| [50.0 + x * c - y * s, 50.0 + x * s + y * c];
        let (a, b, cc, d) = (
            corner(-30.0, -30.0),
            corner(30.0, -30.0),
            corner(30.0, 30.0),
            corner(-30.0, 30.0),
        );
        let whole = RegionMask::from_polygon("w", 100, 100, &[a, b, cc, d]);
        let t1 = RegionMask::from_polygon("t1", 100, 100, &[a, b, cc]);
        let t2 = RegionMask::from_polygon("t2", 100, 100, &[a, cc, d]);
        assert_eq!(first_overlap(&[t1.clone(), t2.clone()]), None);
        assert_eq!(t1.pixel_count() + t2.pixel_count(), whole.pixel_count());
        assert!(
            (whole.pixel_count() as f64 - 3600.0).abs() < 60.0,
            "{}",
            whole.pixel_count()
        );
        assert_eq!(first_overlap(&[t1, whole]), Some(("t1".into(), "w".into())));
    }

    #[test]
    fn custom_regions_validate_before_rasterizing() {
        let file: CustomRegionsFile = serde_json::from_str(
            r#"{"regions": [{"name": "patch_1", "polygon": [[0, 0], [4, 0], [4, 4], [0, 4]]}]}"#,
        )
        .unwrap();
        let masks = custom_region_masks(&file, 10, 10).unwrap();
        assert_eq!(masks[0].pixel_count(), 16);
        let many = CustomRegionsFile {
            regions: (0..=MAX_CUSTOM_REGIONS)
                .map(|i| CustomRegion {
                    name: format!("r{i}"),
                    polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
                })
                .collect(),
        };
        assert!(
            custom_region_masks(&many, 10, 10)
                .unwrap_err()
                .contains("at most")
        );
        let bad = CustomRegionsFile {
            regions: vec![CustomRegion {
                name: "é".into(),
                polygon: vec![[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]],
            }],
        };
        assert!(
            custom_region_masks(&bad, 10, 10)
                .unwrap_err()
                .contains("names must be")
        );
    }
}

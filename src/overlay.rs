//! Overlays: what was counted, drawn on the photo, so a clinician can check the numbers.
//!
//! Why: a pore count or a pigmented-area fraction is only trusted once someone has seen which
//! spots were counted. Detections are made at the model's working scale; here they are mapped
//! back onto the photo's pixels and tinted, one color per kind, and region outlines are drawn.

use image::{GrayImage, Luma, Rgb, RgbImage};
use ndarray::Array2;

use crate::analyze::Analysis;
use crate::model::SkinMaps;
use crate::regions::RegionMask;

/// Tint of each detection kind (sRGB), chosen to stay distinguishable on all skin tones and
/// for the common color-vision deficiencies (blue/orange/magenta/green family).
pub const PORE_COLOR: [u8; 3] = [0, 200, 255];
/// Pigmented macules.
pub const PIGMENT_COLOR: [u8; 3] = [255, 0, 200];
/// Atrophic scars.
pub const SCAR_COLOR: [u8; 3] = [255, 170, 0];
/// Erythema.
pub const REDNESS_COLOR: [u8; 3] = [40, 220, 40];

/// Renders the photo with detections tinted and region outlines drawn.
pub fn render(analysis: &Analysis) -> RgbImage {
    let photo = &analysis.checked.photo.pixels;
    let mut out = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
        Rgb(photo
            .get_pixel(x, y)
            .0
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
    });
    for d in analysis.detections.iter().flatten() {
        // Order matters where kinds touch: the rarer, larger findings are drawn last.
        for (mask, color) in [
            (&d.redness, REDNESS_COLOR),
            (&d.pigment, PIGMENT_COLOR),
            (&d.pores, PORE_COLOR),
            (&d.scars, SCAR_COLOR),
        ] {
            tint(&mut out, &analysis.maps, mask, color);
        }
    }
    let visible: Vec<RegionMask> = analysis
        .regions
        .regions
        .iter()
        .filter(|r| r.visible)
        .cloned()
        .collect();
    crate::face::draw_region_outlines(&mut out, &visible);
    out
}

/// Blends `color` at 55% into every photo pixel whose working-scale pixel is set in `mask`.
fn tint(out: &mut RgbImage, maps: &SkinMaps, mask: &Array2<bool>, color: [u8; 3]) {
    for_each_photo_pixel(maps, mask, |x, y| {
        let p = out.get_pixel_mut(x, y);
        p.0 = std::array::from_fn(|c| {
            (0.45 * f32::from(p.0[c]) + 0.55 * f32::from(color[c])).round() as u8
        });
    });
}

/// Calls `f(x, y)` for every photo pixel whose working-scale pixel is set in `mask`.
fn for_each_photo_pixel(maps: &SkinMaps, mask: &Array2<bool>, mut f: impl FnMut(u32, u32)) {
    let (x0, y0, x1, y1) = maps.crop;
    let (h, w) = mask.dim();
    for y in y0..y1 {
        let wy = ((f64::from(y - y0) + 0.5) * maps.zoom) as usize;
        if wy >= h {
            continue;
        }
        for x in x0..x1 {
            let wx = ((f64::from(x - x0) + 0.5) * maps.zoom) as usize;
            if wx < w && mask[[wy, wx]] {
                f(x, y);
            }
        }
    }
}

/// The pigmented macules and scars found in every region, as a photo-resolution mask (255 =
/// found): what the compare overlay marks as appeared or disappeared. Pores are left out on
/// purpose: hundreds of pore-sized dots that come and go with focus and lighting would hide the
/// changes a clinician looks for.
pub fn findings_mask(analysis: &Analysis) -> GrayImage {
    let photo = &analysis.checked.photo.pixels;
    let mut out = GrayImage::new(photo.width(), photo.height());
    for d in analysis.detections.iter().flatten() {
        for mask in [&d.pigment, &d.scars] {
            for_each_photo_pixel(&analysis.maps, mask, |x, y| {
                out.put_pixel(x, y, Luma([255]))
            });
        }
    }
    out
}

//! Known changes to real photos: capture nuisances (re-positioning, exposure, white balance,
//! JPEG re-encoding) and inserted lesions, for before/after pairs whose truth is known.
//!
//! A phantom proves the measurement on synthetic skin; a *perturbed real portrait* proves the
//! comparison on real skin texture, real face geometry and real camera noise: the after photo
//! is the before photo moved, re-exposed and re-encoded (truth: nothing changed), optionally
//! with a macule of known size and melanin density painted into one region (truth: exactly
//! that changed). The noise floor (`examples/noise_floor.rs`) and the compare tests are built
//! from these pairs.
//!
//! Like the rest of [`crate::phantom`] this is written independently of the analysis: its warp
//! is not [`crate::register`]'s, its colour model is the phantom's own ([`super::optics`]).

use image::{GrayImage, Luma, Rgb, Rgb32FImage, RgbImage};

use super::optics::{SIGMA_MELANIN, srgb_decode, srgb_encode};
use crate::error::{Error, Result};

/// A simulated re-capture. `Default` changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perturbation {
    /// Translation after rotation and scaling, pixels (x right, y down). Default: 0.
    pub shift_px: [f64; 2],
    /// Rotation about the image centre, degrees, counter-clockwise as seen. Default: 0.
    pub rotation_deg: f64,
    /// Magnification about the image centre (1.05 = the subject 5% larger). Default: 1.
    pub scale: f64,
    /// Exposure factor applied in linear light, clipped at 1 as a sensor clips. Default: 1.
    pub exposure: f64,
    /// Per-channel gains in linear light (a white-balance error). Default: `[1, 1, 1]`.
    pub white_balance: [f64; 3],
    /// Re-encode as baseline JPEG at this quality (8-bit). Default: none (16-bit values kept).
    pub jpeg_quality: Option<u8>,
}

impl Default for Perturbation {
    fn default() -> Self {
        Perturbation {
            shift_px: [0.0, 0.0],
            rotation_deg: 0.0,
            scale: 1.0,
            exposure: 1.0,
            white_balance: [1.0; 3],
            jpeg_quality: None,
        }
    }
}

impl Perturbation {
    /// Where a point of the original photo (`width × height`) lands in the perturbed one.
    pub fn map_point(&self, width: u32, height: u32, p: [f64; 2]) -> [f64; 2] {
        let (cx, cy) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
        // Image y points down, so "counter-clockwise as seen" is a negative angle in x-y.
        let (s, c) = (-self.rotation_deg.to_radians()).sin_cos();
        let (x, y) = (p[0] - cx, p[1] - cy);
        [
            self.scale * (c * x - s * y) + cx + self.shift_px[0],
            self.scale * (s * x + c * y) + cy + self.shift_px[1],
        ]
    }

    /// Inverse of [`Perturbation::map_point`].
    pub fn unmap_point(&self, width: u32, height: u32, q: [f64; 2]) -> [f64; 2] {
        let (cx, cy) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
        let (s, c) = (-self.rotation_deg.to_radians()).sin_cos();
        let (x, y) = (
            (q[0] - cx - self.shift_px[0]) / self.scale,
            (q[1] - cy - self.shift_px[1]) / self.scale,
        );
        [c * x + s * y + cx, -s * x + c * y + cy]
    }
}

/// Applies a [`Perturbation`] to an sRGB photo (values in `[0, 1]`); same size out.
///
/// Geometry uses Catmull-Rom interpolation in linear light (a real re-capture does not blur,
/// and bilinear interpolation would blur fine texture more than any camera re-positioning);
/// pixels that come from outside the photo repeat its edge. Exposure and white balance are
/// linear-light gains, clipped at 1.
pub fn perturb(img: &Rgb32FImage, p: &Perturbation) -> Result<Rgb32FImage> {
    if !(p.scale.is_finite() && p.scale > 0.0 && p.exposure.is_finite() && p.exposure > 0.0) {
        return Err(Error::InvalidSetting {
            name: "perturbation",
            message: format!("scale {} and exposure {} must be > 0", p.scale, p.exposure),
        });
    }
    let (w, h) = img.dimensions();
    let linear: Vec<[f64; 3]> = img
        .pixels()
        .map(|px| px.0.map(|v| srgb_decode(f64::from(v))))
        .collect();
    let at = |x: i64, y: i64| -> [f64; 3] {
        let x = x.clamp(0, i64::from(w) - 1) as usize;
        let y = y.clamp(0, i64::from(h) - 1) as usize;
        linear[y * w as usize + x]
    };
    let mut out = Rgb32FImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        // Pixel centres at +0.5.
        let [sx, sy] = p.unmap_point(w, h, [f64::from(x) + 0.5, f64::from(y) + 0.5]);
        let (sx, sy) = (sx - 0.5, sy - 0.5);
        let (x0, y0) = (sx.floor(), sy.floor());
        let (wx, wy) = (catmull_rom_weights(sx - x0), catmull_rom_weights(sy - y0));
        let mut acc = [0.0; 3];
        for (j, wyj) in wy.iter().enumerate() {
            for (i, wxi) in wx.iter().enumerate() {
                let v = at(x0 as i64 + i as i64 - 1, y0 as i64 + j as i64 - 1);
                for c in 0..3 {
                    acc[c] += wxi * wyj * v[c];
                }
            }
        }
        *px = Rgb(std::array::from_fn(|c| {
            srgb_encode(acc[c] * p.exposure * p.white_balance[c]) as f32
        }));
    }
    match p.jpeg_quality {
        None => Ok(out),
        Some(q) => {
            let rgb8 = RgbImage::from_fn(w, h, |x, y| {
                Rgb(out
                    .get_pixel(x, y)
                    .0
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
            });
            let bytes = super::jpeg_round_trip(&rgb8, q)?;
            Ok(
                image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                    .map_err(|e| Error::Decode {
                        path: "<perturbed>.jpg".into(),
                        message: e.to_string(),
                    })?
                    .into_rgb32f(),
            )
        }
    }
}

/// Catmull-Rom cubic convolution weights (a = −0.5) of the four samples around a position
/// with fractional part `t` (Keys, "Cubic convolution interpolation for digital image
/// processing", IEEE TASSP 29(6), 1981).
fn catmull_rom_weights(t: f64) -> [f64; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ]
}

/// A macule painted into a photo: where, how large, how dark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InsertedMacule {
    /// Centre, photo pixels.
    pub centre: [f64; 2],
    /// Radius at which the melanin excess falls to zero, pixels.
    pub radius_px: f64,
    /// Peak melanin optical density added (0.3 is a clearly visible solar lentigo on light
    /// skin; the phantom's macules use 0.15–0.6).
    pub melanin_od: f64,
}

/// Adds melanin optical density to a real photo in linear light (`R_c ← R_c ·
/// exp(−od · σ_mel,c · profile)`, the phantom's own model, in the private `phantom::optics`
/// module) with a flat top to 0.7 of the radius and a raised-cosine edge; the skin's own
/// texture stays underneath, as in a real macule. Returns the truth mask (255 where the excess
/// is ≥ half the peak).
pub fn insert_macule(img: &mut Rgb32FImage, macule: &InsertedMacule) -> GrayImage {
    let (w, h) = img.dimensions();
    let mut truth = GrayImage::new(w, h);
    let r = macule.radius_px;
    let [cx, cy] = macule.centre;
    let x0 = (cx - r).floor().max(0.0) as u32;
    let y0 = (cy - r).floor().max(0.0) as u32;
    let x1 = ((cx + r).ceil().max(0.0) as u32).min(w);
    let y1 = ((cy + r).ceil().max(0.0) as u32).min(h);
    for y in y0..y1 {
        for x in x0..x1 {
            let d = ((f64::from(x) + 0.5 - cx).hypot(f64::from(y) + 0.5 - cy)) / r;
            let profile = if d <= 0.7 {
                1.0
            } else if d < 1.0 {
                0.5 * (1.0 + (std::f64::consts::PI * (d - 0.7) / 0.3).cos())
            } else {
                0.0
            };
            if profile <= 0.0 {
                continue;
            }
            let px = img.get_pixel_mut(x, y);
            for (v, sigma) in px.0.iter_mut().zip(SIGMA_MELANIN) {
                let att = (-macule.melanin_od * sigma * profile).exp();
                *v = srgb_encode(srgb_decode(f64::from(*v)) * att) as f32;
            }
            if profile >= 0.5 {
                truth.put_pixel(x, y, Luma([255]));
            }
        }
    }
    truth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(w: u32, h: u32) -> Rgb32FImage {
        Rgb32FImage::from_fn(w, h, |x, y| {
            let v = 0.45 + 0.1 * ((f64::from(x) * 0.31).sin() * (f64::from(y) * 0.23).cos()) as f32;
            Rgb([v + 0.1, v, v - 0.05])
        })
    }

    #[test]
    fn map_and_unmap_are_inverse() {
        let p = Perturbation {
            shift_px: [12.5, -7.0],
            rotation_deg: 3.0,
            scale: 1.04,
            ..Perturbation::default()
        };
        for q in [[0.0, 0.0], [100.0, 37.5], [250.0, 400.0]] {
            let back = p.unmap_point(300, 500, p.map_point(300, 500, q));
            assert!((back[0] - q[0]).abs() < 1e-9 && (back[1] - q[1]).abs() < 1e-9);
        }
        // The centre only moves by the shift.
        let c = p.map_point(300, 500, [150.0, 250.0]);
        assert!((c[0] - 162.5).abs() < 1e-9 && (c[1] - 243.0).abs() < 1e-9);
    }

    #[test]
    fn identity_perturbation_keeps_pixels() {
        let img = textured(64, 48);
        let out = perturb(&img, &Perturbation::default()).unwrap();
        for (a, b) in img.pixels().zip(out.pixels()) {
            for c in 0..3 {
                assert!((a.0[c] - b.0[c]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn integer_shift_moves_content_and_exposure_scales_linear_light() {
        let img = textured(64, 48);
        let p = Perturbation {
            shift_px: [5.0, -3.0],
            exposure: 1.2,
            ..Perturbation::default()
        };
        let out = perturb(&img, &p).unwrap();
        let a = img.get_pixel(20, 20).0;
        let b = out.get_pixel(25, 17).0;
        for c in 0..3 {
            let expect = srgb_encode(srgb_decode(f64::from(a[c])) * 1.2);
            assert!(
                (f64::from(b[c]) - expect).abs() < 1e-5,
                "{c}: {b:?} vs {expect}"
            );
        }
    }

    #[test]
    fn macule_darkens_by_the_melanin_model_and_reports_its_mask() {
        let mut img = Rgb32FImage::from_pixel(100, 100, Rgb([0.8, 0.6, 0.5]));
        let m = InsertedMacule {
            centre: [50.0, 50.0],
            radius_px: 20.0,
            melanin_od: 0.4,
        };
        let truth = insert_macule(&mut img, &m);
        let inside = img.get_pixel(50, 50).0;
        for (c, (&v, base)) in inside.iter().zip([0.8f64, 0.6, 0.5]).enumerate() {
            let expect = srgb_encode(srgb_decode(base) * (-0.4 * SIGMA_MELANIN[c]).exp());
            assert!((f64::from(v) - expect).abs() < 1e-6);
        }
        assert_eq!(img.get_pixel(5, 5).0, [0.8, 0.6, 0.5]);
        // Half-maximum radius of the raised-cosine edge is 0.85 r: area π (17)².
        let area = truth.pixels().filter(|p| p.0[0] != 0).count() as f64;
        let expect = std::f64::consts::PI * 17.0f64.powi(2);
        assert!((area / expect - 1.0).abs() < 0.03, "{area} vs {expect}");
    }

    #[test]
    fn jpeg_re_encoding_stays_close() {
        let img = textured(64, 64);
        let p = Perturbation {
            jpeg_quality: Some(90),
            ..Perturbation::default()
        };
        let out = perturb(&img, &p).unwrap();
        let mean_abs: f64 = img
            .pixels()
            .zip(out.pixels())
            .map(|(a, b)| f64::from((a.0[1] - b.0[1]).abs()))
            .sum::<f64>()
            / 4096.0;
        assert!(mean_abs > 0.0 && mean_abs < 0.01, "{mean_abs}");
    }
}

//! Feature placement (rejection sampling) and rasterization into the chromophore, shading and
//! relief fields. See the spec types for each feature's profile and mask definition.

use std::f64::consts::{LN_2, LN_10, TAU};

use super::rng::Rng;
use super::spec::{PhantomSpec, ScarKind};
use crate::error::{Error, Result};

/// Attempts per feature before a layout is declared stuck.
const MAX_ATTEMPTS: usize = 5_000;

/// Complete layouts tried before the spec is declared too crowded.
const MAX_LAYOUTS: usize = 20;

/// Which mask a feature belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    Pores = 0,
    Pigment = 1,
    Scars = 2,
    Erythema = 3,
}

/// An irregular closed boundary `R(θ) = R0·(1 + Σ a_k cos(kθ + φ_k))`, k = 2, 3, 4.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub r0: f64,
    /// `(a_k, cos φ_k, sin φ_k)` for k = 2, 3, 4.
    pub harmonics: [(f64, f64, f64); 3],
}

impl Blob {
    /// A blob of equivalent-circle diameter `d` (area exactly `π d²/4`).
    fn new(d: f64, irregularity: f64, rng: &mut Rng) -> Blob {
        let mut harmonics = [(0.0, 1.0, 0.0); 3];
        for (i, h) in harmonics.iter_mut().enumerate() {
            let k = (i + 2) as f64;
            let a = irregularity * 2.0 / k * rng.uniform();
            let (s, c) = (TAU * rng.uniform()).sin_cos();
            *h = (a, c, s);
        }
        // Area = π R0² (1 + ½ Σ a_k²) for this boundary.
        let sum_sq: f64 = harmonics.iter().map(|h| h.0 * h.0).sum();
        Blob {
            r0: 0.5 * d / (1.0 + 0.5 * sum_sq).sqrt(),
            harmonics,
        }
    }

    /// Largest boundary radius bound `R0·(1 + Σ a_k)`.
    fn r_max(&self) -> f64 {
        self.r0 * (1.0 + self.harmonics.iter().map(|h| h.0).sum::<f64>())
    }

    /// `ρ = r / R(θ)` at offset `(dx, dy)` from the centre.
    fn rho(&self, dx: f64, dy: f64) -> f64 {
        let r = (dx * dx + dy * dy).sqrt();
        if r == 0.0 {
            return 0.0;
        }
        let (c1, s1) = (dx / r, dy / r);
        // cos kθ, sin kθ by repeated rotation.
        let (c2, s2) = (c1 * c1 - s1 * s1, 2.0 * c1 * s1);
        let (c3, s3) = (c2 * c1 - s2 * s1, s2 * c1 + c2 * s1);
        let (c4, s4) = (c3 * c1 - s3 * s1, s3 * c1 + c3 * s1);
        let mut f = 1.0;
        for ((a, cp, sp), (ck, sk)) in self.harmonics.iter().zip([(c2, s2), (c3, s3), (c4, s4)]) {
            f += a * (ck * cp - sk * sp);
        }
        r / (self.r0 * f)
    }
}

/// What a feature is, with its drawn parameters (all lengths in mm).
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    Pore {
        diameter: f64,
        contrast: f64,
    },
    Macule {
        diameter: f64,
        excess: f64,
        blob: Blob,
    },
    Erythema {
        diameter: f64,
        excess: f64,
        blob: Blob,
    },
    Scar {
        kind: ScarKind,
        diameter: f64,
        depth: f64,
    },
}

/// A placed feature.
#[derive(Debug, Clone)]
pub(crate) struct Feature {
    pub shape: Shape,
    /// Centre, mm from the image's top-left corner (x right, y down).
    pub x: f64,
    pub y: f64,
    /// Radius beyond which the feature has no effect (below 0.1% of its peak).
    pub extent: f64,
}

impl Feature {
    pub(crate) fn layer(&self) -> Layer {
        match self.shape {
            Shape::Pore { .. } => Layer::Pores,
            Shape::Macule { .. } => Layer::Pigment,
            Shape::Erythema { .. } => Layer::Erythema,
            Shape::Scar { .. } => Layer::Scars,
        }
    }

    /// The pixels whose centre lies within the feature's extent, in raster order, as
    /// `(i, j, dx, dy, r2)`: column, row, offset of the pixel centre from the feature's centre
    /// in mm, and its squared distance. The one place that walks a feature's footprint, so
    /// drawing and measuring a feature see exactly the same pixels.
    pub(crate) fn pixels(
        &self,
        ppm: f64,
        width: usize,
        height: usize,
    ) -> impl Iterator<Item = (usize, usize, f64, f64, f64)> + '_ {
        // Pixel i's centre is at (i + 0.5)/ppm mm, so it can be within the extent only for
        // (x − e)·ppm − 0.5 ≤ i ≤ (x + e)·ppm − 0.5.
        let x0 = (((self.x - self.extent) * ppm - 0.5).floor().max(0.0)) as usize;
        let y0 = (((self.y - self.extent) * ppm - 0.5).floor().max(0.0)) as usize;
        let x1 = ((((self.x + self.extent) * ppm - 0.5).ceil()) as usize).min(width - 1);
        let y1 = ((((self.y + self.extent) * ppm - 0.5).ceil()) as usize).min(height - 1);
        (y0..=y1).flat_map(move |j| {
            let dy = (j as f64 + 0.5) / ppm - self.y;
            (x0..=x1).filter_map(move |i| {
                let dx = (i as f64 + 0.5) / ppm - self.x;
                let r2 = dx * dx + dy * dy;
                (r2 <= self.extent * self.extent).then_some((i, j, dx, dy, r2))
            })
        })
    }
}

/// Cut-off radius (in units of the half-maximum radius) of a super-Gaussian `exp(−ln2·ρⁿ)`:
/// `(ln(1000)/ln2)^(1/n)`, where it has fallen to 0.1% of its peak (the discontinuity left is
/// far below one 8-bit step), rounded up in the 4th decimal. Literal constants rather than
/// `powf`, so placements do not depend on the platform's math library.
fn super_gaussian_extent(order: f64) -> f64 {
    match order {
        4.0 => 1.7768,
        6.0 => 1.4670,
        _ => unreachable!("profile orders are 4 and 6"),
    }
}

/// Cut-off radius (in units of the nominal radius) of a scar profile `exp(−ln10·ρᵏ)`:
/// `(ln(1000)/ln10)^(1/k) = 3^(1/k)`, rounded up as above.
fn scar_extent(kind: ScarKind) -> f64 {
    match kind {
        ScarKind::Icepick => 2.0801,
        ScarKind::Rolling => 1.7321,
        ScarKind::Boxcar => 1.1162,
    }
}

/// Super-Gaussian orders of the profiles (see the spec docs).
pub(crate) const PORE_ORDER: f64 = 4.0;
pub(crate) const MACULE_ORDER: f64 = 6.0;
pub(crate) const ERYTHEMA_ORDER: f64 = 4.0;

/// Draws every feature's parameters and position. Largest first (erythema, macules, rolling,
/// boxcar, icepick scars, pores) so the big ones find room; each is placed by rejection
/// sampling: a uniformly drawn centre is kept when its extent stays `margin_mm` inside the
/// border and `gap_mm` clear of every extent already placed. Greedy placement can paint itself
/// into a corner (a big patch in the middle of a small phantom), so a stuck layout is redrawn
/// from scratch, continuing the same random stream, up to [`MAX_LAYOUTS`] times.
pub(crate) fn place(
    spec: &PhantomSpec,
    width_mm: f64,
    height_mm: f64,
    rng: &mut Rng,
) -> Result<Vec<Feature>> {
    let mut last = None;
    for _ in 0..MAX_LAYOUTS {
        match try_layout(spec, width_mm, height_mm, rng) {
            Ok(features) => return Ok(features),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(Error::InvalidSetting { name, message }) => Error::InvalidSetting {
            name,
            message: format!("{message} (tried {MAX_LAYOUTS} layouts)"),
        },
        Some(e) => e,
        None => unreachable!("MAX_LAYOUTS > 0"),
    })
}

/// One greedy layout attempt (see [`place`]).
fn try_layout(
    spec: &PhantomSpec,
    width_mm: f64,
    height_mm: f64,
    rng: &mut Rng,
) -> Result<Vec<Feature>> {
    let mut placed: Vec<Feature> = Vec::new();
    let groups: [(&'static str, u32); 6] = [
        ("erythema.count", spec.erythema.count),
        ("pigment.count", spec.pigment.count),
        ("scars.rolling.count", spec.scars.rolling.count),
        ("scars.boxcar.count", spec.scars.boxcar.count),
        ("scars.icepick.count", spec.scars.icepick.count),
        ("pores.count", spec.pores.count),
    ];
    for (group, (name, count)) in groups.into_iter().enumerate() {
        for i in 0..count {
            let shape = match group {
                0 => {
                    let e = &spec.erythema;
                    let diameter = rng.range(e.diameter_mm);
                    let excess = rng.range(e.hemoglobin_excess);
                    let blob = Blob::new(diameter, e.irregularity, rng);
                    Shape::Erythema {
                        diameter,
                        excess,
                        blob,
                    }
                }
                1 => {
                    let p = &spec.pigment;
                    let diameter = rng.range(p.diameter_mm);
                    let excess = rng.range(p.melanin_excess);
                    let blob = Blob::new(diameter, p.irregularity, rng);
                    Shape::Macule {
                        diameter,
                        excess,
                        blob,
                    }
                }
                2..=4 => {
                    let (kind, s) = match group {
                        2 => (ScarKind::Rolling, &spec.scars.rolling),
                        3 => (ScarKind::Boxcar, &spec.scars.boxcar),
                        _ => (ScarKind::Icepick, &spec.scars.icepick),
                    };
                    let diameter = rng.range(s.diameter_mm);
                    let depth = rng.range(s.depth_mm);
                    Shape::Scar {
                        kind,
                        diameter,
                        depth,
                    }
                }
                _ => {
                    let p = &spec.pores;
                    let diameter = rng.range(p.diameter_mm);
                    let contrast = rng.range(p.contrast);
                    Shape::Pore { diameter, contrast }
                }
            };
            let extent = match &shape {
                Shape::Pore { diameter, .. } => 0.5 * diameter * super_gaussian_extent(PORE_ORDER),
                Shape::Macule { blob, .. } => blob.r_max() * super_gaussian_extent(MACULE_ORDER),
                Shape::Erythema { blob, .. } => {
                    blob.r_max() * super_gaussian_extent(ERYTHEMA_ORDER)
                }
                Shape::Scar { kind, diameter, .. } => 0.5 * diameter * scar_extent(*kind),
            };
            let lo = spec.margin_mm + extent;
            let (hi_x, hi_y) = (width_mm - lo, height_mm - lo);
            if hi_x < lo || hi_y < lo {
                return Err(Error::InvalidSetting {
                    name,
                    message: format!(
                        "a feature reaching {:.2} mm from its centre does not fit inside a \
                         {width_mm:.1} × {height_mm:.1} mm phantom with a {} mm margin; enlarge \
                         the phantom or reduce the feature size",
                        extent, spec.margin_mm
                    ),
                });
            }
            let mut found = None;
            for _ in 0..MAX_ATTEMPTS {
                let x = rng.range([lo, hi_x]);
                let y = rng.range([lo, hi_y]);
                let clear = placed.iter().all(|f| {
                    let d = extent + f.extent + spec.gap_mm;
                    (f.x - x) * (f.x - x) + (f.y - y) * (f.y - y) >= d * d
                });
                if clear {
                    found = Some((x, y));
                    break;
                }
            }
            let Some((x, y)) = found else {
                return Err(Error::InvalidSetting {
                    name,
                    message: format!(
                        "could place only {i} of {count} without overlap in a {width_mm:.1} × \
                         {height_mm:.1} mm phantom ({} features already placed, gap {} mm); \
                         lower the counts or sizes, or enlarge the phantom",
                        placed.len(),
                        spec.gap_mm
                    ),
                });
            };
            placed.push(Feature {
                shape,
                x,
                y,
                extent,
            });
        }
    }
    Ok(placed)
}

/// The rasters features are drawn into, all row-major `width × height`, pixel `(i, j)` centred
/// at `((i + ½)/px_per_mm, (j + ½)/px_per_mm)` mm.
pub(crate) struct Fields {
    pub width: usize,
    pub height: usize,
    pub px_per_mm: f64,
    /// Melanin density.
    pub melanin: Vec<f32>,
    /// Hemoglobin density.
    pub hemoglobin: Vec<f32>,
    /// Multiplicative shading other than relief: texture × pores.
    pub shade: Vec<f32>,
    /// Relief gradient ∂z/∂x, ∂z/∂y (z = height in mm, towards the camera; x right, y down).
    pub grad_x: Vec<f32>,
    pub grad_y: Vec<f32>,
    /// Ambient occlusion (1 = open sky).
    pub occlusion: Vec<f32>,
    /// One mask per [`Layer`], 0 or 255.
    pub masks: [Vec<u8>; 4],
}

/// Per-feature results of rasterization.
#[derive(Debug, Clone, Default)]
pub(crate) struct Drawn {
    /// Pixels set in the feature's mask.
    pub mask_pixels: u64,
}

impl Fields {
    /// Draws one feature; returns how many mask pixels it set.
    pub(crate) fn draw(&mut self, f: &Feature) -> Drawn {
        let layer = f.layer() as usize;
        let mut mask_pixels = 0;
        for (i, j, dx, dy, r2) in f.pixels(self.px_per_mm, self.width, self.height) {
            let p = j * self.width + i;
            let inside = match &f.shape {
                Shape::Pore { diameter, contrast } => {
                    let r = 0.5 * diameter;
                    let rho2 = r2 / (r * r);
                    let profile = (-LN_2 * rho2 * rho2).exp();
                    self.shade[p] *= (1.0 - contrast * profile) as f32;
                    rho2 <= 1.0
                }
                Shape::Macule { excess, blob, .. } => {
                    let rho = blob.rho(dx, dy);
                    self.melanin[p] += (excess * (-LN_2 * rho.powi(6)).exp()) as f32;
                    rho <= 1.0
                }
                Shape::Erythema { excess, blob, .. } => {
                    let rho = blob.rho(dx, dy);
                    self.hemoglobin[p] += (excess * (-LN_2 * rho.powi(4)).exp()) as f32;
                    rho <= 1.0
                }
                Shape::Scar {
                    kind,
                    diameter,
                    depth,
                } => {
                    let a = 0.5 * diameter;
                    let k = kind.profile_exponent();
                    let r = r2.sqrt();
                    let rho = r / a;
                    let e = (-LN_10 * rho.powf(k)).exp();
                    let d = depth * e;
                    // z = −d(r); ∂z/∂r = D·ln10·k·ρ^(k−1)·e / a, pointing outwards.
                    if r > 0.0 {
                        let dzdr = depth * LN_10 * k * rho.powf(k - 1.0) * e / a;
                        self.grad_x[p] += (dzdr * dx / r) as f32;
                        self.grad_y[p] += (dzdr * dy / r) as f32;
                    }
                    self.occlusion[p] *= (a * a / (a * a + d * d)) as f32;
                    rho <= 1.0
                }
            };
            if inside {
                self.masks[layer][p] = 255;
                mask_pixels += 1;
            }
        }
        Drawn { mask_pixels }
    }
}

/// `∫₀¹ 2ρ·exp(−ln2·ρⁿ) dρ`: the mean of a super-Gaussian profile over its own half-maximum
/// region, for any boundary `R(θ)` (the area element is `R(θ)²ρ dρ dθ`, so the angular part
/// cancels). Composite Simpson's rule, 2000 intervals.
pub(crate) fn mean_over_mask(order: f64) -> f64 {
    let n = 2000;
    let f = |rho: f64| 2.0 * rho * (-LN_2 * rho.powf(order)).exp();
    let h = 1.0 / n as f64;
    let mut s = f(0.0) + f(1.0);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fraction of its peak at which a feature is cut off.
    const CUTOFF: f64 = 1e-3;

    #[test]
    fn blob_area_is_the_equivalent_circle() {
        let mut rng = Rng::new(1, 1);
        let blob = Blob::new(4.0, 0.3, &mut rng);
        // Integrate the boundary numerically: ½ ∮ R(θ)² dθ.
        let n = 20_000;
        let area: f64 = (0..n)
            .map(|i| {
                let t = TAU * i as f64 / n as f64;
                let (dx, dy) = (t.cos(), t.sin());
                let r = 1.0 / blob.rho(dx, dy);
                0.5 * r * r * TAU / n as f64
            })
            .sum();
        assert!((area - std::f64::consts::PI * 4.0).abs() < 1e-6, "{area}");
        assert!(blob.r_max() >= 1.0 / blob.rho(1.0, 0.0));
    }

    #[test]
    fn extent_constants_bound_the_cutoff() {
        for (order, factor) in [
            (4.0, super_gaussian_extent(4.0)),
            (6.0, super_gaussian_extent(6.0)),
        ] {
            let exact = ((1.0 / CUTOFF).ln() / LN_2).powf(1.0 / order);
            assert!(factor >= exact && factor - exact < 1e-4, "{order}");
        }
        for kind in [ScarKind::Icepick, ScarKind::Boxcar, ScarKind::Rolling] {
            let exact = ((1.0 / CUTOFF).ln() / LN_10).powf(1.0 / kind.profile_exponent());
            let factor = scar_extent(kind);
            assert!(factor >= exact && factor - exact < 1e-4, "{kind:?}");
        }
    }

    #[test]
    fn mean_profile_constants() {
        // Order → ∞ gives a flat disk (mean 1); order 4 is ≈ 0.82.
        assert!((mean_over_mask(200.0) - 1.0).abs() < 0.01);
        let m4 = mean_over_mask(4.0);
        assert!(m4 > 0.75 && m4 < 0.9, "{m4}");
    }
}

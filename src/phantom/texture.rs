//! Band-limited background noise (see [`super::TextureSpec`]).
//!
//! Cubic B-spline value noise: random values on a square lattice, interpolated with the uniform
//! cubic B-spline kernel (C² smooth, its spectrum falls as sinc⁴, so almost nothing is left at
//! wavelengths below the lattice spacing; Unser, "Splines: a perfect fit for signal and image
//! processing", IEEE SPM 16(6), 1999). Lattice values are uniform draws and the interpolation
//! uses only `+` and `×`, so the field is bit-identical on every platform.

use super::rng::Rng;

/// Cubic B-spline weights for the four lattice nodes around fractional position `t ∈ [0, 1)`.
fn bspline_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    let s = 1.0 - t;
    [
        s * s * s / 6.0,
        (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
        (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
        t3 / 6.0,
    ]
}

/// Adds `amplitude ×` one octave of value noise with lattice spacing `spacing_px` (pixels) to
/// `field` (row-major `width × height`). Pixel centres sit at `(x + 0.5, y + 0.5)`.
fn add_octave(
    field: &mut [f64],
    width: usize,
    height: usize,
    spacing_px: f64,
    amplitude: f64,
    rng: &mut Rng,
) {
    let nx = (width as f64 / spacing_px).ceil() as usize + 4;
    let ny = (height as f64 / spacing_px).ceil() as usize + 4;
    let lattice: Vec<f64> = (0..nx * ny).map(|_| 2.0 * rng.uniform() - 1.0).collect();
    // Per column: first lattice index and weights (node i−1 .. i+2, shifted by one so that
    // the index never goes negative).
    let columns: Vec<(usize, [f64; 4])> = (0..width)
        .map(|x| {
            let u = (x as f64 + 0.5) / spacing_px;
            let i = u.floor();
            (i as usize, bspline_weights(u - i))
        })
        .collect();
    // Lattice rows interpolated along x, computed once per lattice row.
    let mut rows = vec![0.0; ny * width];
    for j in 0..ny {
        let lrow = &lattice[j * nx..(j + 1) * nx];
        for (x, (i, w)) in columns.iter().enumerate() {
            rows[j * width + x] =
                w[0] * lrow[*i] + w[1] * lrow[i + 1] + w[2] * lrow[i + 2] + w[3] * lrow[i + 3];
        }
    }
    for y in 0..height {
        let v = (y as f64 + 0.5) / spacing_px;
        let j = v.floor();
        let w = bspline_weights(v - j);
        let j = j as usize;
        let out = &mut field[y * width..(y + 1) * width];
        let r: [&[f64]; 4] = std::array::from_fn(|k| &rows[(j + k) * width..(j + k + 1) * width]);
        for x in 0..width {
            out[x] +=
                amplitude * (w[0] * r[0][x] + w[1] * r[1][x] + w[2] * r[2][x] + w[3] * r[3][x]);
        }
    }
}

/// A zero-mean field with standard deviation exactly `std` over the image (all zeros when
/// `std` is 0): two octaves, spacing `scale_px` and `scale_px / 2.5`, amplitudes 1 and 0.5.
pub(crate) fn noise_field(
    width: usize,
    height: usize,
    scale_px: f64,
    std: f64,
    rng: &mut Rng,
) -> Vec<f64> {
    let mut field = vec![0.0; width * height];
    // Draw the lattices even when std is 0, so that switching one field off does not change
    // the others (each field has its own stream anyway; this keeps the stream's use fixed).
    add_octave(&mut field, width, height, scale_px, 1.0, rng);
    add_octave(&mut field, width, height, scale_px / 2.5, 0.5, rng);
    if std == 0.0 {
        field.fill(0.0);
        return field;
    }
    let n = field.len() as f64;
    let mean = field.iter().sum::<f64>() / n;
    let var = field.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let scale = if var > 0.0 { std / var.sqrt() } else { 0.0 };
    for v in &mut field {
        *v = (*v - mean) * scale;
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bspline_weights_partition_unity() {
        for i in 0..10 {
            let w = bspline_weights(f64::from(i) / 10.0);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn field_has_requested_moments_and_is_smooth() {
        let mut rng = Rng::new(3, 0);
        let (w, h) = (200, 150);
        let f = noise_field(w, h, 40.0, 0.02, &mut rng);
        let n = f.len() as f64;
        let mean = f.iter().sum::<f64>() / n;
        let std = (f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 1e-12 && (std - 0.02).abs() < 1e-9);
        // Neighbouring pixels differ by a small fraction of the std (band-limited).
        let max_step = (0..h)
            .flat_map(|y| (1..w).map(move |x| (y, x)))
            .map(|(y, x)| (f[y * w + x] - f[y * w + x - 1]).abs())
            .fold(0.0, f64::max);
        assert!(max_step < 0.01, "{max_step}");
    }
}

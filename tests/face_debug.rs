// TEMPORARY visual check tool, deleted before hand-over.
use std::path::Path;

use dermatrack::face::FaceModels;
use dermatrack::io::{LoadOptions, load_photo};
use image::{Rgb, RgbImage};

const FONT: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, k: i32, c: Rgb<u8>) {
    for (n, ch) in s.chars().enumerate() {
        let d = ch.to_digit(10).unwrap() as usize;
        for (row, bits) in FONT[d].iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..k {
                        for dx in 0..k {
                            let px = x + (n as i32 * 4 + col) * k + dx;
                            let py = y + row as i32 * k + dy;
                            if px >= 0
                                && py >= 0
                                && (px as u32) < img.width()
                                && (py as u32) < img.height()
                            {
                                img.put_pixel(px as u32, py as u32, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[ignore]
fn draw_indices() {
    let name = std::env::var("PHOTO").unwrap_or("london_038_neutral.jpg".into());
    let zoom: f32 = std::env::var("ZOOM")
        .ok()
        .and_then(|z| z.parse().ok())
        .unwrap_or(3.0);
    let photo = load_photo(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/photos")
            .join(&name),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut models =
        FaceModels::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"), 1).unwrap();
    let dets = models.detect(&photo.pixels).unwrap();
    println!("{dets:?}");
    let lm = models.landmarks(&photo.pixels, &dets[0]).unwrap();
    println!(
        "presence {} pose {:?} ipd {} width {}",
        lm.presence,
        lm.pose(),
        lm.interpupillary_px(),
        lm.face_width_px()
    );
    let json: Vec<[f32; 3]> = lm.points.clone();
    std::fs::write(
        format!("/tmp/lm_{name}.json"),
        serde_json::to_string(&json).unwrap(),
    )
    .unwrap();
    // Crop region of interest, upscaled.
    let roi: Vec<f32> = std::env::var("ROI")
        .unwrap_or("400,450,950,1050".into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let (x0, y0, x1, y1) = (roi[0], roi[1], roi[2], roi[3]);
    let (w, h) = (((x1 - x0) * zoom) as u32, ((y1 - y0) * zoom) as u32);
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let p = photo.pixels.get_pixel(
            ((x as f32 / zoom + x0) as u32).min(photo.width() - 1),
            ((y as f32 / zoom + y0) as u32).min(photo.height() - 1),
        );
        Rgb(p.0.map(|v| (v * 200.0) as u8))
    });
    let only: Option<Vec<usize>> = std::env::var("ONLY")
        .ok()
        .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect());
    for (i, p) in lm.points.iter().enumerate() {
        if let Some(o) = &only
            && !o.contains(&i)
        {
            continue;
        }
        let (x, y) = (((p[0] - x0) * zoom) as i32, ((p[1] - y0) * zoom) as i32);
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (px, py) = (x + dx, y + dy);
                if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                    img.put_pixel(px as u32, py as u32, Rgb([255, 0, 0]));
                }
            }
        }
        text(
            &mut img,
            x + 2,
            y - 4,
            &i.to_string(),
            2,
            Rgb([255, 255, 0]),
        );
    }
    let out = std::env::var("OUT").unwrap_or("/tmp/indices.png".into());
    img.save(&out).unwrap();
}

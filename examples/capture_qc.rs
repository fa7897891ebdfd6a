//! Measures the capture-quality statistics on sharp and deliberately degraded photos: the
//! numbers behind the documented thresholds in `src/quality.rs` (README, "Capture quality").
//!
//! `cargo run --release --example capture_qc [PHOTO ...]`
//!
//! Without arguments it uses every `*.jpg` in `../shared/photos/` (the bundled portrait when
//! that folder is missing), and phantoms of every tone.

use std::path::PathBuf;

use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::io::{LoadOptions, load_photo};
use dermatrack::phantom::{PhantomSpec, TonePreset, render};
use dermatrack::quality::{sharpness, skin_mask};
use dermatrack::regions::RegionMode;
use image::Rgb32FImage;

fn blurred(img: &Rgb32FImage, sigma_px: f64) -> Rgb32FImage {
    imageproc::filter::gaussian_blur_f32(img, sigma_px as f32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut photos: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if photos.is_empty() {
        if let Ok(dir) = std::fs::read_dir(root.join("../shared/photos")) {
            let mut shared: Vec<PathBuf> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
                .collect();
            shared.sort();
            photos.extend(shared);
        }
        if photos.is_empty() {
            photos.push(root.join("fixtures/faces/london_038_neutral.jpg"));
        }
    }
    let mut analyzer = Analyzer::new(AnalyzeOptions {
        regions: RegionMode::Face,
        intra_threads: 2,
        ..AnalyzeOptions::default()
    })?;
    let sigmas_mm = [0.0, 0.25, 0.5, 1.0];
    println!(
        "| photo | px/mm | sharpness, sharp | σ 0.25 mm | σ 0.5 mm | σ 1 mm | skin hue° | chroma |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for path in &photos {
        let photo = match load_photo(path, &LoadOptions::default()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let located = match analyzer.locate(photo) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let img = &located.checked.photo.pixels;
        let mask = skin_mask(&located.regions.regions, img.width(), img.height());
        let px_per_mm = located.regions.scale.px_per_mm;
        let row: Vec<String> = sigmas_mm
            .iter()
            .map(|&s| {
                let img = if s > 0.0 {
                    blurred(img, s * px_per_mm)
                } else {
                    img.clone()
                };
                sharpness(&img, &mask, px_per_mm).map_or("-".into(), |v| format!("{v:.2}"))
            })
            .collect();
        let (hue, chroma) =
            dermatrack::quality::skin_hue_chroma(img, &mask).unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {} | {px_per_mm:.2} | {} | {hue:.1} | {chroma:.1} |",
            path.file_name().unwrap_or_default().to_string_lossy(),
            row.join(" | ")
        );
    }
    for preset in TonePreset::ALL {
        let spec = PhantomSpec::with_tone(preset);
        let phantom = render(&spec)?;
        let img = &phantom.image;
        let mask = image::GrayImage::from_pixel(img.width(), img.height(), image::Luma([255]));
        let row: Vec<String> = sigmas_mm
            .iter()
            .map(|&s| {
                let img = if s > 0.0 {
                    blurred(img, s * spec.px_per_mm)
                } else {
                    img.clone()
                };
                sharpness(&img, &mask, spec.px_per_mm).map_or("-".into(), |v| format!("{v:.2}"))
            })
            .collect();
        let (hue, chroma) =
            dermatrack::quality::skin_hue_chroma(img, &mask).unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| phantom {} | {:.2} | {} | {hue:.1} | {chroma:.1} |",
            preset.name(),
            spec.px_per_mm,
            row.join(" | ")
        );
    }
    Ok(())
}

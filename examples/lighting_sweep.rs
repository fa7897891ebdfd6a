//! Scar and pore counts on clean phantoms lit from different directions and elevations:
//! the relief detector must not depend on the phantom generator's default light.
//!
//! `cargo run --release --example lighting_sweep [SEEDS]` (default: 1 2)

use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::phantom::{PhantomSpec, TonePreset};
use dermatrack::validation::compare;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seeds: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let seeds = if seeds.is_empty() { vec![1, 2] } else { seeds };
    let mut analyzer = Analyzer::new(AnalyzeOptions {
        intra_threads: 2,
        ..AnalyzeOptions::default()
    })?;
    println!("| tone | seed | azimuth° | elevation° | scars (meas/true) | pores (meas/true) |");
    println!("|---|---|---|---|---|---|");
    for preset in [TonePreset::Light, TonePreset::Tan, TonePreset::Dark] {
        for &seed in &seeds {
            for (azimuth, elevation) in [
                (135.0, 45.0),
                (90.0, 45.0),
                (0.0, 45.0),
                (270.0, 45.0),
                (135.0, 30.0),
                (135.0, 60.0),
            ] {
                let mut spec = PhantomSpec::with_tone(preset);
                spec.seed = seed;
                spec.lighting.azimuth_deg = azimuth;
                spec.lighting.elevation_deg = elevation;
                let c = compare(&mut analyzer, &spec, preset.name())?;
                println!(
                    "| {} | {seed} | {azimuth:.0} | {elevation:.0} | {:.0}/{:.0} | {:.0}/{:.0} |",
                    preset.name(),
                    c.scar_count().measured,
                    c.scar_count().truth,
                    c.pore_count().measured,
                    c.pore_count().truth,
                );
            }
        }
    }
    Ok(())
}

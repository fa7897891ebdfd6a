//! Prints measured-vs-true metrics on phantoms of every tone preset (clean, with nuisances, and
//! with melasma-sized patches): the table quoted in the README.
//!
//! `cargo run --release --example accuracy_report [SEED]`

use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::phantom::{PhantomSpec, TonePreset};
use dermatrack::validation::compare;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    let mut analyzer = Analyzer::new(AnalyzeOptions {
        intra_threads: 2,
        ..AnalyzeOptions::default()
    })?;
    println!(
        "| phantom | pores (meas/true) | pore Ø mm | pigment area % | pigment spots | scars | redness area % | ITA° (meas/true) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for preset in TonePreset::ALL {
        for variant in ["clean", "nuisance", "wide patches", "wide patches nuisance"] {
            let mut spec = PhantomSpec::with_tone(preset);
            spec.seed = seed;
            if variant.starts_with("wide patches") {
                // Melasma-sized: 10–15-mm macules, 12–20-mm erythema on a 90-mm frame.
                (spec.width_mm, spec.height_mm) = (90.0, 90.0);
                spec.pigment.diameter_mm = [10.0, 15.0];
                spec.erythema.diameter_mm = [12.0, 20.0];
            }
            if variant.ends_with("nuisance") {
                spec.nuisances.exposure = 1.25;
                spec.nuisances.white_balance = [1.08, 1.0, 0.9];
                spec.nuisances.gradient_strength = 0.15;
                spec.nuisances.noise_sigma = 0.004;
                spec.nuisances.jpeg_quality = Some(85);
            }
            let c = compare(&mut analyzer, &spec, preset.name())?;
            println!(
                "| {} {variant} | {:.0}/{:.0} | {:.3}/{:.3} | {:.2}/{:.2} | {:.0}/{:.0} | {:.0}/{:.0} | {:.2}/{:.2} | {:.1}/{:.1} |",
                preset.name(),
                c.pore_count().measured,
                c.pore_count().truth,
                c.pore_diameter().measured,
                c.pore_diameter().truth,
                c.pigment_area_pct().measured,
                c.pigment_area_pct().truth,
                c.pigment_count().measured,
                c.pigment_count().truth,
                c.scar_count().measured,
                c.scar_count().truth,
                c.redness_area_pct().measured,
                c.redness_area_pct().truth,
                c.ita().measured,
                c.ita().truth,
            );
        }
    }
    Ok(())
}

//! Accuracy on phantoms with known truth, rendered in the test run (`dermatrack::phantom`,
//! written independently of the analysis). Tolerances are those of the skin-model issue and
//! are written next to each assertion.

use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::metrics::RegionMetrics;
use dermatrack::phantom::{Phantom, PhantomSpec, TonePreset};
use dermatrack::validation::{Comparison, compare, compare_rendered};

/// Light, medium and dark skin (ITA° ≈ 48, 19 and −40).
const TONES: [TonePreset; 3] = [TonePreset::Light, TonePreset::Tan, TonePreset::Dark];
const SEEDS: [u64; 2] = [11, 12];

fn analyzer() -> Analyzer {
    Analyzer::new(AnalyzeOptions {
        intra_threads: 2,
        ..AnalyzeOptions::default()
    })
    .expect("skin model loads")
}

fn spec(tone: TonePreset, seed: u64) -> PhantomSpec {
    PhantomSpec {
        seed,
        ..PhantomSpec::with_tone(tone)
    }
}

/// The pigment failures of one phantom: area more than 2 percentage points or
/// `max_relative` off, or any macule missed or counted twice.
fn pigment_failures(c: &Comparison, label: &str, max_relative: f64) -> Vec<String> {
    let (area, spots) = (c.pigment_area_pct(), c.pigment_count());
    let mut failures = Vec::new();
    if area.error().abs() > 2.0 || area.relative_error() > max_relative {
        failures.push(format!("{label}: pigment area {area:?}"));
    }
    if spots.error() != 0.0 {
        failures.push(format!("{label}: pigment spots {spots:?}"));
    }
    failures
}

/// The accuracy targets of one phantom's measurement, other than the scar count (which has
/// tests of its own): every failure, labelled.
fn target_failures(c: &Comparison, label: &str) -> Vec<String> {
    let mut failures = Vec::new();
    // Pore count error ≤ 10%.
    if c.pore_count().relative_error() > 0.10 {
        failures.push(format!("{label}: pores {:?}", c.pore_count()));
    }
    // Mean pore diameter within 15% (sizes are measured at half-max).
    if c.pore_diameter().relative_error() > 0.15 {
        failures.push(format!("{label}: pore diameter {:?}", c.pore_diameter()));
    }
    // Pigmented area error ≤ 2 percentage points, and every macule found once.
    if c.pigment_area_pct().error().abs() > 2.0 {
        failures.push(format!("{label}: pigment area {:?}", c.pigment_area_pct()));
    }
    if c.pigment_count().error() != 0.0 {
        failures.push(format!("{label}: pigment spots {:?}", c.pigment_count()));
    }
    // ITA° error ≤ 3°.
    if c.ita().error().abs() > 3.0 {
        failures.push(format!("{label}: ITA {:?}", c.ita()));
    }
    // Erythema area within 1 percentage point.
    if c.redness_area_pct().error().abs() > 1.0 {
        failures.push(format!("{label}: redness area {:?}", c.redness_area_pct()));
    }
    failures
}

#[test]
fn clean_phantoms_meet_the_accuracy_targets_on_every_tone() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            let c = compare(&mut a, &spec(tone, seed), tone.name()).unwrap();
            failures.extend(target_failures(&c, &format!("{} seed {seed}", tone.name())));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The phantom of `s` with its samples rounded to 8 bits per channel, as a PNG or a camera's
/// JPEG stores them (the phantom's own file is 16-bit).
fn rendered_8_bit(s: &PhantomSpec) -> Phantom {
    let mut phantom = dermatrack::phantom::render(s).expect("phantom renders");
    for v in phantom.image.iter_mut() {
        *v = (*v * 255.0).round() / 255.0;
    }
    phantom
}

/// Photos come as 8-bit files, and on dark skin blue is 15–20 codes deep, where one code is
/// 0.07 OD. Every target holds on the phantoms rounded to 8 bits (seeds 11–15, each tone), and
/// so does the scar count (error ≤ 15%) on light and tan skin; on dark skin it is a known gap
/// (`eight_bit_dark_phantoms_keep_the_scar_count`, below).
#[test]
fn eight_bit_phantoms_meet_the_accuracy_targets() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in 11..=15 {
            let label = format!("{} seed {seed}, 8 bits", tone.name());
            let c = compare_rendered(&mut a, rendered_8_bit(&spec(tone, seed)), &label).unwrap();
            failures.extend(target_failures(&c, &label));
            if tone != TonePreset::Dark && c.scar_count().relative_error() > 0.15 {
                failures.push(format!("{label}: scars {:?}", c.scar_count()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Known gap: dark skin's blue is 15–20 codes deep, where one 8-bit code is 0.07 OD, and the
/// Tsumura shading weighs blue density by −1.09. Rounding to 8 bits raised the relief band's
/// robust σ from 0.0045 (16-bit) to 0.0112–0.0128 on seeds 11–15 (temporary debug prints), and
/// the candidate and wall thresholds (2σ, 3σ) with it. Shallow rolling scars (0.07–0.13 mm
/// deep) fall below them: 6, 5, 5, 7, 6 scars for 7 (16-bit: 6, 7, 7, 7, 7; printed by
/// `cargo test --release --test accuracy -- --ignored eight_bit_dark --nocapture`). Neither the
/// noise-weighted relief (the photo reads no pixel noise) nor the band regression
/// (`Relief::from_band_covariance`: it would remove 16–27% of the variance) applies. Light and
/// tan skin keep their counts (above).
#[test]
#[ignore = "known gap, issue 3: 8-bit rounding of dark skin's blue costs shallow rolling scars"]
fn eight_bit_dark_phantoms_keep_the_scar_count() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in 11..=15 {
        let label = format!("dark seed {seed}, 8 bits");
        let s = spec(TonePreset::Dark, seed);
        let sixteen = compare(&mut a, &s, "16 bits")
            .unwrap()
            .scar_count()
            .measured;
        let c = compare_rendered(&mut a, rendered_8_bit(&s), &label).unwrap();
        println!("{label}: scars {:?} (16 bits: {sixteen})", c.scar_count());
        // Scar count error ≤ 15%.
        if c.scar_count().relative_error() > 0.15 {
            failures.push(format!("{label}: scars {:?}", c.scar_count()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Known gap: JPEG costs shallow rolling scars on every tone, even at q95. A JPEG stores 8-bit
/// Y, Cb and Cr; a relief's grey change of a few percent moves Cb and Cr by a tenth of a code,
/// which their rounding and quantization drop, so the photo keeps only its luma: equal code
/// steps in R, G and B. In optical density an equal code step is largest where the code is
/// smallest, blue on skin, and the Tsumura shading row `T` = (1.19, 0.90, −1.09) then cancels
/// much of it. With the chroma all lost it reads (Σ L_c/d_c)·(Σ T_c·d_c) of the relief, `L`
/// the luma weights (0.299, 0.587, 0.114) and `d_c` = 2.4/(v_c + 14) one code's density at
/// code `v_c` (the sRGB curve's slope): at these phantoms' median codes 0.66 on light skin
/// (197, 160, 138), 0.57 intermediate, 0.47 tan (174, 129, 100) and 0.16 brown (144, 96, 62),
/// while the mean of the red and green densities still reads 0.93–0.96. Measured on the lit
/// walls of rolling scars (an 8-bit PNG against the same phantom at q95 or q75, scar band of
/// each density, a throwaway script): light seed 12's 3.2-mm scar 0.0218 → 0.0165 (q95),
/// intermediate seed 13's 2.8-mm scar 0.0289 → 0.0176 (q95), tan seed 15's 4.6-mm scar
/// 0.0407 → 0.0172 (q75); their red-and-green lit walls 0.0241 →
/// 0.0233, 0.0272 → 0.0278, 0.0315 → 0.0246. The weaker wall misses the wall threshold, or the
/// shading misses the grey test's lower bound against red and green. The same JPEG rounding
/// also raises the band's robust σ (light seed 12: 0.0052 in 8 bits, 0.0066 at q95), and the
/// thresholds with it. Tried with scratch code, not kept: dequantizing the decoded Y, Cb and
/// Cr planes (Gaussian σ 3 px, clamped to ±0.6 code, three rounds) missed 38 scars where the
/// JPEGs missed 36 (the 24 phantoms at q95); skipping the grey test found 7 of the 73 missed
/// at both qualities and added 74 false ones; a chroma-blind relief for JPEGs (weights `k`
/// with Σ k = 1 that also read the relief whole, or halfway from the Tsumura row's reading,
/// when the chroma is lost, and let in the least melanin and hemoglobin: half the melanin
/// band) missed more scars read whole (28 → 47 scars off at q95) and mended little halfway
/// (28 → 26 at q95, 34 → 31 at q75), while on the independent renderer's JPEGs, whose
/// melanin lies 16° off the model's, it invented scars on light skin (summed scar error over
/// the five seeds' 390 images 100 → 110). The counts per seed are printed by
/// `cargo test --release --test accuracy -- --ignored jpeg_keeps --nocapture`: outside 15% on
/// 8 of the 24 phantoms at q95 and 12 at q75, against 1 as 8-bit PNGs.
#[test]
#[ignore = "known gap, issue 3: JPEG's lost chroma weakens shallow relief in the Tsumura shading"]
fn jpeg_keeps_the_shallow_scars_of_light_and_medium_skin() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in [
        TonePreset::Light,
        TonePreset::Intermediate,
        TonePreset::Tan,
        TonePreset::Brown,
    ] {
        for seed in 11..=16 {
            let s = spec(tone, seed);
            let label = format!("{} seed {seed}", tone.name());
            let eight = compare_rendered(&mut a, rendered_8_bit(&s), &label).unwrap();
            let mut line = format!("{label}: 8 bits {:?}", eight.scar_count());
            for quality in [95, 75] {
                let mut s = s.clone();
                s.nuisances.jpeg_quality = Some(quality);
                let scars = compare(&mut a, &s, &label).unwrap().scar_count();
                line += &format!(", q{quality} {} of {}", scars.measured, scars.truth);
                // Scar count error ≤ 15%.
                if scars.relative_error() > 0.15 {
                    failures.push(format!("{label} q{quality}: scars {scars:?}"));
                }
            }
            println!("{line}");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Scar count error ≤ 15%. Shallow rolling scars (depth 0.05–0.15 mm) are found by their
/// relief dipole (a lit wall next to a shadowed one in `scar_response`), which pores lack
/// (within 15% on these seeds and tones).
#[test]
fn scar_counts_within_15_percent() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            let c = compare(&mut a, &spec(tone, seed), tone.name()).unwrap();
            if c.scar_count().relative_error() > 0.15 {
                failures.push(format!(
                    "{} seed {seed}: scars {:?}",
                    tone.name(),
                    c.scar_count()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A rolling scar that shares its scar candidate with a boxcar scar beside it (seed 13: 2.7 mm
/// apart) is a lesion of its own: it holds its own relief dipole, a lit and a shadowed wall
/// whose shadowed peak is not the boxcar's flank. Further lesions in a candidate used to count
/// only with a dark floor, which shallow rolling scars lack: every tone counted 6 of 7.
#[test]
fn a_rolling_scar_beside_a_boxcar_is_counted() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TonePreset::ALL {
        let c = compare(&mut a, &spec(tone, 13), tone.name()).unwrap();
        if c.scar_count().error() != 0.0 {
            failures.push(format!("{}: scars {:?}", tone.name(), c.scar_count()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// JPEG's chroma rounding and 4:2:0 subsampling move the blue channel alone, and the Tsumura
/// shading leans on blue: at q85 they left scar-deep, scar-sized dips in `scar_response`,
/// most at macule edges. Relief darkens every channel alike, so a dip the red and green
/// densities do not share is not counted (`GREY_MIN_FRACTION` in `src/metrics.rs`). Before,
/// these 24 photos counted 51 scars too many (up to 11 for 7); the tolerance is the issue's
/// 15% (at most one extra for 7). Scars lost under JPEG are a known gap, so only extra scars
/// are judged here.
#[test]
fn jpeg_chroma_is_not_relief() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in [TonePreset::Light, TonePreset::Tan, TonePreset::Brown] {
        for seed in [11, 12, 13, 14] {
            for px_per_mm in [5.0, 10.0] {
                let mut s = spec(tone, seed).at_px_per_mm(px_per_mm);
                s.nuisances.jpeg_quality = Some(85);
                let c = compare(&mut a, &s, "jpeg q85").unwrap();
                let scars = c.scar_count();
                // Scar count error ≤ 15%, on the high side.
                if scars.measured > scars.truth * 1.15 {
                    failures.push(format!(
                        "{} seed {seed} @{px_per_mm}: scars {scars:?}",
                        tone.name()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Large, dark pores are pores and icepick scars are scars. The pores here are up to 0.45 mm
/// and 55% darker, as dark at pore scale as a shallow icepick, and many pass the scar tests;
/// the region's own pores tell them apart (`PIT_PORE_FACTOR` in `src/metrics.rs`). Before that
/// rule each tone counted 14 scars for 7, and 70 pores for 80 (7 of 7 and 80 of 80 with it).
#[test]
fn dark_pores_are_pores_and_icepicks_are_scars() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        let mut s = spec(tone, 31);
        s.pores.diameter_mm = [0.15, 0.45];
        s.pores.contrast = [0.30, 0.55];
        let c = compare(&mut a, &s, tone.name()).unwrap();
        // Scar count error ≤ 15%.
        if c.scar_count().relative_error() > 0.15 {
            failures.push(format!("{}: scars {:?}", tone.name(), c.scar_count()));
        }
        // Pore count error ≤ 10%.
        if c.pore_count().relative_error() > 0.10 {
            failures.push(format!("{}: pores {:?}", tone.name(), c.pore_count()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A large, dark pore a few millimetres from a scar can share the scar's candidate, and the
/// half-max extent of its faint energy maximum then covers the scar. Judged by the darkest
/// point of that extent, the scar's floor, the pore passed as a second scar (`own_floors` in
/// `src/metrics.rs`): 10 scars for 7 on seed 46 here, and 10 for 8 on most clean images of the
/// independent renderer's seed 4. Counted as a scar, its extent also kept the pores under it
/// out of the pore count (133 of 150 on seed 46; now 144–152 on every seed). Only extra scars
/// are judged: among this many large, dark pores, seeds 41 and 43–45 find 3–6 of 7 scars
/// (4–6 in 0.4.15, before a floor's flank cut off by an earlier extent no longer stood for a
/// scar; 5–7 before `own_floors`), a known gap (README, "Scars among many large, dark
/// pores"): rolling scars 0.05–0.14 mm deep, icepicks as small as these pores, and wider but
/// shallow icepicks that the pit rule sorts to pores this dark are missed. Each phantom's
/// counts are printed (`cargo test --release --test accuracy -- a_dark_pore --nocapture`).
#[test]
fn a_dark_pore_beside_a_scar_is_not_a_scar() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in 41..=46 {
            let mut s = spec(tone, seed);
            s.gap_mm = 1.0;
            s.pores.count = 150;
            s.pores.diameter_mm = [0.30, 0.45];
            s.pores.contrast = [0.35, 0.55];
            let c = compare(&mut a, &s, tone.name()).unwrap();
            let scars = c.scar_count();
            println!(
                "{} seed {seed}: scars {} of {}, pores {} of {}",
                tone.name(),
                scars.measured,
                scars.truth,
                c.pore_count().measured,
                c.pore_count().truth
            );
            // Scar count error ≤ 15%, on the high side.
            if scars.measured > scars.truth * 1.15 {
                failures.push(format!("{} seed {seed}: scars {scars:?}", tone.name()));
            }
            // Pore count error ≤ 10%.
            if c.pore_count().relative_error() > 0.10 {
                failures.push(format!(
                    "{} seed {seed}: pores {:?}",
                    tone.name(),
                    c.pore_count()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Erythema drawn along another hemoglobin direction than the model's (15.5° away: the
/// independent renderer's (0.06, 1.00, 0.60)) partly stays in the Tsumura shading, where a
/// strong 3–6-mm patch reads like a shallow scar. The chromophore leak fitted per region
/// (`ChromophoreLeak` in `src/metrics.rs`) must keep those out of the scar count. Without it
/// each tone counted 9 scars for 7 (two on erythema); with it 6 (the 0.06-mm-deep rolling scar
/// is too shallow to find).
#[test]
fn erythema_of_another_colour_is_not_a_scar() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        let mut s = spec(tone, 51);
        s.hemoglobin_direction = [0.06, 1.00, 0.60];
        s.erythema.count = 3;
        s.erythema.diameter_mm = [3.0, 6.0];
        s.erythema.hemoglobin_excess = [0.8, 1.2];
        let c = compare(&mut a, &s, tone.name()).unwrap();
        // Scar count error ≤ 15%.
        if c.scar_count().relative_error() > 0.15 {
            failures.push(format!("{}: scars {:?}", tone.name(), c.scar_count()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn featureless_skin_has_no_findings() {
    let mut a = analyzer();
    for tone in TONES {
        let c = compare(&mut a, &spec(tone, 5).without_features(), tone.name()).unwrap();
        let m = &c.measured;
        assert_eq!(m.pores.as_ref().unwrap().count, 0, "{}", tone.name());
        assert_eq!(m.hyperpigmentation.as_ref().unwrap().spot_count, 0);
        assert_eq!(m.scarring.as_ref().unwrap().count, 0);
        assert_eq!(m.redness.as_ref().unwrap().area_fraction, 0.0);
    }
}

/// Tone is the skin's own colour: with 5–7% of the skin in macules, plus erythema, pores and
/// scars, ITA° stays within 1° of the base skin's (averaged over everything, lesions included,
/// it read 1.4–1.5° dark on the light and tan phantoms).
#[test]
fn tone_is_measured_on_the_skin_around_the_findings() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        let mut s = spec(tone, 41);
        s.pigment.count = 8;
        s.pigment.diameter_mm = [4.0, 6.0];
        let c = compare(&mut a, &s, tone.name()).unwrap();
        let covered = c.pigment_area_pct().truth;
        assert!(
            covered >= 5.0,
            "{}: only {covered}% in macules",
            tone.name()
        );
        // ITA° within 1° of the base skin's.
        if c.ita().error().abs() > 1.0 {
            failures.push(format!("{}: ITA {:?}", tone.name(), c.ita()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Shadows are not pigment, and pigment is not a scar: scars and pores alone give no
/// pigmented area; macules alone give no scars or pores.
#[test]
fn pigment_and_relief_are_not_confused() {
    let mut a = analyzer();
    for tone in TONES {
        let mut relief = spec(tone, 21);
        relief.pigment.count = 0;
        relief.erythema.count = 0;
        let c = compare(&mut a, &relief, tone.name()).unwrap();
        let h = c.measured.hyperpigmentation.as_ref().unwrap();
        assert_eq!(
            h.spot_count,
            0,
            "{}: shadows counted as pigment",
            tone.name()
        );

        let mut macules = spec(tone, 22);
        macules.pores.count = 0;
        macules.scars.icepick.count = 0;
        macules.scars.boxcar.count = 0;
        macules.scars.rolling.count = 0;
        macules.pigment.count = 8;
        let c = compare(&mut a, &macules, tone.name()).unwrap();
        assert_eq!(
            c.scar_count().measured,
            0.0,
            "{}: macules counted as scars",
            tone.name()
        );
        assert_eq!(
            c.pore_count().measured,
            0.0,
            "{}: macules counted as pores",
            tone.name()
        );
        assert_eq!(c.pigment_count().measured, 8.0, "{}", tone.name());
    }
}

fn severities(m: &RegionMetrics) -> [f64; 4] {
    [
        m.pores.as_ref().unwrap().severity,
        m.hyperpigmentation.as_ref().unwrap().severity,
        m.scarring.as_ref().unwrap().severity,
        m.redness.as_ref().unwrap().severity,
    ]
}

/// Five levels of one factor, everything else fixed: that factor's severity strictly rises.
#[test]
fn severity_ladders_are_strictly_monotone() {
    let mut a = analyzer();
    type Setter = fn(&mut PhantomSpec, u32);
    let ladders: [(&str, usize, Setter); 4] = [
        ("pores", 0, |s, k| s.pores.count = 20 * k),
        ("pigment", 1, |s, k| s.pigment.count = k),
        ("scars", 2, |s, k| s.scars.icepick.count = k),
        ("redness", 3, |s, k| s.erythema.count = k),
    ];
    check_ladders(&mut a, &ladders);
}

/// A factor's name, its index in [`severities`], and how to set its level.
type Ladder<'a> = (&'a str, usize, fn(&mut PhantomSpec, u32));

fn check_ladders(a: &mut Analyzer, ladders: &[Ladder<'_>]) {
    for tone in TONES {
        for &(name, index, set) in ladders {
            let levels: Vec<f64> = (1..=5)
                .map(|k| {
                    let mut s = spec(tone, 31);
                    set(&mut s, k);
                    severities(&compare(a, &s, name).unwrap().measured)[index]
                })
                .collect();
            println!("{} {name}: {levels:?}", tone.name());
            assert!(
                levels.windows(2).all(|w| w[1] > w[0]),
                "{} {name}: {levels:?}",
                tone.name()
            );
        }
    }
}

fn relative_change(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(1e-12)
    }
}

type Nuisance = fn(&mut PhantomSpec);

/// Photometric nuisances within clinical range (exposure ×0.7–1.3, a white-balance cast, a
/// 10% illumination gradient) change each finding metric by ≤ 5%.
#[test]
fn photometric_nuisances_change_metrics_by_at_most_5_percent() {
    let nuisances: [(&str, Nuisance); 4] = [
        ("exposure x0.7", |s| s.nuisances.exposure = 0.7),
        ("exposure x1.3", |s| s.nuisances.exposure = 1.3),
        ("warm cast", |s| {
            s.nuisances.white_balance = [1.1, 1.0, 0.88]
        }),
        ("gradient 10%", |s| s.nuisances.gradient_strength = 0.1),
    ];
    check_nuisances(&nuisances);
}

/// What the noise-weighted pore band and the shading confirmation of patches fixed (model
/// 1.1): JPEG q90 keeps pores within 10% on every tone, dark skin included (was 35 of 80), and
/// JPEG's ±1-code blue contours are no longer counted as macules (a tan phantom at q90 had 13
/// "macules" for its 4): every macule found once, area within 2 points.
#[test]
fn jpeg_keeps_pores_and_invents_no_macules() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            let mut s = spec(tone, seed);
            s.nuisances.jpeg_quality = Some(90);
            let c = compare(&mut a, &s, "jpeg q90").unwrap();
            let label = format!("{} seed {seed} q90", tone.name());
            if c.pore_count().relative_error() > 0.10 {
                failures.push(format!("{label}: pores {:?}", c.pore_count()));
            }
            if tone != TonePreset::Dark {
                if c.pigment_count().error() != 0.0 {
                    failures.push(format!("{label}: pigment spots {:?}", c.pigment_count()));
                }
                if c.pigment_area_pct().error().abs() > 2.0 {
                    failures.push(format!("{label}: pigment area {:?}", c.pigment_area_pct()));
                }
            } else if c.pigment_count().measured > c.pigment_count().truth {
                failures.push(format!(
                    "{label}: extra pigment spots {:?}",
                    c.pigment_count()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Faint pores (10–25% darker) under a fine melanin mottle (σ 0.1 on a 0.5-mm grain and σ 0.2
/// on a 1-mm grain): pore count within the 10% on light, tan and dark skin. The model's
/// pore band lets in 0.457 of the melanin band, so the mottle, not noise, set its threshold:
/// 21–26 pores of 80 found on the 0.5-mm grain and 12–20 on the 1-mm one before 0.4.19 (tan,
/// brown and dark images of these seeds through the 0.4.18 binary; light was not run). Since then each region's pores are found on the grey
/// band of least spread over its skin (`src/pore_band.rs`): 78–81. Every image is printed
/// (`cargo test --release --test accuracy -- faint_pores --nocapture`).
#[test]
fn faint_pores_under_a_fine_pigment_mottle_are_counted() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            for (std, grain_mm) in [(0.1, 0.5), (0.2, 1.0)] {
                let mut s = spec(tone, seed);
                s.texture.melanin_std = std;
                s.texture.scale_mm = grain_mm;
                s.pores.contrast = [0.10, 0.25];
                let label = format!("{} seed {seed} mottle {std} on {grain_mm} mm", tone.name());
                let c = compare(&mut a, &s, &label).unwrap();
                println!("{label}: pores {:?}", c.pore_count());
                if c.pore_count().relative_error() > 0.10 {
                    failures.push(format!("{label}: pores {:?}", c.pore_count()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Noise-limited photos (dark skin, where sensor noise is a large optical density): the
/// adaptive threshold of the 0.3-mm chromophore maps rises above the macules and erythema, so
/// the metrics fall back to coarser smoothings that average the noise away (see
/// `PATCH_SCALE_GAIN` in `metrics.rs`). Before that, a dark phantom at σ = 0.002 linear noise
/// found 1–3 of its 4 macules, and at σ = 0.008 no erythema at all.
#[test]
fn noise_limited_photos_keep_macules_and_erythema() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in SEEDS {
        let mut s = spec(TonePreset::Dark, seed);
        s.nuisances.noise_sigma = 0.002;
        let c = compare(&mut a, &s, "noise 0.002").unwrap();
        let label = format!("dark seed {seed} noise 0.002");
        if c.pigment_count().error() != 0.0 {
            failures.push(format!("{label}: pigment spots {:?}", c.pigment_count()));
        }
        if c.pigment_area_pct().error().abs() > 2.0 {
            failures.push(format!("{label}: pigment area {:?}", c.pigment_area_pct()));
        }
        s.nuisances.noise_sigma = 0.008;
        let c = compare(&mut a, &s, "noise 0.008").unwrap();
        if c.redness_area_pct().error().abs() > 2.0 {
            failures.push(format!(
                "dark seed {seed} noise 0.008: redness area {:?}",
                c.redness_area_pct()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Mottled dark skin: a melanin texture of σ 0.2–0.3 (4–6% of the dark tone's 5.4, as a mottle
/// that grows with the melanin would be) on a 1–2.5-mm grain, and macules only 5–9 times the
/// mottle. The texture sets the melanin map's spread there, not noise.
/// - A threshold of median + 5σ̂ weighted the macules down, and the texture riding on a macule
///   raised its highest pixel, so its half-maximum extent cut into it or split it (σ 0.2,
///   excess 1.2–1.8; before: 1.46 and 1.33% for 2.07 and 2.15%).
/// - A soft ramp half the threshold wide, 2.5σ̂ there, still weighted macules 5–7σ̂ clear of
///   the mottle by 0.3–0.8 (σ 0.3, excess 1.5–2.2; 0.4.19: 1.72, 1.96, 1.66 and 1.75% for
///   2.07, 2.07, 2.15 and 2.15%); the ramp is now one σ̂ wide (see `SOFT_SIGMAS`).
///
/// Pigmented area error ≤ 2 percentage points and 15%, and every macule found once.
#[test]
fn mottled_dark_skin_keeps_its_macules_whole() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in SEEDS {
        for (std, grain_mm, excess) in [
            (0.2, 2.5, [1.2, 1.8]),
            (0.3, 1.0, [1.5, 2.2]),
            (0.3, 2.5, [1.5, 2.2]),
        ] {
            let mut s = spec(TonePreset::Dark, seed);
            s.texture.melanin_std = std;
            s.texture.scale_mm = grain_mm;
            s.pigment.melanin_excess = excess;
            let label = format!("seed {seed} mottle {std} on {grain_mm} mm, excess {excess:?}");
            let c = compare(&mut a, &s, &label).unwrap();
            println!("{label}: pigment area {:?}", c.pigment_area_pct());
            // Here 2 points is most of the truth (about 2%), so the area must also be within 15%.
            failures.extend(pigment_failures(&c, &label, 0.15));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Macules 6–8 mm across: the chromophore background (a Gaussian of σ 3.2 mm) rises under
/// them too, less at the rim than at the centre, so half of the excess peak lies inside the
/// macule's edge. Their edge is read on the melanin map itself (`level_edge` in
/// `metrics.rs`). Pigmented area within 8% on light, tan and dark skin, every macule found
/// once (1.04 of the true area; 0.89 before 0.4.21).
#[test]
fn macules_a_few_millimetres_wide_are_measured_to_their_edge() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            let mut s = spec(tone, seed);
            s.pigment.diameter_mm = [6.0, 8.0];
            let label = format!("{} seed {seed}", tone.name());
            let c = compare(&mut a, &s, &label).unwrap();
            println!(
                "{label}: pigment area {:?} spots {:?}",
                c.pigment_area_pct(),
                c.pigment_count()
            );
            failures.extend(pigment_failures(&c, &label, 0.08));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A 90-mm phantom of `tone` with melasma-sized macules (14–20 mm) of melanin excess in
/// `excess`, under a melanin mottle of σ `mottle` on a 2.5-mm grain.
fn melasma_spec(tone: TonePreset, seed: u64, excess: [f64; 2], mottle: f64) -> PhantomSpec {
    let mut s = spec(tone, seed);
    (s.width_mm, s.height_mm) = (90.0, 90.0);
    s.pigment.diameter_mm = [14.0, 20.0];
    s.pigment.melanin_excess = excess;
    s.texture.melanin_std = mottle;
    s.texture.scale_mm = 2.5;
    s
}

/// Macules and erythema much wider than the model's chromophore background (a Gaussian of
/// σ 3.2 mm, which rises under them), like melasma and post-inflammatory patches: 10–15-mm
/// macules and 12–20-mm erythema on 90-mm phantoms of every tone. Their excess is hollow, so
/// their half-maximum extents were rings (before: 4.0% for 5.4% pigment, 2.4% for 4.6%
/// erythema); now the hollow is filled, the extent is followed past 8 mm when it is compact,
/// and its edge is read on the chromophore map (measured: pigment −3% and +2%, erythema −7%
/// and −8%). Pigmented area within 2 percentage points and 10%, erythema within 15%.
#[test]
fn wide_patches_are_measured_whole() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            let mut s = spec(tone, seed);
            (s.width_mm, s.height_mm) = (90.0, 90.0);
            s.pigment.diameter_mm = [10.0, 15.0];
            s.erythema.diameter_mm = [12.0, 20.0];
            let c = compare(&mut a, &s, "wide patches").unwrap();
            let label = format!("{} seed {seed}", tone.name());
            failures.extend(pigment_failures(&c, &label, 0.10));
            let redness = c.redness_area_pct();
            if redness.relative_error() > 0.15 {
                failures.push(format!("{label}: redness area {redness:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Melasma-sized macules, 14–20 mm across on 90-mm phantoms of every tone, under a melanin
/// mottle of σ 0.1–0.3 (2.5-mm grain): wider than the model's background can follow (σ 3.2 mm),
/// and their rim, all the excess that background leaves, broken by the mottle. They are found
/// on the excess over a wide background (`WIDE_BACKGROUND_MM` in `src/metrics.rs`). Before
/// (0.4.22) every one of them was lost (0% for 9.3–9.7%); now 0.91 of the true area.
/// Pigmented area within 2 percentage points and 12%, every macule found once.
#[test]
fn melasma_sized_patches_are_measured_whole() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        for seed in SEEDS {
            for (std, excess) in [(0.1, [0.8, 1.2]), (0.3, [1.5, 2.2])] {
                let s = melasma_spec(tone, seed, excess, std);
                let label = format!("{} seed {seed} mottle {std}", tone.name());
                let c = compare(&mut a, &s, &label).unwrap();
                println!(
                    "{label}: pigment area {:?} spots {:?}",
                    c.pigment_area_pct(),
                    c.pigment_count()
                );
                failures.extend(pigment_failures(&c, &label, 0.12));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Sensor noise of σ 0.002 (linear) neither adds nor loses a scar on light and tan skin: the
/// count equals the clean image's, on five seeds. The shallow rolling scars (0.06 mm deep,
/// ±4% shading) are found by their relief dipole only just above threshold; before the
/// dipole's walls were looked for around the candidate (`DIPOLE_MARGIN_MM` in
/// `src/metrics.rs`), tan seed 41 lost one (6 → 5). (Dark skin is the known gap below: there
/// the noise in the shading's blue channel hides these scars, 1–2 of 5–7 lost.)
#[test]
fn mild_noise_keeps_the_scar_count_on_light_and_tan_skin() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in [TonePreset::Light, TonePreset::Tan] {
        for seed in [11, 12, 41, 42, 43] {
            let clean = compare(&mut a, &spec(tone, seed), "clean").unwrap();
            let mut s = spec(tone, seed);
            s.nuisances.noise_sigma = 0.002;
            let noisy = compare(&mut a, &s, "noise").unwrap();
            // Exact: one scar of 5–7 is 14–20%, beyond the 5% a nuisance may move a metric.
            if noisy.scar_count().measured != clean.scar_count().measured {
                failures.push(format!(
                    "{} seed {seed}: scars {} clean, {} with noise",
                    tone.name(),
                    clean.scar_count().measured,
                    noisy.scar_count().measured
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Erythema area under JPEG q90 and σ 0.002 linear noise, on five seeds: JPEG's coarse chroma
/// flattens a patch's top and lifts its flanks, and noise raises its highest pixel, so an
/// extent at half the highest pixel moved (up to +25.5% on tan seed 13 at q90, −62% on dark
/// seed 13 under noise; 10 of these 25 pairs beyond 5%). Since 0.4.9 the extent is at half a
/// peak read under smoothing (`ERYTHEMA_PEAK_MIN_FRACTION` in `src/metrics.rs`): 5 of 25
/// beyond 5%, worst +7.3% (tan seed 13, whose faint patch JPEG itself reddens: peak
/// 0.144 → 0.171) and −14.5% (dark seed 41). Tolerances: 10% on light and tan skin, 15% on
/// dark skin under noise (the 5% is the ignored test below). Every pair is printed
/// with its truth (`cargo test --release --test accuracy -- jpeg_and_noise_keep --nocapture`);
/// with `ERYTHEMA_PEAK_MIN_FRACTION` set to 1.0, the old rule exactly, it prints the "before".
#[test]
fn jpeg_and_noise_keep_the_erythema_area() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    let jpeg: Nuisance = |s| s.nuisances.jpeg_quality = Some(90);
    let noise: Nuisance = |s| s.nuisances.noise_sigma = 0.002;
    for seed in [41, 11, 12, 13, 14] {
        for tone in TONES {
            let clean = compare(&mut a, &spec(tone, seed), "clean").unwrap();
            let nuisances: &[(&str, Nuisance, f64)] = match tone {
                TonePreset::Dark => &[("noise", noise, 0.15)],
                _ => &[("jpeg q90", jpeg, 0.10), ("noise", noise, 0.10)],
            };
            for &(name, apply, tolerance) in nuisances {
                let mut s = spec(tone, seed);
                apply(&mut s);
                let c = compare(&mut a, &s, name).unwrap();
                let (x, y) = (
                    clean.redness_area_pct().measured,
                    c.redness_area_pct().measured,
                );
                println!(
                    "{} seed {seed} {name}: redness area {x:.3} -> {y:.3} ({:+.1}%), truth {:.3}",
                    tone.name(),
                    100.0 * (y - x) / x,
                    clean.redness_area_pct().truth
                );
                if relative_change(x, y) > tolerance {
                    failures.push(format!(
                        "{} seed {seed} {name}: redness area {x:.3} -> {y:.3}",
                        tone.name()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Pore count on dark skin under σ 0.002 linear noise, on five seeds, within the 5% of
/// the clean count. The same linear noise is larger in optical density where the skin is darker
/// (σ/v), so one threshold per region let a macule's noise through: 85–90 pores for 80 clean
/// (+6% to +12.5%) before 0.4.10, 9 of seed 41's 10 extra pores inside macules. Since 0.4.10 the
/// pore band is scaled by its noise predicted pixel by pixel from the photo's own noise level
/// functions (`src/noise.rs`, `noise_scaled` in `src/metrics.rs`): 80–84. Light and tan skin
/// read 80 under the same noise either way. Every seed is printed
/// (`cargo test --release --test accuracy -- noise_keeps_the_pore --nocapture`).
#[test]
fn noise_keeps_the_pore_count_on_dark_skin() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in [41, 11, 12, 13, 14] {
        let clean = compare(&mut a, &spec(TonePreset::Dark, seed), "clean").unwrap();
        let mut s = spec(TonePreset::Dark, seed);
        s.nuisances.noise_sigma = 0.002;
        let noisy = compare(&mut a, &s, "noise").unwrap();
        let (x, y) = (clean.pore_count().measured, noisy.pore_count().measured);
        println!(
            "dark seed {seed} noise: pores {x} -> {y}, truth {}",
            clean.pore_count().truth
        );
        if relative_change(x, y) > 0.05 {
            failures.push(format!("dark seed {seed} noise: pores {x} -> {y}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Scar count on dark skin under σ 0.002 linear noise, within the 15% of the truth on
/// four seeds. There blue is a few code values deep and carries most of the noise, and the
/// Tsumura shading the scar band is cut from weighs blue −1.09: the region's band σ rose from
/// 0.005 to 0.023, the candidate and dipole thresholds with it, and every shallow rolling scar
/// (0.06–0.09 mm deep) was lost: 5 of 7 on all four seeds before 0.4.11. Since 0.4.11 the
/// scar band's candidates and dipoles are read on a relief weighted by the photo's own noise
/// (`src/relief.rs`): σ 0.007–0.008, and 6, 7, 6 and 7 of 7 (clean: 6, 7, 7, 7). Seed 41's two
/// rolling scars, 0.06 mm deep with lobes of about 0.02 OD, stay below the wall threshold
/// (3σ ≈ 0.023) and it still reads 5 of 7: see the ignored nuisance test below. Every seed is
/// printed (`cargo test --release --test accuracy -- noise_keeps_the_scar --nocapture`).
#[test]
fn noise_keeps_the_scar_count_on_dark_skin() {
    scar_counts_within_15_percent_of_truth("dark seed {} noise", &[11, 12, 13, 14], |seed| {
        let mut s = spec(TonePreset::Dark, seed);
        s.nuisances.noise_sigma = 0.002;
        s
    });
}

/// Prints each seed's scar count (`label` with the seed in place of `{}`) and asserts the
/// issue's scar tolerance, 15% of the truth, on every one.
fn scar_counts_within_15_percent_of_truth(
    label: &str,
    seeds: &[u64],
    spec_of: impl Fn(u64) -> PhantomSpec,
) {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for &seed in seeds {
        let c = compare(&mut a, &spec_of(seed), "nuisance").unwrap();
        let scars = c.scar_count();
        let name = label.replace("{}", &seed.to_string());
        println!("{name}: scars {} of {}", scars.measured, scars.truth);
        if scars.relative_error() > 0.15 {
            failures.push(format!("{name}: scars {scars:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Sensor noise and JPEG re-encoding. Known gap (issue 3 stays open). Since model 1.1 pores
/// hold on every tone (dark q90 79–80 of 80), but on dark skin one code value of blue is
/// ~0.07 OD, so JPEG's ±1-code blue contours and σ = 0.002 linear noise still put ~0.1–0.3
/// of noise into the melanin/hemoglobin projection (the adaptive thresholds rise above faint
/// macules and erythema) and into the Tsumura shading the scar band uses; and with only ~6
/// scars per phantom a single scar gained or lost is a 17% change. In 0.4.10 to 0.4.13 it
/// fails on 7 lines: the scar count ±1 (light and tan JPEG, dark noise and JPEG), dark erythema
/// under noise (−14%) and JPEG, and dark pigment under JPEG (+5.6%). 0.4.11's noise-weighted
/// relief brought dark noise scars back on seeds 11–14 (test above) but not on this seed 41. Light and tan erythema under
/// JPEG (+6.6%, −5.1% before) pass since 0.4.9, dark pores under noise (80 → 90 before) since
/// 0.4.10 (80 → 83).
#[test]
#[ignore = "known gap, issue 3: JPEG q90 and noise on dark skin move counts by > 5%"]
fn noise_and_jpeg_change_metrics_by_at_most_5_percent() {
    let nuisances: [(&str, Nuisance); 2] = [
        ("noise", |s| s.nuisances.noise_sigma = 0.002),
        ("jpeg q90", |s| s.nuisances.jpeg_quality = Some(90)),
    ];
    check_nuisances(&nuisances);
}

fn check_nuisances(nuisances: &[(&str, Nuisance)]) {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for tone in TONES {
        let base = compare(&mut a, &spec(tone, 41), "clean").unwrap();
        for &(name, apply) in nuisances {
            let mut s = spec(tone, 41);
            apply(&mut s);
            let c: Comparison = compare(&mut a, &s, name).unwrap();
            for (metric, x, y) in [
                (
                    "pore count",
                    base.pore_count().measured,
                    c.pore_count().measured,
                ),
                (
                    "pigment area",
                    base.pigment_area_pct().measured,
                    c.pigment_area_pct().measured,
                ),
                (
                    "scar count",
                    base.scar_count().measured,
                    c.scar_count().measured,
                ),
                (
                    "redness area",
                    base.redness_area_pct().measured,
                    c.redness_area_pct().measured,
                ),
            ] {
                if relative_change(x, y) > 0.05 {
                    failures.push(format!("{} {name}: {metric} {x:.3} -> {y:.3}", tone.name()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// JPEG's error leaves the relief band on dark skin. At q90 it is rounding of smooth skin,
/// correlated over millimetres, which the noise level functions do not see (they read 0), and
/// the model's shading band leans on blue: its robust spread rose sixfold over the clean
/// image's. Since 0.4.13 such a photo's relief is the least-variance mix of the shading and
/// chromophore bands (`Relief::from_band_covariance` in `src/relief.rs`), which must bring the
/// spread back within 1.5 times the clean image's. The scar and pore counts are printed
/// (`cargo test --release --test accuracy -- jpeg_error_leaves --nocapture`); the scars are
/// not yet within 15% on every seed (see the ignored test above).
#[test]
fn jpeg_error_leaves_the_relief_band_on_dark_skin() {
    let mut model =
        dermatrack::model::SkinModel::load(&dermatrack::model::default_models_dir(), "skin-v1", 2)
            .expect("skin model loads");
    let spread = |map: ndarray::ArrayView2<'_, f32>| {
        let mut v: Vec<f32> = map.iter().copied().collect();
        let mid = v.len() / 2;
        let median = *v.select_nth_unstable_by(mid, f32::total_cmp).1;
        let mut dev: Vec<f32> = v.iter().map(|x| (x - median).abs()).collect();
        1.4826 * *dev.select_nth_unstable_by(mid, f32::total_cmp).1
    };
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in [41, 11, 12, 13, 14] {
        let mut spreads = Vec::new();
        for quality in [None, Some(90)] {
            let mut s = spec(TonePreset::Dark, seed);
            s.nuisances.jpeg_quality = quality;
            let image = dermatrack::phantom::render(&s).unwrap().image;
            let (w, h) = image.dimensions();
            let maps = model.measure(&image, (0, 0, w, h), s.px_per_mm).unwrap();
            let model_band = spread(maps.channel("scar_response").unwrap());
            let relief = spread(maps.measured("scar_response").unwrap());
            let c = compare(&mut a, &s, "x").unwrap();
            println!(
                "dark seed {seed} {quality:?}: shading band spread {model_band:.4}, relief {relief:.4}, scars {} of {}, pores {} of {}",
                c.scar_count().measured,
                c.scar_count().truth,
                c.pore_count().measured,
                c.pore_count().truth
            );
            spreads.push((model_band, relief));
        }
        let ((clean, _), (jpeg_model, jpeg_relief)) = (spreads[0], spreads[1]);
        // The model's band must show the problem, or the test proves nothing.
        if jpeg_model < 3.0 * clean || jpeg_relief > 1.5 * clean {
            failures.push(format!(
                "seed {seed}: clean {clean:.4}, JPEG band {jpeg_model:.4}, relief {jpeg_relief:.4}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// On tan skin without erythema, JPEG q90 invents scars. The band's robust σ rises from
/// 0.0045 to 0.0061 (seed 12), and relief dipoles appear on plain skin 6 mm or more from any
/// drawn feature: 8, 7 and 9 scars for 7 in 0.4.13 to 0.4.15 (clean: 7 each), a known gap
/// until 0.4.16. There seed 12's ninth was a second extent whose darkest pixel lay on the flank
/// of a counted floor (`own_floors` in `src/metrics.rs`): 8, 7 and 8 now, within 15% but one
/// false scar still on two seeds. With their erythema the same phantoms read 6–7. Each seed
/// is printed (`cargo test --release --test accuracy -- jpeg_on_tan --nocapture`).
#[test]
fn jpeg_on_tan_skin_without_erythema_keeps_the_scar_count() {
    scar_counts_within_15_percent_of_truth(
        "tan seed {} jpeg q90, no erythema",
        &[41, 11, 12],
        |seed| {
            let mut s = spec(TonePreset::Tan, seed);
            s.erythema.count = 0;
            s.nuisances.jpeg_quality = Some(90);
            s
        },
    );
}

/// Dark skin with six strong macules (2–6 mm, melanin excess 0.6–1.2) and no scars, under
/// σ `noise` linear noise and JPEG at `jpeg`: the scars counted on seeds 61–64, each one a
/// failure.
fn scars_among_dark_macules(cases: &[(&str, f64, Option<u8>)]) -> Vec<String> {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in 61..=64 {
        for &(name, noise, jpeg) in cases {
            let mut s = spec(TonePreset::Dark, seed);
            s.scars.icepick.count = 0;
            s.scars.boxcar.count = 0;
            s.scars.rolling.count = 0;
            s.pigment.count = 6;
            s.pigment.diameter_mm = [2.0, 6.0];
            s.pigment.melanin_excess = [0.6, 1.2];
            s.nuisances.noise_sigma = noise;
            s.nuisances.jpeg_quality = jpeg;
            let c = compare(&mut a, &s, name).unwrap();
            if c.scar_count().measured > 0.0 {
                failures.push(format!("seed {seed} {name}: scars {:?}", c.scar_count()));
            }
        }
    }
    failures
}

/// Macules are not scars, on dark skin under sensor noise and JPEG either. There the blue
/// channel is a few codes deep and noise or JPEG rounding moves part of a macule's melanin into
/// the Tsumura shading, as deep as a scar's floor (see `RED_GREEN_MIN` in `src/metrics.rs`).
/// Before the red/green test, 10 of these 16 images counted 1–3 scars.
#[test]
fn macules_on_noisy_dark_skin_are_not_scars() {
    let failures = scars_among_dark_macules(&[
        ("noise 0.004", 0.004, None),
        ("noise 0.008", 0.008, None),
        ("jpeg q85", 0.0, Some(85)),
        ("noise 0.004 + jpeg q85", 0.004, Some(85)),
    ]);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Known gap: the same macules at q90 and q75, whose JPEG error reads as no pixel noise, so
/// the relief is the band regression (`Relief::from_band_covariance` in `src/relief.rs`).
/// The melanin band it mixes in carries these strong macules, and 2 and 3 scars are counted
/// on seeds 61 and 64 at q90, 2 on seed 64 at q75 (measured with 0.4.26). Temporary changes
/// that left 1–2 on two or three of these images: fitting the mix only on plain skin (pixels
/// within 2 or 3 robust σ of every band), and clamping the bands mixed in to 1.5–3 robust σ.
/// Found when the regression was tried at q85 too (there the photo reads
/// pixel noise and the model's band is measured): it mended q85's relief band (robust spread
/// 0.023–0.031 → 0.0031–0.0062 on seeds 41 and 11–14, scars at q85 5, 5, 4, 5, 4 → 7, 5, 5,
/// 5, 5 of 7, and on the independent renderer's JPEGs summed scar error 100 → 98), but these
/// macules gave 1–2 scars on three seeds at q85, so it was not kept.
#[test]
#[ignore = "known gap, issue 3: the band regression of dark JPEGs lets strong macules in as scars"]
fn macules_on_dark_jpeg_at_q90_and_q75_are_not_scars() {
    let failures =
        scars_among_dark_macules(&[("jpeg q90", 0.0, Some(90)), ("jpeg q75", 0.0, Some(75))]);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Heavy sensor noise on dark skin. There blue is a few code values deep and a macule's centre
/// one or two, so noise clipped at 0 raises its mean and biases the three-channel melanin low
/// (a macule's contrast fell by half and none was found on the independent renderer's dark
/// tone). The metrics weigh each channel by how far it sits above the photo's noise
/// (`ChromophoreWeighting` in `src/model.rs`) and read such macules from red and green.
/// Where red and green change alike (relief) the red/green fallback is not taken, so the
/// phantoms' scars do not become pigment spots. Before: at σ 0.004 the pigmented area read
/// 0–0.73% for 1.0–2.6%, at σ 0.006 none. Pigmented area within 2 percentage points of the
/// truth, and every macule counted once.
#[test]
fn macules_on_dark_skin_survive_heavy_noise() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in 71..=74 {
        for noise in [0.002, 0.004, 0.006] {
            let mut s = spec(TonePreset::Dark, seed);
            s.nuisances.noise_sigma = noise;
            let c = compare(&mut a, &s, "noise").unwrap();
            let (area, spots) = (c.pigment_area_pct(), c.pigment_count());
            if area.error().abs() > 2.0 {
                failures.push(format!("seed {seed} noise {noise}: pigment area {area:?}"));
            }
            if spots.error() != 0.0 {
                failures.push(format!(
                    "seed {seed} noise {noise}: pigment spots {spots:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Macules so dark that blue is clipped inside them (dark skin, melanin excess 3–4, 14–20 mm,
/// mottle σ 0.3), rounded to 8 bits as a camera's file holds them: none is counted as a scar.
/// Where blue sits at codes 0–3 the Tsumura shading, which weighs blue by −1.09, darkens with
/// every rise of the mottle; before relief was read on red and green there
/// (`BLUE_UNMEASURED_CODE` in `src/metrics.rs`) seeds 11–15 counted 8, 10, 9, 7 and 9 scars for
/// 7, now 6, 7, 5, 5 and 6. At most two true scars may be lost: dark skin's known gap (the
/// same seeds without macules count 6 of 7 in 8 bits).
#[test]
fn macules_whose_blue_is_clipped_are_not_scars() {
    let mut a = analyzer();
    let mut failures = Vec::new();
    for seed in 11..=15 {
        let s = melasma_spec(TonePreset::Dark, seed, [3.0, 4.0], 0.3);
        let phantom = rendered_8_bit(&s);
        // The premise: blue is clipped (codes 0–1) somewhere in every scene's macules.
        let darkest_blue = phantom
            .image
            .enumerate_pixels()
            .filter(|&(x, y, _)| phantom.masks.pigment.get_pixel(x, y).0[0] > 0)
            .map(|(_, _, p)| 255.0 * p.0[2])
            .fold(f32::MAX, f32::min);
        assert!(
            darkest_blue <= 1.0,
            "seed {seed}: darkest blue {darkest_blue}"
        );
        let c = compare_rendered(&mut a, phantom, "clipped blue").unwrap();
        let scars = c.scar_count();
        println!("dark seed {seed}, 8 bits: scars {scars:?}");
        if scars.measured > scars.truth || scars.measured < scars.truth - 2.0 {
            failures.push(format!("seed {seed}: scars {scars:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

//! Generates `fixtures/demo-study/`: a two-subject, four-session study of phantoms whose truth
//! is known, used by `tests/study.rs` and as a demo of `dermatrack run`.
//!
//! * **A01** (light skin): pigmented macules fade (melanin excess 0.85 → 0.20) and pores shrink
//!   (diameter 0.30–0.40 mm → 0.15–0.18 mm, contrast 0.40 → 0.22) across the sessions.
//! * **B01** (intermediate skin): stable until session 2; post-inflammatory hyperpigmentation
//!   (five dark macules instead of one faint one) appears at session 3, after the
//!   microneedling of session 2, and persists at session 4.
//!
//! A01 keeps one layout (seed) so only the specified changes differ between its sessions.
//! Each photo is a 30 × 30 mm phantom at 10 px/mm (300 × 300 px, 8-bit PNG, ~100 kB), stored
//! as `SUBJECT/DATE_LABEL/front.png` and listed in `manifest.csv` with its `px_per_mm` and the
//! treatment given at that session; `truth.json` records every spec.
//!
//! `cargo run --example make_demo_study [OUT]` (default `fixtures/demo-study`); the output is
//! byte-for-byte reproducible.

use std::fmt::Write as _;
use std::path::PathBuf;

use dermatrack::phantom::{PhantomSpec, TonePreset, render};

struct Session {
    date: &'static str,
    label: &'static str,
    treatment: &'static str,
}

const A_SESSIONS: [Session; 4] = [
    Session {
        date: "2026-01-05",
        label: "baseline",
        treatment: "microneedling",
    },
    Session {
        date: "2026-02-02",
        label: "tx2",
        treatment: "microneedling",
    },
    Session {
        date: "2026-03-02",
        label: "tx3",
        treatment: "microneedling",
    },
    Session {
        date: "2026-03-30",
        label: "followup",
        treatment: "none",
    },
];

const B_SESSIONS: [Session; 4] = [
    Session {
        date: "2026-01-07",
        label: "baseline",
        treatment: "microneedling",
    },
    Session {
        date: "2026-02-04",
        label: "tx2",
        treatment: "microneedling",
    },
    Session {
        date: "2026-03-04",
        label: "tx3",
        treatment: "none",
    },
    Session {
        date: "2026-04-01",
        label: "followup",
        treatment: "none",
    },
];

fn base(tone: TonePreset, seed: u64) -> PhantomSpec {
    let mut spec = PhantomSpec::with_tone(tone).without_features();
    spec.width_mm = 30.0;
    spec.height_mm = 30.0;
    spec.px_per_mm = 10.0;
    spec.seed = seed;
    spec
}

fn subject_a(i: usize) -> PhantomSpec {
    let mut spec = base(TonePreset::Light, 11);
    let t = i as f64 / 3.0;
    let lerp = |a: f64, b: f64| a + (b - a) * t;
    spec.pores.count = 40;
    spec.pores.diameter_mm = [lerp(0.30, 0.15), lerp(0.40, 0.18)];
    spec.pores.contrast = [lerp(0.35, 0.20), lerp(0.40, 0.22)];
    spec.pigment.count = 3;
    spec.pigment.diameter_mm = [3.0, 4.5];
    spec.pigment.melanin_excess = [lerp(0.80, 0.18), lerp(0.85, 0.20)];
    spec
}

fn subject_b(i: usize) -> PhantomSpec {
    // A new seed per session: a re-photographed face is never the same image.
    let mut spec = base(TonePreset::Intermediate, 23 + i as u64);
    spec.pores.count = 30;
    spec.pores.diameter_mm = [0.2, 0.3];
    spec.pores.contrast = [0.25, 0.3];
    if i < 2 {
        spec.pigment.count = 1;
        spec.pigment.diameter_mm = [2.0, 2.5];
        spec.pigment.melanin_excess = [0.35, 0.4];
    } else {
        spec.pigment.count = 5;
        spec.pigment.diameter_mm = [3.0, 4.5];
        spec.pigment.melanin_excess = [0.6, 0.8];
    }
    spec
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("fixtures/demo-study"), PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let mut manifest =
        String::from("subject,session,date,view,arm,path,px_per_mm,treatment,notes\n");
    let mut truth = serde_json::Map::new();
    type Maker = fn(usize) -> PhantomSpec;
    let subjects: [(&str, &[Session; 4], Maker, &str); 2] = [
        (
            "A01",
            &A_SESSIONS,
            subject_a,
            "pigment fading, pores shrinking",
        ),
        (
            "B01",
            &B_SESSIONS,
            subject_b,
            "post-inflammatory hyperpigmentation from session 3",
        ),
    ];
    for (subject, sessions, make, story) in subjects {
        let mut specs = Vec::new();
        for (i, s) in sessions.iter().enumerate() {
            let spec = make(i);
            let phantom = render(&spec)?;
            let session = format!("{}_{}", s.date, s.label);
            let rel = format!("{subject}/{session}/front.png");
            let path = out.join(&rel);
            std::fs::create_dir_all(path.parent().expect("has a folder"))?;
            let rgb =
                image::RgbImage::from_fn(phantom.image.width(), phantom.image.height(), |x, y| {
                    let p = phantom.image.get_pixel(x, y).0;
                    image::Rgb(p.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
                });
            rgb.save_with_format(&path, image::ImageFormat::Png)?;
            writeln!(
                manifest,
                "{subject},{session},{},front,active,{rel},10,{},\"{story}, session {}\"",
                s.date,
                s.treatment,
                i + 1
            )?;
            specs.push(serde_json::json!({
                "session": session,
                "path": rel,
                "spec": spec,
                "truth": phantom.truth,
            }));
        }
        truth.insert(
            subject.into(),
            serde_json::json!({"story": story, "sessions": specs}),
        );
    }
    std::fs::write(out.join("manifest.csv"), manifest)?;
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(truth))?;
    text.push('\n');
    std::fs::write(out.join("truth.json"), text)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

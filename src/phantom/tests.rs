//! Unit tests of the phantom renderer.

use std::path::Path;

use super::*;

/// A small phantom with every feature kind, quick to render.
fn small(seed: u64) -> PhantomSpec {
    let mut spec = PhantomSpec {
        width_mm: 30.0,
        height_mm: 30.0,
        seed,
        ..PhantomSpec::default()
    };
    spec.pores.count = 25;
    spec.pigment.count = 2;
    spec.pigment.diameter_mm = [1.5, 4.0];
    spec.scars.icepick.count = 2;
    spec.scars.boxcar.count = 1;
    spec.scars.rolling.count = 1;
    spec.erythema.count = 1;
    spec
}

fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_json_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn raw_bytes(img: &Rgb32FImage) -> Vec<u8> {
    img.as_raw().iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let a = render(&small(1)).unwrap();
    let b = render(&small(1)).unwrap();
    assert_eq!(raw_bytes(&a.image), raw_bytes(&b.image));
    assert_eq!(a.truth, b.truth);
    assert_eq!(a.masks, b.masks);
    let c = render(&small(2)).unwrap();
    assert_ne!(raw_bytes(&a.image), raw_bytes(&c.image));
    assert_ne!(a.masks.pores, c.masks.pores);
}

#[test]
fn truth_counts_equal_requested_counts() {
    let spec = small(3);
    let t = render(&spec).unwrap().truth;
    assert_eq!(t.schema_version, PHANTOM_SCHEMA_VERSION);
    assert_eq!(t.pores.count, 25);
    assert_eq!(t.pores.diameters_mm.len(), 25);
    assert_eq!(t.pigment.spot_count, 2);
    assert_eq!(
        (t.scars.icepick, t.scars.boxcar, t.scars.rolling),
        (2, 1, 1)
    );
    assert_eq!(t.scars.count, 4);
    assert_eq!(t.erythema.patch_count, 1);
    assert!((t.pores.density_per_cm2 - 25.0 / 9.0).abs() < 1e-9);
    for p in &t.pores.items {
        assert!((spec.pores.diameter_mm[0]..=spec.pores.diameter_mm[1]).contains(&p.diameter_mm));
    }
    // Per-item mask pixels add up to the mask totals.
    assert_eq!(
        t.pores.items.iter().map(|p| p.mask_pixels).sum::<u64>(),
        t.pores.mask_pixels
    );
    assert_eq!(
        t.scars.items.iter().map(|p| p.mask_pixels).sum::<u64>(),
        t.scars.mask_pixels
    );
}

#[test]
fn masks_are_disjoint_nonempty_and_inside_the_margin() {
    let p = render(&small(4)).unwrap();
    let (w, h) = p.masks.pores.dimensions();
    let margin_px = (3.0 * p.truth.px_per_mm) as u32;
    for (name, mask) in p.masks.iter() {
        assert!(mask.as_raw().contains(&255), "{name} empty");
        for (x, y, v) in mask.enumerate_pixels() {
            if v[0] != 0 {
                assert!(
                    x >= margin_px && y >= margin_px && x < w - margin_px && y < h - margin_px,
                    "{name} at ({x}, {y}) is inside the 3 mm margin"
                );
            }
        }
    }
    for i in 0..(w * h) as usize {
        let set = p
            .masks
            .iter()
            .iter()
            .filter(|(_, m)| m.as_raw()[i] != 0)
            .count();
        assert!(set <= 1, "pixel {i} is in {set} masks");
    }
}

#[test]
fn mask_areas_match_nominal_sizes() {
    let t = render(&small(5)).unwrap().truth;
    let px_area = 1.0 / (t.px_per_mm * t.px_per_mm);
    // Large features: pixel-counted area within a few % of the nominal area.
    for s in t.pigment.spots.iter().chain(&t.erythema.patches) {
        let nominal = std::f64::consts::PI * s.diameter_mm * s.diameter_mm / 4.0;
        assert!(
            (s.mask_area_mm2 - nominal).abs() / nominal < 0.05,
            "{} vs {nominal}",
            s.mask_area_mm2
        );
    }
    // Pores (a few pixels each): total area within 10%.
    let nominal: f64 = t
        .pores
        .diameters_mm
        .iter()
        .map(|d| std::f64::consts::PI * d * d / 4.0)
        .sum();
    let counted = t.pores.mask_pixels as f64 * px_area;
    assert!(
        (counted - nominal).abs() / nominal < 0.1,
        "{counted} vs {nominal}"
    );
}

#[test]
fn preset_itas_are_ordered_and_span_the_categories() {
    let itas: Vec<f64> = TonePreset::ALL
        .iter()
        .map(|&p| {
            let t = tone_truth(&BaseTone::Preset(p));
            assert_eq!(t.ita_category, p.name(), "{p}: ITA {}", t.ita_deg);
            t.ita_deg
        })
        .collect();
    assert!(itas.windows(2).all(|w| w[0] > w[1]), "{itas:?}");
    assert!(itas[0] > 55.0 && itas[5] < -30.0, "{itas:?}");
    // The documented table.
    let expected = [63.15, 48.15, 34.41, 18.99, -10.08, -39.99];
    for (got, want) in itas.iter().zip(expected) {
        assert!((got - want).abs() < 0.02, "{got} vs {want}");
    }
}

#[test]
fn flat_phantom_has_the_requested_base_color() {
    let spec = PhantomSpec {
        width_mm: 20.0,
        height_mm: 10.0,
        tone: BaseTone::Custom {
            melanin: 1.2,
            hemoglobin: 0.3,
        },
        texture: TextureSpec::none(),
        ..PhantomSpec::default()
    }
    .without_features();
    let p = render(&spec).unwrap();
    let expected = skin_reflectance(1.2, 0.3, 1.0).map(srgb_encode);
    let truth = &p.truth.base_tone;
    for (got, want) in truth.srgb.iter().zip(expected) {
        assert!((got - want).abs() < 1e-12);
    }
    for px in p.image.pixels() {
        for (got, want) in px.0.iter().zip(expected) {
            assert!(
                (f64::from(*got) - want).abs() <= 0.5 / 65535.0 + 1e-7,
                "{px:?} vs {expected:?}"
            );
        }
    }
    assert_eq!(p.image, p.clean);
    // The image's CIELAB agrees with the truth's.
    let lin = p.image.get_pixel(3, 3).0.map(|v| srgb_decode(f64::from(v)));
    let [l, _, b] = linear_srgb_to_lab(lin);
    assert!((l - truth.l).abs() < 0.01 && (b - truth.b).abs() < 0.01);
    assert_eq!(p.truth.pores.area_fraction, 0.0);
}

#[test]
fn texture_keeps_the_mean_and_stays_mild() {
    let spec = PhantomSpec::with_tone(TonePreset::Tan).without_features();
    let p = render(&PhantomSpec {
        width_mm: 30.0,
        height_mm: 30.0,
        ..spec
    })
    .unwrap();
    let base = p.truth.base_tone.srgb;
    let n = f64::from(p.image.width() * p.image.height());
    for c in 0..3 {
        let vals = p.image.pixels().map(|px| f64::from(px[c]));
        let (mut lo, mut hi, mut sum) = (1.0f64, 0.0f64, 0.0);
        for v in vals {
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v;
        }
        // Mean within 1/255 of the base color, range within ±8/255.
        assert!((sum / n - base[c]).abs() < 1.0 / 255.0, "channel {c}");
        assert!(
            hi - base[c] < 8.0 / 255.0 && base[c] - lo < 8.0 / 255.0,
            "channel {c}: {lo}..{hi}"
        );
    }
}

#[test]
fn features_have_their_documented_contrast() {
    let mut spec = small(6);
    spec.texture = TextureSpec::none();
    let p = render(&spec).unwrap();
    let t = &p.truth;
    let base = t.base_tone.linear_rgb;
    let at = |x_mm: f64, y_mm: f64| {
        let (i, j) = ((x_mm * t.px_per_mm) as u32, (y_mm * t.px_per_mm) as u32);
        p.clean.get_pixel(i, j).0.map(|v| srgb_decode(f64::from(v)))
    };
    // A pore's centre pixel is darker by up to its contrast, equally in all channels.
    for pore in &t.pores.items {
        let lin = at(pore.x_mm, pore.y_mm);
        let od: Vec<f64> = (0..3).map(|c| -(lin[c] / base[c]).ln()).collect();
        assert!(od[0] > 0.3 * pore.od_contrast && od[0] <= pore.od_contrast + 1e-3);
        assert!(
            (od[0] - od[1]).abs() < 2e-3 && (od[1] - od[2]).abs() < 2e-3,
            "{od:?}"
        );
    }
    // A macule's centre carries its melanin excess along σ_mel.
    for s in &t.pigment.spots {
        let lin = at(s.x_mm, s.y_mm);
        for c in 0..3 {
            let od = -(lin[c] / base[c]).ln();
            let want = s.peak_excess * SIGMA_MELANIN[c];
            assert!(
                (od - want).abs() < 0.02 * s.peak_excess + 2e-3,
                "{od} vs {want}"
            );
        }
    }
    // Scars: icepick centres are dark (occlusion), every scar has a lit and a shadowed side.
    for s in &t.scars.items {
        assert!(s.shading_min < 1.0 && s.shading_mean_in_mask < 1.0, "{s:?}");
        if s.kind != ScarKind::Icepick {
            assert!(s.shading_max > 1.0, "{s:?}");
        }
    }
    // Light from the upper left (azimuth 135°): a boxcar's upper-left wall faces away from it
    // and is dark, its lower-right wall faces it and is bright.
    let boxcar = t
        .scars
        .items
        .iter()
        .find(|s| s.kind == ScarKind::Boxcar)
        .unwrap();
    let off = 0.85 * boxcar.diameter_mm / 2.0 * std::f64::consts::FRAC_1_SQRT_2;
    let near = at(boxcar.x_mm - off, boxcar.y_mm - off)[1] / base[1];
    let far = at(boxcar.x_mm + off, boxcar.y_mm + off)[1] / base[1];
    assert!(near < 0.95 && far > 1.05, "near {near}, far {far}");
}

#[test]
fn nuisances_change_the_image_but_not_truth_or_masks() {
    let plain = render(&small(7)).unwrap();
    for nuisances in [
        NuisanceSpec {
            exposure: 0.8,
            ..NuisanceSpec::default()
        },
        NuisanceSpec {
            white_balance: [1.1, 1.0, 0.9],
            ..NuisanceSpec::default()
        },
        NuisanceSpec {
            gradient_strength: 0.4,
            gradient_direction_deg: 45.0,
            ..NuisanceSpec::default()
        },
        NuisanceSpec {
            noise_sigma: 0.01,
            ..NuisanceSpec::default()
        },
    ] {
        let mut spec = small(7);
        spec.nuisances = nuisances.clone();
        let p = render(&spec).unwrap();
        assert_ne!(p.image, plain.image, "{nuisances:?}");
        assert_eq!(p.clean, plain.clean);
        assert_eq!(p.masks, plain.masks);
        let mut t = p.truth.clone();
        assert!(t.nuisances.applied);
        t.spec.nuisances = NuisanceSpec::default();
        t.nuisances = plain.truth.nuisances.clone();
        assert_eq!(t, plain.truth);
    }
    // Exposure is a linear multiplier.
    let mut spec = small(7);
    spec.nuisances.exposure = 0.5;
    let p = render(&spec).unwrap();
    let (a, b) = (p.image.get_pixel(40, 40), plain.image.get_pixel(40, 40));
    for c in 0..3 {
        let ratio = srgb_decode(f64::from(a[c])) / srgb_decode(f64::from(b[c]));
        assert!((ratio - 0.5).abs() < 1e-3, "{ratio}");
    }
}

#[test]
fn jpeg_option_produces_a_decodable_jpeg() {
    let mut spec = small(8);
    spec.nuisances.jpeg_quality = Some(85);
    let p = render(&spec).unwrap();
    let bytes = p.jpeg.as_ref().expect("JPEG bytes");
    let photo = crate::io::decode_photo(
        Path::new("p.jpg"),
        bytes,
        &crate::io::LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(photo.format, "jpeg");
    assert_eq!(photo.pixels, p.image);
    // Analysed in memory, it is the same 8-bit JPEG.
    let in_memory = p.to_photo("p");
    assert_eq!((in_memory.format, in_memory.bits_per_channel), ("jpeg", 8));
    assert_eq!(in_memory.pixels, photo.pixels);
    // The encoder writes 4:4:4, as documented on `jpeg_quality`: every component of the
    // baseline frame header (SOF0) has sampling factors 1×1.
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let n = usize::from(bytes[sof + 9]);
    assert_eq!(n, 3);
    for c in 0..n {
        assert_eq!(bytes[sof + 10 + 3 * c + 1], 0x11, "component {c}");
    }
    // Close to the clean image on average (quality 85).
    let err: f64 = p
        .image
        .as_raw()
        .iter()
        .zip(p.clean.as_raw())
        .map(|(a, b)| f64::from((a - b).abs()))
        .sum::<f64>()
        / p.image.as_raw().len() as f64;
    assert!(err < 3.0 / 255.0, "{err}");
}

#[test]
fn written_files_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = render(&small(9)).unwrap();
    let files = write_phantom(&p, dir.path(), "ph").unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ph.png",
            "ph.truth.json",
            "ph.mask-pores.png",
            "ph.mask-pigment.png",
            "ph.mask-scars.png",
            "ph.mask-erythema.png"
        ]
    );
    let photo = crate::io::load_photo(&files[0], &crate::io::LoadOptions::default()).unwrap();
    assert_eq!(photo.bits_per_channel, 16);
    assert_eq!(photo.pixels, p.image);
    // serde_json (without its `float_roundtrip` feature) may parse a float one ulp off, so
    // compare the documents as JSON with a relative tolerance.
    let text = std::fs::read_to_string(&files[1]).unwrap();
    let truth: PhantomTruth = serde_json::from_str(&text).unwrap();
    assert_json_close(
        &serde_json::to_value(&truth).unwrap(),
        &serde_json::to_value(&p.truth).unwrap(),
        "truth",
    );
    let mask = image::open(&files[2]).unwrap().into_luma8();
    assert_eq!(mask, p.masks.pores);
    assert!(write_phantom(&p, dir.path(), "a/b").is_err());
}

#[test]
fn crowded_layouts_fail_clearly() {
    let mut spec = small(10);
    spec.pores.count = 5000;
    match render(&spec).unwrap_err() {
        Error::InvalidSetting { name, message } => {
            assert_eq!(name, "pores.count");
            assert!(message.contains("of 5000"), "{message}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn generate_set_writes_named_variants_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let options = SetOptions {
        tones: vec![TonePreset::Brown],
        size_mm: 30.0,
        px_per_mm: 8.0,
        ..SetOptions::default()
    };
    let files = generate_set(dir.path(), 42, &options).unwrap();
    // 10 variants × 6 files + manifest.
    assert_eq!(files.len(), 61);
    assert!(dir.path().join("brown-00-clean.png").exists());
    assert!(dir.path().join("brown-00-combined.jpg").exists());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["phantoms"].as_array().unwrap().len(), 10);
    assert_eq!(manifest["phantoms"][0]["files"][0], "brown-00-clean.png");
    // A scene's seed does not depend on which other tones were rendered.
    let alone = output::scene_spec(42, TonePreset::Brown, 0, &options);
    let all = output::scene_spec(
        42,
        TonePreset::Brown,
        0,
        &SetOptions {
            tones: TonePreset::ALL.to_vec(),
            ..options.clone()
        },
    );
    assert_eq!(alone.seed, all.seed);
}

#[test]
fn set_scenes_validate_at_every_allowed_scale() {
    for px_per_mm in [2.0, 5.0, 10.0, 40.0] {
        for size_mm in [30.0, 100.0] {
            let options = SetOptions {
                px_per_mm,
                size_mm,
                ..SetOptions::default()
            };
            let spec = output::scene_spec(0, TonePreset::Light, 0, &options);
            spec.validate().unwrap();
        }
    }
}

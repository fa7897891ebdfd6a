//! Face stage on the real models: ONNX outputs against the recorded reference, and regions,
//! scale and pose on real portraits (`fixtures/faces/` always; every London-set photo in
//! `../shared/photos` when that folder exists).

use std::path::{Path, PathBuf};

use dermatrack::Error;
use dermatrack::face::{self, FaceModels, FaceRegions, Keypoint};
use dermatrack::io::{LoadOptions, Photo, load_photo};
use dermatrack::quality::QualityReport;
use dermatrack::regions::{RegionMask, ScaleSource, first_overlap, load_custom_regions};
use image::{Rgb, Rgb32FImage};
use ndarray::Array4;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn models() -> FaceModels {
    FaceModels::load(&repo().join("models"), 1).expect("face models load")
}

/// The fixture portrait, always present.
fn fixture() -> Photo {
    load_photo(
        &repo().join("fixtures/faces/london_038_neutral.jpg"),
        &LoadOptions::default(),
    )
    .unwrap()
}

/// The shared photo folder, or `None` (with a message) when this checkout has none.
fn shared_photos() -> Option<PathBuf> {
    let dir = repo().join("../shared/photos");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: {} not found", dir.display());
        None
    }
}

fn region<'a>(fr: &'a FaceRegions, name: &str) -> &'a RegionMask {
    fr.region(name)
        .unwrap_or_else(|| panic!("region {name} missing"))
}

fn centroid(fr: &FaceRegions, name: &str) -> (f64, f64) {
    region(fr, name).centroid().unwrap()
}

fn inside_any(fr: &FaceRegions, p: [f32; 2]) -> Option<String> {
    let (x, y) = (p[0] as u32, p[1] as u32);
    fr.regions
        .iter()
        .find(|r| r.mask.get_pixel(x, y).0[0] != 0)
        .map(|r| r.name.clone())
}

fn landmark(fr: &FaceRegions, i: usize) -> [f32; 2] {
    let p = fr.landmarks.points[i];
    [p[0], p[1]]
}

/// Placement checks for an unmirrored, upright portrait.
fn assert_anatomical(fr: &FaceRegions, label: &str) {
    let names: Vec<&str> = fr.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "forehead",
            "nose",
            "cheek_left",
            "cheek_right",
            "chin",
            "perioral",
            "periorbital_left",
            "periorbital_right"
        ],
        "{label}"
    );
    for r in &fr.regions {
        assert!(r.visible, "{label}: {} hidden", r.name);
        // At least 0.1% of the face box: a real patch of skin, not a sliver.
        let min = (fr.face_width_px * fr.face_width_px * 0.001) as u64;
        assert!(
            r.pixel_count() > min,
            "{label}: {} has {} px",
            r.name,
            r.pixel_count()
        );
    }
    assert_eq!(first_overlap(&fr.regions), None, "{label}: regions overlap");

    let rp = fr.landmarks.right_pupil();
    let lp = fr.landmarks.left_pupil();
    // Unmirrored: the subject's right eye is on the image's left, and agrees with the detector.
    assert!(rp[0] < lp[0], "{label}: pupils {rp:?} {lp:?}");
    let det_r = fr.detection.keypoint(Keypoint::RightEye);
    assert!(
        (det_r[0] - rp[0]).abs() < 0.05 * fr.face_width_px as f32,
        "{label}"
    );
    let eye_y = f64::from(rp[1] + lp[1]) / 2.0;
    let mouth_y = f64::from(landmark(fr, 13)[1] + landmark(fr, 14)[1]) / 2.0;
    let brow_y = f64::from(landmark(fr, 105)[1] + landmark(fr, 334)[1]) / 2.0;

    let forehead = centroid(fr, "forehead");
    let nose = centroid(fr, "nose");
    let chin = centroid(fr, "chin");
    let perioral = centroid(fr, "perioral");
    let (cl, cr) = (centroid(fr, "cheek_left"), centroid(fr, "cheek_right"));
    let (pl, pr) = (
        centroid(fr, "periorbital_left"),
        centroid(fr, "periorbital_right"),
    );
    assert!(
        forehead.1 < brow_y && brow_y < eye_y,
        "{label}: forehead {forehead:?}"
    );
    assert!(chin.1 > mouth_y, "{label}: chin {chin:?} mouth {mouth_y}");
    assert!(
        (perioral.1 - mouth_y).abs() < 0.1 * fr.face_width_px,
        "{label}: perioral {perioral:?}"
    );
    assert!(
        f64::from(rp[0]) < nose.0 && nose.0 < f64::from(lp[0]) && nose.1 > eye_y,
        "{label}: nose {nose:?}"
    );
    // The subject's left cheek is on the image's right.
    assert!(
        cr.0 < nose.0 && nose.0 < cl.0,
        "{label}: cheeks {cr:?} {cl:?}"
    );
    assert!(
        cl.1 > eye_y && cr.1 > eye_y && cl.1 < chin.1,
        "{label}: cheeks"
    );
    // Periorbital: on its own side, between the brow and the cheek.
    assert!(
        pr.0 < nose.0 && nose.0 < pl.0,
        "{label}: periorbital {pr:?} {pl:?}"
    );
    for (p, c) in [(pl, cl), (pr, cr)] {
        assert!(
            brow_y < p.1 && p.1 < c.1,
            "{label}: periorbital {p:?} cheek {c:?}"
        );
    }
    // Excluded features belong to no region: pupils, lips, brows, nostrils.
    for (what, p) in [
        ("right pupil", rp),
        ("left pupil", lp),
        ("upper lip", landmark(fr, 0)),
        ("lower lip", landmark(fr, 17)),
        ("mouth", landmark(fr, 13)),
        ("right brow", landmark(fr, 105)),
        ("left brow", landmark(fr, 334)),
    ] {
        assert_eq!(
            inside_any(fr, p),
            None,
            "{label}: {what} at {p:?} is in a region"
        );
    }
    // Skin just outside the features does belong to the right region.
    // Below each lower lid: halfway between the second (23, 253) and third (230, 450) rings.
    let mid = |a: usize, b: usize| {
        let (p, q) = (landmark(fr, a), landmark(fr, b));
        [(p[0] + q[0]) / 2.0, (p[1] + q[1]) / 2.0]
    };
    assert_eq!(
        inside_any(fr, mid(23, 230)).as_deref(),
        Some("periorbital_right")
    );
    assert_eq!(
        inside_any(fr, mid(253, 450)).as_deref(),
        Some("periorbital_left")
    );
    assert_eq!(
        inside_any(fr, landmark(fr, 151)).as_deref(),
        Some("forehead")
    );
    assert_eq!(inside_any(fr, landmark(fr, 4)).as_deref(), Some("nose"));
    assert_eq!(
        inside_any(fr, landmark(fr, 164)).as_deref(),
        Some("perioral")
    );
    assert_eq!(inside_any(fr, landmark(fr, 199)).as_deref(), Some("chin"));
    assert_eq!(
        inside_any(fr, landmark(fr, 50)).as_deref(),
        Some("cheek_right")
    );
    assert_eq!(
        inside_any(fr, landmark(fr, 280)).as_deref(),
        Some("cheek_left")
    );
}

/// A pixel-centred bilinear rotation about the image centre by `deg`, clockwise on screen,
/// black outside; returns the image and the forward map of points.
fn rotate(img: &Rgb32FImage, deg: f64) -> (Rgb32FImage, impl Fn((f64, f64)) -> (f64, f64)) {
    let (w, h) = img.dimensions();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (s, c) = deg.to_radians().sin_cos();
    let out = Rgb32FImage::from_fn(w, h, |x, y| {
        // Inverse map: rotate the output centre back by −deg.
        let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
        let (sx, sy) = (cx + dx * c + dy * s - 0.5, cy - dx * s + dy * c - 0.5);
        let (x0, y0) = (sx.floor(), sy.floor());
        let (tx, ty) = (sx - x0, sy - y0);
        let mut acc = [0.0f32; 3];
        for (oy, wy) in [(0.0, 1.0 - ty), (1.0, ty)] {
            for (ox, wx) in [(0.0, 1.0 - tx), (1.0, tx)] {
                let (px, py) = (x0 + ox, y0 + oy);
                if px >= 0.0 && py >= 0.0 && px < f64::from(w) && py < f64::from(h) {
                    let p = img.get_pixel(px as u32, py as u32).0;
                    for k in 0..3 {
                        acc[k] += (wx * wy) as f32 * p[k];
                    }
                }
            }
        }
        Rgb(acc)
    });
    let forward = move |(x, y): (f64, f64)| {
        let (dx, dy) = (x - cx, y - cy);
        (cx + dx * c - dy * s, cy + dx * s + dy * c)
    };
    (out, forward)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("models/face/reference_outputs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn detector_matches_reference_outputs() {
    let reference = reference();
    let tol = reference["tolerance_abs"].as_f64().unwrap() as f32;
    let det = &reference["detector"];
    let input = read_f32(&repo().join("models/face/ref_det_input.f32"));
    let input = Array4::from_shape_vec((1, 128, 128, 3), input).unwrap();
    let mut models = models();
    let (regressors, logits) = face::detect::run_detector(&mut models.detector, input).unwrap();
    let mut compared = 0;
    for entry in det["top5"].as_array().unwrap() {
        let i = entry["anchor_index"].as_u64().unwrap() as usize;
        let raw = entry["raw_score"].as_f64().unwrap() as f32;
        assert!(
            (logits[i] - raw).abs() <= tol,
            "anchor {i}: {} vs {raw}",
            logits[i]
        );
        for (k, v) in entry["regressors"].as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap() as f32;
            let got = regressors[i * 16 + k];
            assert!(
                (got - v).abs() <= tol,
                "anchor {i} regressor {k}: {got} vs {v}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 80);
    // No anchor outside the top five beats the recorded sixth.
    let top: Vec<usize> = det["top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["anchor_index"].as_u64().unwrap() as usize)
        .collect();
    let sixth = det["6th_raw_score"].as_f64().unwrap() as f32;
    let best_other = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| !top.contains(i))
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    assert!((best_other - sixth).abs() <= tol, "{best_other} vs {sixth}");
}

#[test]
fn mesh_matches_reference_outputs() {
    let reference = reference();
    let tol = reference["tolerance_abs"].as_f64().unwrap() as f32;
    let mesh = &reference["mesh"];
    let input = read_f32(&repo().join("models/face/ref_mesh_input.f32"));
    let input = Array4::from_shape_vec((1, 192, 192, 3), input).unwrap();
    let mut models = models();
    let (landmarks, presence) = face::mesh::run_mesh(&mut models.mesh, input).unwrap();
    let expected = mesh["landmarks_xyz"].as_array().unwrap();
    assert_eq!(expected.len(), 1404);
    let worst = landmarks
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b.as_f64().unwrap() as f32).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "max abs landmark difference {worst}");
    let logit = mesh["presence_logit"].as_f64().unwrap() as f32;
    assert!((presence - logit).abs() <= tol, "{presence} vs {logit}");
}

#[test]
fn model_with_wrong_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let face_dir = dir.path().join("face");
    std::fs::create_dir(&face_dir).unwrap();
    for f in ["face_detection_short_range.onnx", "face_landmark.onnx"] {
        std::fs::copy(repo().join("models/face").join(f), face_dir.join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(repo().join("models/face/face_models.json")).unwrap();
    let tampered = manifest.replace(
        "8f0189faa429d735858f54e6cfd8275aa1a8df2e3a884d882353bde6e82cd475",
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert_ne!(manifest, tampered, "the mesh sha256 is in the manifest");
    std::fs::write(face_dir.join("face_models.json"), tampered).unwrap();
    let err = FaceModels::load(dir.path(), 1).unwrap_err();
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("face_landmark.onnx"), "{err}");
    // The untampered manifest loads from the same copies.
    std::fs::write(face_dir.join("face_models.json"), manifest).unwrap();
    FaceModels::load(dir.path(), 1).unwrap();
}

#[test]
fn fixture_portrait_has_anatomical_regions() {
    let photo = fixture();
    let mut models = models();
    let start = std::time::Instant::now();
    let fr = face::face_regions_in_photo(&mut models, &photo).unwrap();
    println!("face_regions: {:?}", start.elapsed());
    assert_anatomical(&fr, "london_038_neutral");
    // The detection agrees with the one recorded by the conversion script (PIL bilinear input
    // there, area averaging here): keypoints within 1% of the face box.
    let recorded = [
        [571.2, 585.8],
        [805.6, 581.6],
        [708.1, 681.6],
        [703.1, 817.9],
    ];
    for (k, r) in recorded.iter().enumerate() {
        let got = fr.detection.keypoints[k];
        let d = (got[0] - r[0]).hypot(got[1] - r[1]);
        assert!(
            d < 0.01 * fr.detection.width(),
            "keypoint {k}: {got:?} vs {r:?}"
        );
    }
    assert_eq!(fr.other_faces, 0);
    assert_eq!(fr.landmarks.points.len(), 468);
    assert!(fr.landmarks.presence > 0.99);
    assert_eq!(fr.scale.source, ScaleSource::FaceIpd);
    assert!((2.6..4.2).contains(&fr.scale.px_per_mm), "{:?}", fr.scale);
    let u = fr.scale.relative_uncertainty.unwrap();
    assert!((0.055..0.065).contains(&u), "{u}");
    let mut quality = QualityReport {
        passed: true,
        ..QualityReport::default()
    };
    fr.add_quality_checks(&mut quality);
    assert!(quality.passed, "{quality:?}");
    let names: Vec<&str> = quality.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "face_yaw_deg",
            "face_pitch_deg",
            "face_roll_deg",
            "face_width_px",
            "landmark_presence"
        ]
    );
    if let Ok(dir) = std::env::var("DERMATRACK_FACE_OVERLAY_DIR") {
        let mut img = image::RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
            Rgb(photo
                .pixels
                .get_pixel(x, y)
                .0
                .map(|v| (v * 255.0).round() as u8))
        });
        face::draw_region_outlines(&mut img, &fr.regions);
        img.save(Path::new(&dir).join("london_038_neutral_regions.png"))
            .unwrap();
    }
}

#[test]
fn london_portraits_have_regions_and_plausible_scale() {
    let Some(dir) = shared_photos() else {
        return;
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("london_") && n.ends_with(".jpg"))
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut models = models();
    for path in names {
        let label = path.file_name().unwrap().to_string_lossy().to_string();
        let photo = load_photo(&path, &LoadOptions::default()).unwrap();
        let start = std::time::Instant::now();
        let detections = models.detect(&photo.pixels).unwrap();
        let detect_time = start.elapsed();
        assert_eq!(detections.len(), 1, "{label}: one face");
        let start = std::time::Instant::now();
        let fr = face::face_regions_in_photo(&mut models, &photo).unwrap();
        let elapsed = start.elapsed();
        assert_anatomical(&fr, &label);
        let s = fr.scale.px_per_mm;
        let width_mm = fr.face_width_px / s;
        println!(
            "{label}: {s:.3} px/mm, IPD {:.1} px, face width {:.0} px = {width_mm:.0} mm, \
             yaw {:+.1}° pitch {:+.1}° roll {:+.1}°, detect {detect_time:.0?}, face_regions \
             {elapsed:.0?}",
            fr.ipd_px, fr.face_width_px, fr.pose.yaw_deg, fr.pose.pitch_deg, fr.pose.roll_deg
        );
        // The London set is ≈ 3 px/mm (faces 450–520 px wide in 1350 px frames).
        assert!((2.6..4.2).contains(&s), "{label}: {s} px/mm");
        // Cross-check against an independent anthropometric: the width between the mesh's
        // cheekbone-level silhouette points is 115–165 mm in adults.
        assert!(
            (115.0..165.0).contains(&width_mm),
            "{label}: face {width_mm} mm wide"
        );
        let mut quality = QualityReport {
            passed: true,
            ..QualityReport::default()
        };
        fr.add_quality_checks(&mut quality);
        assert!(quality.passed, "{label}: {quality:?}");
    }
}

#[test]
fn mirrored_photo_swaps_left_and_right() {
    let photo = fixture();
    let mut models = models();
    let fr = face::face_regions(&mut models, &photo.pixels).unwrap();
    let mirrored = image::imageops::flip_horizontal(&photo.pixels);
    let fm = face::face_regions(&mut models, &mirrored).unwrap();
    let w = f64::from(photo.width());
    let tol = 0.02 * fr.face_width_px;
    for (name, mirror) in [
        ("forehead", "forehead"),
        ("nose", "nose"),
        ("chin", "chin"),
        ("perioral", "perioral"),
        ("cheek_left", "cheek_right"),
        ("cheek_right", "cheek_left"),
        ("periorbital_left", "periorbital_right"),
        ("periorbital_right", "periorbital_left"),
    ] {
        // The region called `name` in the mirrored photo is the skin the original called
        // `mirror`, seen in a mirror.
        let (a, b) = (region(&fm, name), region(&fr, mirror));
        let (ca, cb) = (a.centroid().unwrap(), b.centroid().unwrap());
        let d = (ca.0 - (w - cb.0)).hypot(ca.1 - cb.1);
        let ratio = a.pixel_count() as f64 / b.pixel_count() as f64;
        println!("mirror {name} vs {mirror}: area ratio {ratio:.4}, centroid off by {d:.2} px");
        assert!(d < tol, "{name}: centroid {ca:?} vs mirrored {cb:?}");
        assert!((ratio - 1.0).abs() < 0.10, "{name}: area ratio {ratio}");
    }
    // Nothing in the pixels says a photo is mirrored: the mirrored face is read as an
    // unmirrored person, so "cheek_left" stays on the image's right.
    assert!(centroid(&fm, "cheek_left").0 > centroid(&fm, "cheek_right").0);
    assert!(
        (fm.pose.yaw_deg + fr.pose.yaw_deg).abs() < 3.0,
        "{:?} {:?}",
        fr.pose,
        fm.pose
    );
    assert!(
        (fm.pose.roll_deg + fr.pose.roll_deg).abs() < 1.0,
        "{:?} {:?}",
        fr.pose,
        fm.pose
    );
    assert!((fm.scale.px_per_mm / fr.scale.px_per_mm - 1.0).abs() < 0.02);
}

#[test]
fn rotated_photo_keeps_region_areas_and_places() {
    let photo = fixture();
    let mut models = models();
    let fr = face::face_regions(&mut models, &photo.pixels).unwrap();
    let tol = 0.03 * fr.face_width_px;
    for deg in [-20.0, 20.0] {
        let (rotated, forward) = rotate(&photo.pixels, deg);
        let start = std::time::Instant::now();
        let ft = face::face_regions(&mut models, &rotated).unwrap();
        println!("rotated {deg:+}°: face_regions {:?}", start.elapsed());
        assert_eq!(first_overlap(&ft.regions), None);
        for (a, b) in ft.regions.iter().zip(&fr.regions) {
            assert!(a.visible, "{deg}°: {} hidden", a.name);
            let ratio = a.pixel_count() as f64 / b.pixel_count() as f64;
            let expected = forward(b.centroid().unwrap());
            let got = a.centroid().unwrap();
            let d = (got.0 - expected.0).hypot(got.1 - expected.1);
            println!(
                "rotated {deg:+}° {}: area ratio {ratio:.4}, centroid off by {d:.2} px",
                a.name
            );
            assert!(
                (ratio - 1.0).abs() < 0.10,
                "{deg}° {}: area ratio {ratio}",
                a.name
            );
            assert!(
                d < tol,
                "{deg}° {}: centroid {got:?} vs {expected:?}",
                a.name
            );
        }
        let droll = ft.pose.roll_deg - fr.pose.roll_deg;
        assert!((droll - deg).abs() < 2.0, "{deg}°: roll changed by {droll}");
        assert!((ft.pose.yaw_deg - fr.pose.yaw_deg).abs() < 3.0);
        assert!((ft.scale.px_per_mm / fr.scale.px_per_mm - 1.0).abs() < 0.03);
        assert!(first_overlap(&ft.regions).is_none());
    }
}

#[test]
fn half_size_photo_halves_the_scale() {
    let photo = fixture();
    let mut models = models();
    let fr = face::face_regions(&mut models, &photo.pixels).unwrap();
    let (w, h) = (photo.width() / 2, photo.height() / 2);
    let half = image::imageops::resize(&photo.pixels, w, h, image::imageops::FilterType::Triangle);
    let fh = face::face_regions(&mut models, &half).unwrap();
    let ratio = fh.scale.px_per_mm / fr.scale.px_per_mm;
    println!(
        "half size: {:.4} vs {:.4} px/mm, ratio {ratio:.4}",
        fh.scale.px_per_mm, fr.scale.px_per_mm
    );
    assert!((ratio - 0.5).abs() < 0.5 * 0.03, "ratio {ratio}");
    assert_anatomical(&fh, "half size");
    for (a, b) in fh.regions.iter().zip(&fr.regions) {
        let ratio = a.pixel_count() as f64 / b.pixel_count() as f64;
        assert!(
            (ratio - 0.25).abs() < 0.25 * 0.10,
            "{}: area ratio {ratio}",
            a.name
        );
    }
}

#[test]
fn photo_without_a_face_is_a_no_face_error() {
    // Skin-coloured noise: texture and colour of skin, no face.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let img = Rgb32FImage::from_fn(640, 480, |_, _| {
        let n = next() * 0.2 - 0.1;
        Rgb([0.78 + n, 0.58 + n, 0.48 + n])
    });
    let photo = Photo::from_pixels("noise.png", img);
    let mut models = models();
    assert!(models.detect(&photo.pixels).unwrap().is_empty());
    let err = face::face_regions_in_photo(&mut models, &photo).unwrap_err();
    assert!(matches!(err, Error::NoFace { .. }), "{err}");
    assert_eq!(err.kind(), "no_face");
    let message = err.to_string();
    assert!(message.starts_with("noise.png: no face found"), "{message}");
    assert!(
        message.contains("use --regions whole for close-ups"),
        "{message}"
    );

    // A uniform gray frame: nothing either.
    let gray = Rgb32FImage::from_pixel(300, 300, Rgb([0.5, 0.5, 0.5]));
    let err = face::face_regions(&mut models, &gray).unwrap_err();
    assert!(matches!(err, Error::NoFace { path: None, .. }), "{err}");
}

#[test]
fn custom_regions_files_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let valid = write(
        "valid.json",
        r#"{"regions": [
            {"name": "lesion-1", "polygon": [[10, 10], [30, 10], [30, 20], [10, 20]]},
            {"name": "test_patch", "polygon": [[40.5, 5], [60, 25], [40.5, 45]]}
        ]}"#,
    );
    let regions = load_custom_regions(&valid, 100, 50).unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].name, "lesion-1");
    assert_eq!(regions[0].pixel_count(), 200);
    assert_eq!(regions[0].bbox(), Some((10, 10, 30, 20)));
    assert!(regions[1].visible && regions[1].pixel_count() > 300);
    assert_eq!(regions[0].mask.dimensions(), (100, 50));

    for (name, text, expect) in [
        (
            "syntax.json",
            "{\"regions\": [",
            "not a custom-regions file",
        ),
        (
            "unknown_key.json",
            r#"{"regions": [], "extra": 1}"#,
            "unknown field",
        ),
        ("empty.json", r#"{"regions": []}"#, "defines no region"),
        (
            "bad_name.json",
            r#"{"regions": [{"name": "left cheek", "polygon": [[0,0],[9,0],[9,9]]}]}"#,
            "\"left cheek\"",
        ),
        (
            "empty_name.json",
            r#"{"regions": [{"name": "", "polygon": [[0,0],[9,0],[9,9]]}]}"#,
            "names must be",
        ),
        (
            "duplicate.json",
            r#"{"regions": [{"name": "a", "polygon": [[0,0],[9,0],[9,9]]},
                            {"name": "a", "polygon": [[20,0],[29,0],[29,9]]}]}"#,
            "used twice",
        ),
        (
            "two_points.json",
            r#"{"regions": [{"name": "a", "polygon": [[0,0],[9,0]]}]}"#,
            "at least 3",
        ),
        (
            "huge.json",
            r#"{"regions": [{"name": "a", "polygon": [[0,0],[1e300,0],[9,9]]}]}"#,
            "finite",
        ),
        (
            "outside.json",
            r#"{"regions": [{"name": "a", "polygon": [[200,0],[300,0],[300,40]]}]}"#,
            "covers no pixel",
        ),
        (
            "overlap.json",
            r#"{"regions": [{"name": "a", "polygon": [[0,0],[20,0],[20,20],[0,20]]},
                            {"name": "b", "polygon": [[10,10],[30,10],[30,30]]}]}"#,
            "overlap",
        ),
    ] {
        let path = write(name, text);
        let err = load_custom_regions(&path, 100, 50).unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{name}: {err}");
        let message = err.to_string();
        assert!(message.contains(expect), "{name}: {message}");
        assert!(
            message.contains(name),
            "{name}: the message names the file: {message}"
        );
    }
    let missing = load_custom_regions(&dir.path().join("missing.json"), 100, 50).unwrap_err();
    assert!(matches!(missing, Error::Read { .. }), "{missing}");
}

#[test]
fn mirror_pairs_are_mirror_images_on_a_frontal_face() {
    // Checks the hand-written index tables against the mesh itself: on a near-frontal face,
    // each (right, left) pair sits at the same height, symmetric about the midline.
    let photo = fixture();
    let mut models = models();
    let fr = face::face_regions(&mut models, &photo.pixels).unwrap();
    let (rp, lp) = (fr.landmarks.right_pupil(), fr.landmarks.left_pupil());
    let angle = (lp[1] - rp[1]).atan2(lp[0] - rp[0]);
    let (s, c) = angle.sin_cos();
    let (ys, yc) = (fr.pose.yaw_deg as f32).to_radians().sin_cos();
    // Level the eye line, so "same height" and "mirror x" are along the image axes, then undo
    // the small head turn (yaw shifts near and far points differently).
    let level = |i: usize| {
        let p = fr.landmarks.points[i];
        let (x, y) = (p[0] * c + p[1] * s, -p[0] * s + p[1] * c);
        [x * yc + p[2] * ys, y]
    };
    let midline = [
        10usize, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 164, 0, 17, 18, 200, 199,
    ];
    let mid_x = midline.iter().map(|&i| level(i)[0]).sum::<f32>() / midline.len() as f32;
    let tol = 0.025 * fr.face_width_px as f32;
    let mut worst = 0.0f32;
    let pairs = face::anatomy::MIRROR_PAIRS
        .iter()
        .chain(face::anatomy::BILATERAL_PAIRS);
    for &(r, l) in pairs {
        let (a, b) = (level(r), level(l));
        let off_mid = (a[0] + b[0]) / 2.0 - mid_x;
        let off_height = a[1] - b[1];
        worst = worst.max(off_mid.abs().max(off_height.abs()) / fr.face_width_px as f32);
        assert!(
            off_mid.abs() < tol && off_height.abs() < tol,
            "({r}, {l}) is not a mirror pair: {a:?} {b:?}, midline x {mid_x}"
        );
        if r != l {
            // The subject's right is on the image's left in this unmirrored photo.
            assert!(a[0] < b[0], "({r}, {l}) has left and right swapped");
        }
    }
    println!(
        "mirror pairs: worst asymmetry {:.1}% of the face width",
        worst * 100.0
    );
}

#[test]
fn regions_turned_away_are_reported_hidden() {
    let photo = fixture();
    let mut models = models();
    let fr = face::face_regions(&mut models, &photo.pixels).unwrap();
    // Turn the mesh itself about the vertical axis through its centre (MediaPipe's z origin is
    // near the head's centre): nose towards the image's right, subject's left side away.
    let turned = |deg: f32| {
        let mut lm = fr.landmarks.clone();
        let n = lm.points.len() as f32;
        let cx = lm.points.iter().map(|p| p[0]).sum::<f32>() / n;
        let (s, c) = deg.to_radians().sin_cos();
        for p in &mut lm.points {
            let (x, z) = (p[0] - cx, p[2]);
            p[0] = cx + x * c - z * s;
            p[2] = z * c + x * s;
        }
        lm
    };
    let visible = |lm: &face::FaceLandmarks| -> Vec<(String, bool)> {
        face::regions_from_landmarks(lm, photo.width(), photo.height())
            .into_iter()
            .map(|r| (r.name, r.visible))
            .collect()
    };
    for (name, v) in visible(&turned(10.0)) {
        assert!(v, "10° turn: {name} hidden");
    }
    let pose = turned(30.0).pose();
    assert!(
        (pose.yaw_deg - fr.pose.yaw_deg - 30.0).abs() < 3.0,
        "{pose:?}"
    );
    let hidden: Vec<String> = visible(&turned(60.0))
        .into_iter()
        .filter(|(_, v)| !v)
        .map(|(n, _)| n)
        .collect();
    println!("60° turn hides {hidden:?}");
    assert!(hidden.contains(&"cheek_left".to_string()), "{hidden:?}");
    assert!(
        hidden.contains(&"periorbital_left".to_string()),
        "{hidden:?}"
    );
    assert!(!hidden.contains(&"cheek_right".to_string()), "{hidden:?}");
}

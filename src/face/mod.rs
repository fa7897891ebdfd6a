//! Stage 3 for faces: detection → 468-point mesh → anatomical region masks, physical scale and
//! pose checks, producing [`FaceRegions`].
//!
//! Why landmarks rather than a fixed grid: clinicians grade per anatomical region (forehead,
//! malar cheeks, nose, chin, perioral, periorbital), and a longitudinal comparison is only
//! meaningful if "left cheek" is the same skin at every visit whatever the framing. The mesh
//! follows the face, so region masks do too.
//!
//! The models are MediaPipe's short-range face detector and face mesh, converted to ONNX (see
//! `models/face/NOTICE.md`; Apache-2.0). Their input/output contracts are recorded in
//! `models/face/face_models.json` and implemented in [`detect`] and [`mesh`].
//!
//! Pipeline of [`face_regions`]:
//! 1. [`FaceModels::detect`]: letterboxed, area-averaged 128×128 input; anchors decoded,
//!    weighted NMS; the largest face is the subject.
//! 2. [`FaceModels::landmarks`]: square crop 1.5× the box, rotated so the eyes are level,
//!    192×192; 468 points mapped back to the photo.
//! 3. [`regions_from_landmarks`]: polygons built from landmark indices (listed in [`anatomy`]),
//!    filled at photo resolution, exclusive by a fixed priority.
//! 4. [`scale_from_ipd`]: pixels per millimetre from the interpupillary distance.
//! 5. [`FaceRegions::add_quality_checks`]: pose and framing limits.
//!
//! Left and right are always the subject's, read from the face as an unmirrored photo shows it.
//! Nothing in the pixels says that a photo was mirrored (front cameras of phones often save
//! selfies mirrored): such a photo gets `cheek_left` on the subject's right cheek. Capture
//! protocols must keep mirroring off.
//!
//! Known limits: hair over the forehead (fringes) or cheeks is not detected — the forehead ends
//! at the mesh's top, below a typical hairline, and the cheeks stop just inside the silhouette;
//! beards and stubble stay inside the lower regions. Landmark jitter moves region areas by a
//! few percent between captures (≈ 2–6% for the same face mirrored or rotated by 20°).

pub mod anatomy;
pub mod detect;
pub mod mesh;

use std::path::Path;

use image::{GrayImage, Rgb, Rgb32FImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use detect::{FaceDetection, Keypoint};
pub use mesh::{FaceLandmarks, MeshCrop, Pose};

use crate::error::{Error, Result};
use crate::io::Photo;
use crate::quality::QualityReport;
use crate::regions::{RegionMask, Scale, ScaleSource, polygon_spans};
use crate::runtime::ModelSession;

/// The two face models, each with its own ONNX Runtime session. Not `Sync` (sessions run with
/// `&mut self`): create one per worker thread.
#[derive(Debug)]
pub struct FaceModels {
    /// The short-range face detector (`face_detection_short_range.onnx`).
    pub detector: ModelSession,
    /// The 468-point face mesh (`face_landmark.onnx`).
    pub mesh: ModelSession,
}

/// The parts of `models/face/face_models.json` needed to load and verify the models.
#[derive(Debug, Deserialize)]
struct FaceManifest {
    models: FaceManifestModels,
}

#[derive(Debug, Deserialize)]
struct FaceManifestModels {
    face_detector: FaceManifestModel,
    face_mesh: FaceManifestModel,
}

#[derive(Debug, Deserialize)]
struct FaceManifestModel {
    onnx_file: String,
    onnx_sha256: String,
}

/// File name of the face models' manifest inside `<models>/face/`.
pub const FACE_MANIFEST: &str = "face_models.json";

impl FaceModels {
    /// Loads both models from `models_dir/face/`, refusing files whose sha256 differs from the
    /// one recorded in [`FACE_MANIFEST`] (a replaced model would silently move every region).
    pub fn load(models_dir: &Path, intra_threads: usize) -> Result<FaceModels> {
        let dir = models_dir.join("face");
        let manifest_path = dir.join(FACE_MANIFEST);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::Model {
            path: manifest_path.clone(),
            message: format!("cannot read the face models' manifest: {e}"),
        })?;
        let manifest: FaceManifest = serde_json::from_str(&text).map_err(|e| Error::Model {
            path: manifest_path.clone(),
            message: format!("invalid face models' manifest: {e}"),
        })?;
        let open = |m: &FaceManifestModel| -> Result<ModelSession> {
            let file = Path::new(&m.onnx_file);
            if file.components().count() != 1 {
                return Err(Error::Model {
                    path: manifest_path.clone(),
                    message: format!("onnx_file {:?} must be a plain file name", m.onnx_file),
                });
            }
            ModelSession::builder(dir.join(file))
                .intra_threads(intra_threads)
                .expect_sha256(&m.onnx_sha256)
                .build()
        };
        Ok(FaceModels {
            detector: open(&manifest.models.face_detector)?,
            mesh: open(&manifest.models.face_mesh)?,
        })
    }

    /// Detects faces in an sRGB photo (values in `[0, 1]`), best score first, in photo pixel
    /// coordinates. An empty list means no face.
    pub fn detect(&mut self, img: &Rgb32FImage) -> Result<Vec<FaceDetection>> {
        detect::detect(&mut self.detector, img)
    }

    /// Runs the face mesh on the crop MediaPipe derives from a detection (see
    /// [`MeshCrop::from_detection`]). Fails with [`Error::NoFace`] when the mesh's presence
    /// probability is below [`mesh::MIN_PRESENCE`].
    pub fn landmarks(
        &mut self,
        img: &Rgb32FImage,
        detection: &FaceDetection,
    ) -> Result<FaceLandmarks> {
        mesh::landmarks(&mut self.mesh, img, MeshCrop::from_detection(detection))
    }
}

/// Adult mean interpupillary distance, mm: ≈ 63 mm (N. A. Dodgson, "Variation and extrema of
/// human interpupillary distance", Proc. SPIE 5291, Stereoscopic Displays and Virtual Reality
/// Systems XI, 2004, summarising anthropometric surveys; nearly all adults lie within 50–75 mm).
pub const MEAN_IPD_MM: f64 = 63.0;
/// Standard deviation of adult interpupillary distance, mm (≈ 3.5 mm, Dodgson 2004). The
/// person-to-person spread is the dominant error of an IPD-based scale; for a series of one
/// subject it is a constant factor, so changes between sessions are unaffected.
pub const SD_IPD_MM: f64 = 3.5;
/// Assumed standard error of the yaw estimate, degrees, used to propagate the foreshortening
/// correction's uncertainty into the scale's.
pub const YAW_SD_DEG: f64 = 5.0;
/// Largest |yaw| the foreshortening correction is applied for, degrees; beyond it the pose
/// check fails anyway and `1 / cos(yaw)` would amplify the yaw error without bound.
pub const MAX_YAW_CORRECTION_DEG: f64 = 45.0;

/// Pixels per millimetre from the interpupillary distance.
///
/// `px_per_mm = ipd_px / cos(yaw) / MEAN_IPD_MM`: a head turned by `yaw` shows its
/// interpupillary segment foreshortened by `cos(yaw)` (pitch and roll do not shorten it).
/// Relative standard uncertainty `sqrt((SD_IPD_MM / MEAN_IPD_MM)² + (tan|yaw| · σ_yaw)²)`,
/// ≈ 5.6% for a frontal face: the population spread of IPD, plus the yaw estimate's error
/// ([`YAW_SD_DEG`]) through the correction. Not included: the eye-ring centre standing in for
/// the pupil (see [`FaceLandmarks::right_pupil`]). The scale holds at the eyes' depth; skin
/// nearer to or farther from the camera differs by the perspective ratio (≈ 2% for cheeks
/// 2 cm behind the eyes at 1 m; much more for phone selfies at 15 cm).
pub fn scale_from_ipd(ipd_px: f64, yaw_deg: f64) -> Scale {
    let yaw = yaw_deg
        .clamp(-MAX_YAW_CORRECTION_DEG, MAX_YAW_CORRECTION_DEG)
        .to_radians();
    let population = SD_IPD_MM / MEAN_IPD_MM;
    let correction = yaw.tan().abs() * YAW_SD_DEG.to_radians();
    Scale {
        px_per_mm: ipd_px / yaw.cos() / MEAN_IPD_MM,
        source: ScaleSource::FaceIpd,
        relative_uncertainty: Some(population.hypot(correction)),
    }
}

/// Margin around the eyelid margins excluded from the periorbital regions, as a fraction of the
/// interpupillary distance (0.04 ≈ 2.5 mm): lashes, eyeliner and the lid margin are not skin.
pub const EYE_MARGIN_IPD: f32 = 0.04;
/// Margin around the brow outline, fraction of the IPD (≈ 1.3 mm of stray brow hairs).
pub const BROW_MARGIN_IPD: f32 = 0.02;
/// Margin around the lips' outer contour, fraction of the IPD (≈ 1 mm: the vermilion border is
/// a colour edge, and lip colour must not leak into perioral redness).
pub const LIP_MARGIN_IPD: f32 = 0.015;
/// Margin around the nostril openings, fraction of the IPD (≈ 0.6 mm).
pub const NOSTRIL_MARGIN_IPD: f32 = 0.01;
/// A region is hidden when its outline is seen at more than this angle from its surface
/// normal, degrees: at 75° the skin is foreshortened to cos 75° ≈ 26% and lit at a grazing
/// angle, so its numbers are not comparable with a frontal view.
pub const MAX_REGION_TILT_DEG: f64 = 75.0;
/// A bilateral region is hidden when its area is below this fraction of its mirror region's
/// (the head is turned away from it, and the nose hides part of it). Turning the fixture
/// portrait's mesh shows the far cheek reaching it at ≈ 25° of yaw and the far periorbital
/// region at ≈ 40°; the pose check already flags photos beyond 15°.
pub const MIN_MIRROR_AREA_RATIO: f64 = 0.35;

/// Photo coordinates `[x, y]` of landmarks.
fn outline_points(landmarks: &FaceLandmarks, indices: &[usize]) -> Vec<[f32; 2]> {
    indices
        .iter()
        .map(|&i| [landmarks.points[i][0], landmarks.points[i][1]])
        .collect()
}

/// Shoelace area of a polygon, positive when clockwise on screen (y down).
fn signed_area(polygon: &[[f32; 2]]) -> f64 {
    let n = polygon.len();
    (0..n)
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            f64::from(a[0]) * f64::from(b[1]) - f64::from(b[0]) * f64::from(a[1])
        })
        .sum::<f64>()
        / 2.0
}

/// Area of a 3-D polygon's vector area (Newell's method): the area of the surface patch it
/// spans, before projection.
fn vector_area(points: &[[f32; 3]]) -> f64 {
    let n = points.len();
    let mut a = [0.0f64; 3];
    for i in 0..n {
        let (p, q) = (points[i].map(f64::from), points[(i + 1) % n].map(f64::from));
        a[0] += p[1] * q[2] - p[2] * q[1];
        a[1] += p[2] * q[0] - p[0] * q[2];
        a[2] += p[0] * q[1] - p[1] * q[0];
    }
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt() / 2.0
}

/// Moves every vertex of a simple polygon outwards by `d` pixels (miter offset, limited to
/// `2d` at sharp corners), so an exclusion covers a margin around a feature.
fn offset_polygon(polygon: &[[f32; 2]], d: f32) -> Vec<[f32; 2]> {
    let n = polygon.len();
    let sign = if signed_area(polygon) >= 0.0 {
        1.0
    } else {
        -1.0
    };
    let normal = |a: [f32; 2], b: [f32; 2]| {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = dx.hypot(dy).max(1e-6);
        // Outward for a clockwise-on-screen (positive-area) polygon in y-down coordinates.
        [sign * dy / len, -sign * dx / len]
    };
    (0..n)
        .map(|i| {
            let (prev, p, next) = (polygon[(i + n - 1) % n], polygon[i], polygon[(i + 1) % n]);
            let (n1, n2) = (normal(prev, p), normal(p, next));
            let m = [n1[0] + n2[0], n1[1] + n2[1]];
            let len = m[0].hypot(m[1]);
            if len < 1e-6 {
                return p;
            }
            // Miter length d / cos(θ/2), where cos(θ/2) = |n1 + n2| / 2.
            let k = (d * 2.0 / len).min(2.0 * d) / len;
            [p[0] + m[0] * k, p[1] + m[1] * k]
        })
        .collect()
}

/// The features excluded from every region: eyes, brows, lips and nostrils, each with its
/// margin. Returned as polygons in photo pixels.
pub fn exclusion_polygons(landmarks: &FaceLandmarks) -> Vec<Vec<[f32; 2]>> {
    let ipd = landmarks.interpupillary_px() as f32;
    [
        (anatomy::RIGHT_EYE_RING, EYE_MARGIN_IPD),
        (anatomy::LEFT_EYE_RING, EYE_MARGIN_IPD),
        (anatomy::RIGHT_BROW, BROW_MARGIN_IPD),
        (anatomy::LEFT_BROW, BROW_MARGIN_IPD),
        (anatomy::LIPS_OUTER, LIP_MARGIN_IPD),
        (anatomy::RIGHT_NOSTRIL, NOSTRIL_MARGIN_IPD),
        (anatomy::LEFT_NOSTRIL, NOSTRIL_MARGIN_IPD),
    ]
    .iter()
    .map(|&(indices, margin)| offset_polygon(&outline_points(landmarks, indices), margin * ipd))
    .collect()
}

/// Region masks at photo resolution (`width × height`) from the landmarks, in the order of
/// [`anatomy::FACE_REGIONS`].
///
/// Each region is its landmark outline filled at pixel centres, minus the
/// [`exclusion_polygons`]; a pixel inside two outlines goes to the one earlier in
/// [`anatomy::PRIORITY`], so masks never overlap. A region is marked `visible: false` (reported,
/// not scored) when the head turn hides it:
/// * its outline's winding is reversed on screen, or its area is zero (it faces away), or
/// * its outline's projected area is below `cos(`[`MAX_REGION_TILT_DEG`]`)` of its 3-D area
///   (from the mesh's depth; seen too obliquely), or
/// * for bilateral regions, its mask has fewer than [`MIN_MIRROR_AREA_RATIO`] × the pixels of
///   its mirror region's.
pub fn regions_from_landmarks(
    landmarks: &FaceLandmarks,
    width: u32,
    height: u32,
) -> Vec<RegionMask> {
    // Label image: 0 free, 255 excluded, 1 + index into FACE_REGIONS claimed.
    const EXCLUDED: u8 = 255;
    let mut labels = GrayImage::new(width, height);
    let w = width as usize;
    for polygon in exclusion_polygons(landmarks) {
        polygon_spans(&polygon, width, height, |y, x0, x1| {
            let row = y as usize * w;
            labels.as_mut()[row + x0 as usize..row + x1 as usize].fill(EXCLUDED);
        });
    }
    for name in anatomy::PRIORITY {
        let (index, region) = anatomy::FACE_REGIONS
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == *name)
            .expect("PRIORITY names FACE_REGIONS entries");
        let label = index as u8 + 1;
        let polygon = outline_points(landmarks, region.outline);
        polygon_spans(&polygon, width, height, |y, x0, x1| {
            let row = y as usize * w;
            for v in &mut labels.as_mut()[row + x0 as usize..row + x1 as usize] {
                if *v == 0 {
                    *v = label;
                }
            }
        });
    }
    // One pass over the labels fills every mask.
    let mut masks = vec![GrayImage::new(width, height); anatomy::FACE_REGIONS.len()];
    for (i, &label) in labels.as_raw().iter().enumerate() {
        if label != 0 && label != EXCLUDED {
            masks[usize::from(label - 1)].as_mut()[i] = 255;
        }
    }
    let mut regions: Vec<RegionMask> = anatomy::FACE_REGIONS
        .iter()
        .zip(masks)
        .map(|(region, mask)| {
            let polygon = outline_points(landmarks, region.outline);
            let projected = signed_area(&polygon);
            let surface: Vec<[f32; 3]> = region
                .outline
                .iter()
                .map(|&i| landmarks.points[i])
                .collect();
            let tilt_ok =
                projected >= MAX_REGION_TILT_DEG.to_radians().cos() * vector_area(&surface);
            RegionMask {
                name: region.name.to_string(),
                mask,
                visible: projected > 0.0 && tilt_ok,
            }
        })
        .collect();
    let counts: Vec<u64> = regions.iter().map(RegionMask::pixel_count).collect();
    for (i, region) in anatomy::FACE_REGIONS.iter().enumerate() {
        if let Some(mirror) = region.mirror {
            let j = anatomy::FACE_REGIONS
                .iter()
                .position(|r| r.name == mirror)
                .expect("mirror names a FACE_REGIONS entry");
            if (counts[i] as f64) < MIN_MIRROR_AREA_RATIO * counts[j] as f64 {
                regions[i].visible = false;
            }
        }
        if counts[i] == 0 {
            regions[i].visible = false;
        }
    }
    regions
}

/// Limits of the pose and framing checks (see [`FaceRegions::add_quality_checks`]).
///
/// |yaw| and |pitch| up to 15°: region areas and the IPD scale change by 1 − cos 15° ≈ 3.4%,
/// below the scale's own uncertainty; beyond, cheeks and the forehead are seen obliquely and
/// lighting on them changes. Roll is harmless to the geometry (the mesh crop is rotated) but a
/// tilt beyond 20° usually means a non-standard capture.
pub const MAX_ABS_YAW_DEG: f64 = 15.0;
/// See [`MAX_ABS_YAW_DEG`].
pub const MAX_ABS_PITCH_DEG: f64 = 15.0;
/// See [`MAX_ABS_YAW_DEG`].
pub const MAX_ABS_ROLL_DEG: f64 = 20.0;
/// Smallest face width, pixels: below 200 px (≈ 1.4 px/mm) the regions' pixel counts are too
/// small for texture metrics and the landmark error (≈ 1–2 px) is a large share of a region.
pub const MIN_FACE_WIDTH_PX: f64 = 200.0;
/// Smallest accepted landmark presence probability (the mesh's own "is this a face").
pub const MIN_LANDMARK_PRESENCE: f64 = mesh::MIN_PRESENCE as f64;

/// The output of the face stage for one photo.
#[derive(Debug, Clone)]
pub struct FaceRegions {
    /// The detection the regions come from (the largest face in the photo).
    pub detection: FaceDetection,
    /// How many other faces the detector found (ignored; a clinical photo has one subject).
    pub other_faces: usize,
    /// The 468 landmarks.
    pub landmarks: FaceLandmarks,
    /// The region masks, in the order of [`anatomy::FACE_REGIONS`].
    pub regions: Vec<RegionMask>,
    /// Pixels per millimetre from the interpupillary distance ([`scale_from_ipd`]).
    pub scale: Scale,
    /// Head pose ([`FaceLandmarks::pose`]).
    pub pose: Pose,
    /// Interpupillary distance in the photo, pixels (not corrected for yaw).
    pub ipd_px: f64,
    /// Face width in the photo, pixels ([`FaceLandmarks::face_width_px`]).
    pub face_width_px: f64,
}

/// Summary numbers of a [`FaceRegions`], for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaceSummary {
    /// Detector score.
    pub detection_score: f32,
    /// Landmark presence probability.
    pub presence: f32,
    /// Head pose.
    pub pose: Pose,
    /// Interpupillary distance, pixels.
    pub ipd_px: f64,
    /// Face width, pixels.
    pub face_width_px: f64,
}

impl FaceRegions {
    /// Appends the pose and framing checks, each against its documented limit:
    /// `face_yaw_deg`, `face_pitch_deg`, `face_roll_deg` (ranges ±[`MAX_ABS_YAW_DEG`],
    /// ±[`MAX_ABS_PITCH_DEG`], ±[`MAX_ABS_ROLL_DEG`]), `face_width_px`
    /// (≥ [`MIN_FACE_WIDTH_PX`]) and `landmark_presence` (≥ [`MIN_LANDMARK_PRESENCE`]).
    pub fn add_quality_checks(&self, report: &mut QualityReport) {
        add_pose_checks(
            report,
            &self.pose,
            self.face_width_px,
            self.landmarks.presence,
        );
    }

    /// A region by name.
    pub fn region(&self, name: &str) -> Option<&RegionMask> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The numbers a report needs.
    pub fn summary(&self) -> FaceSummary {
        FaceSummary {
            detection_score: self.detection.score,
            presence: self.landmarks.presence,
            pose: self.pose,
            ipd_px: self.ipd_px,
            face_width_px: self.face_width_px,
        }
    }
}

/// The checks of [`FaceRegions::add_quality_checks`] from their inputs.
pub fn add_pose_checks(report: &mut QualityReport, pose: &Pose, face_width_px: f64, presence: f32) {
    report.push_range(
        "face_yaw_deg",
        pose.yaw_deg,
        (-MAX_ABS_YAW_DEG, MAX_ABS_YAW_DEG),
    );
    report.push_range(
        "face_pitch_deg",
        pose.pitch_deg,
        (-MAX_ABS_PITCH_DEG, MAX_ABS_PITCH_DEG),
    );
    report.push_range(
        "face_roll_deg",
        pose.roll_deg,
        (-MAX_ABS_ROLL_DEG, MAX_ABS_ROLL_DEG),
    );
    report.push(
        "face_width_px",
        face_width_px,
        format!(">= {MIN_FACE_WIDTH_PX}"),
        face_width_px >= MIN_FACE_WIDTH_PX,
    );
    let presence = f64::from(presence);
    report.push(
        "landmark_presence",
        presence,
        format!(">= {MIN_LANDMARK_PRESENCE}"),
        presence >= MIN_LANDMARK_PRESENCE,
    );
}

/// Face regions, scale and pose of one photo (sRGB, values in `[0, 1]`).
///
/// The subject is the largest detected face. Fails with [`Error::NoFace`] (without a path; see
/// [`face_regions_in_photo`]) when the detector finds nothing or the mesh rejects the
/// detection — typical of close-ups, where `--regions whole` is the right mode.
pub fn face_regions(models: &mut FaceModels, photo: &Rgb32FImage) -> Result<FaceRegions> {
    let detections = models.detect(photo)?;
    let other_faces = detections.len().saturating_sub(1);
    let Some(detection) = detections
        .into_iter()
        .max_by(|a, b| (a.width() * a.height()).total_cmp(&(b.width() * b.height())))
    else {
        return Err(Error::NoFace {
            path: None,
            reason: "the face detector found no face".into(),
        });
    };
    let landmarks = models.landmarks(photo, &detection)?;
    let regions = regions_from_landmarks(&landmarks, photo.width(), photo.height());
    let pose = landmarks.pose();
    let ipd_px = landmarks.interpupillary_px();
    Ok(FaceRegions {
        scale: scale_from_ipd(ipd_px, pose.yaw_deg),
        face_width_px: landmarks.face_width_px(),
        detection,
        other_faces,
        landmarks,
        regions,
        pose,
        ipd_px,
    })
}

/// [`face_regions`] for a loaded photo: a [`Error::NoFace`] names the photo's path.
pub fn face_regions_in_photo(models: &mut FaceModels, photo: &Photo) -> Result<FaceRegions> {
    face_regions(models, &photo.pixels).map_err(|e| match e {
        Error::NoFace { path: None, reason } => Error::NoFace {
            path: Some(photo.path.clone()),
            reason,
        },
        other => other,
    })
}

/// Outline colours, one per region in order (cycled); chosen to stay distinct from each
/// other and from skin tones.
const OUTLINE_COLORS: [[u8; 3]; 8] = [
    [255, 225, 25],
    [0, 130, 200],
    [60, 180, 75],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [230, 25, 75],
];
/// Colour of the outline of a region marked not visible.
const HIDDEN_COLOR: [u8; 3] = [128, 128, 128];

/// Draws each region's boundary on an overlay image (same size as the masks): every mask
/// pixel with a 4-neighbour outside the mask, in a distinct colour per region (gray for
/// regions marked not visible), thickened for large photos so it stays visible when scaled
/// down.
pub fn draw_region_outlines(img: &mut RgbImage, regions: &[RegionMask]) {
    for (i, region) in regions.iter().enumerate() {
        let color = if region.visible {
            OUTLINE_COLORS[i % OUTLINE_COLORS.len()]
        } else {
            HIDDEN_COLOR
        };
        draw_mask_outline(img, region, color);
    }
}

/// Draws one region's boundary (mask pixels with a 4-neighbour outside the mask) in `color`,
/// thickened for large photos; a mask of another size than the image is skipped.
pub fn draw_mask_outline(img: &mut RgbImage, region: &RegionMask, color: [u8; 3]) {
    let (w, h) = img.dimensions();
    if region.mask.dimensions() != (w, h) {
        return;
    }
    let thickness = (w.max(h) / 600).max(1) as i64;
    let color = Rgb(color);
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < i64::from(w)
            && y < i64::from(h)
            && region.mask.get_pixel(x as u32, y as u32).0[0] != 0
    };
    let Some((x0, y0, x1, y1)) = region.bbox() else {
        return;
    };
    for y in i64::from(y0)..i64::from(y1) {
        for x in i64::from(x0)..i64::from(x1) {
            let edge = inside(x, y)
                && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1));
            if !edge {
                continue;
            }
            for dy in 0..thickness {
                for dx in 0..thickness {
                    let (px, py) = (x - dx, y - dy);
                    if px >= 0 && py >= 0 {
                        img.put_pixel(px as u32, py as u32, color);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipd_scale_and_uncertainty() {
        let s = scale_from_ipd(189.0, 0.0);
        assert!((s.px_per_mm - 3.0).abs() < 1e-12);
        assert_eq!(s.source, ScaleSource::FaceIpd);
        let u = s.relative_uncertainty.unwrap();
        assert!((u - 3.5 / 63.0).abs() < 1e-12);
        // A 30° turn shortens the IPD by cos 30°; the correction restores the scale and the
        // uncertainty grows by the yaw error's share.
        let turned = scale_from_ipd(189.0 * 30f64.to_radians().cos(), 30.0);
        assert!((turned.px_per_mm - 3.0).abs() < 1e-9);
        let expected = (3.5f64 / 63.0).hypot(30f64.to_radians().tan() * 5f64.to_radians());
        assert!((turned.relative_uncertainty.unwrap() - expected).abs() < 1e-12);
        assert!(turned.relative_uncertainty.unwrap() > u);
        // Symmetric in the sign of yaw, and the correction is capped.
        assert_eq!(scale_from_ipd(100.0, -20.0), scale_from_ipd(100.0, 20.0));
        assert_eq!(scale_from_ipd(100.0, 80.0), scale_from_ipd(100.0, 45.0));
    }

    #[test]
    fn signed_area_is_positive_clockwise_on_screen() {
        let square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        assert_eq!(signed_area(&square), 4.0);
        let reversed: Vec<[f32; 2]> = square.iter().rev().copied().collect();
        assert_eq!(signed_area(&reversed), -4.0);
        // A square tilted by 60° about the x axis: projected area is half its own.
        let (s, c) = 60f32.to_radians().sin_cos();
        let tilted: Vec<[f32; 3]> = square.iter().map(|p| [p[0], p[1] * c, p[1] * s]).collect();
        assert!((vector_area(&tilted) - 4.0).abs() < 1e-5);
    }

    #[test]
    fn offset_polygon_grows_by_the_margin_either_winding() {
        let square = [[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]];
        for poly in [square.to_vec(), square.iter().rev().copied().collect()] {
            let grown = offset_polygon(&poly, 2.0);
            let (lo, hi) = grown.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| {
                (lo.min(p[0]).min(p[1]), hi.max(p[0]).max(p[1]))
            });
            assert!(
                (lo - 8.0).abs() < 1e-4 && (hi - 22.0).abs() < 1e-4,
                "{grown:?}"
            );
        }
    }

    #[test]
    fn pose_checks_use_the_documented_limits() {
        let mut report = QualityReport {
            passed: true,
            ..QualityReport::default()
        };
        let pose = Pose {
            yaw_deg: 14.0,
            pitch_deg: -14.0,
            roll_deg: 19.0,
        };
        add_pose_checks(&mut report, &pose, 200.0, 0.5);
        assert!(report.passed, "{report:?}");
        for (pose, width, presence, failing) in [
            (
                Pose {
                    yaw_deg: -16.0,
                    ..pose
                },
                300.0,
                0.9,
                "face_yaw_deg",
            ),
            (
                Pose {
                    pitch_deg: 15.5,
                    ..pose
                },
                300.0,
                0.9,
                "face_pitch_deg",
            ),
            (
                Pose {
                    roll_deg: -21.0,
                    ..pose
                },
                300.0,
                0.9,
                "face_roll_deg",
            ),
            (pose, 199.0, 0.9, "face_width_px"),
            (pose, 300.0, 0.4, "landmark_presence"),
        ] {
            let mut report = QualityReport::default();
            add_pose_checks(&mut report, &pose, width, presence);
            assert!(!report.passed);
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(failed, [failing]);
        }
    }

    #[test]
    fn outlines_are_drawn_on_region_boundaries_only() {
        let mut a = RegionMask::from_polygon(
            "a",
            40,
            30,
            &[[5.0, 5.0], [15.0, 5.0], [15.0, 15.0], [5.0, 15.0]],
        );
        let b = RegionMask::from_polygon(
            "b",
            40,
            30,
            &[[20.0, 5.0], [30.0, 5.0], [30.0, 15.0], [20.0, 15.0]],
        );
        let mut img = RgbImage::from_pixel(40, 30, Rgb([1, 2, 3]));
        draw_region_outlines(&mut img, &[a.clone(), b.clone()]);
        let color_of = |x, y| img.get_pixel(x, y).0;
        assert_eq!(color_of(5, 5), OUTLINE_COLORS[0]);
        assert_eq!(color_of(14, 9), OUTLINE_COLORS[0]);
        assert_eq!(color_of(20, 14), OUTLINE_COLORS[1]);
        assert_eq!(color_of(10, 10), [1, 2, 3], "interior untouched");
        assert_eq!(color_of(2, 2), [1, 2, 3], "exterior untouched");
        // 10×10 squares: 36 boundary pixels each.
        let drawn = img.pixels().filter(|p| p.0 != [1, 2, 3]).count();
        assert_eq!(drawn, 72);
        // Hidden regions are drawn in gray.
        a.visible = false;
        let mut img = RgbImage::new(40, 30);
        draw_region_outlines(&mut img, &[a]);
        assert_eq!(img.get_pixel(5, 5).0, HIDDEN_COLOR);
    }

    #[test]
    fn no_face_error_names_the_photo_and_the_remedy() {
        let err = Error::NoFace {
            path: Some("a/b.jpg".into()),
            reason: "the face detector found no face".into(),
        };
        assert_eq!(
            err.to_string(),
            "a/b.jpg: no face found: the face detector found no face; use --regions whole for \
             close-ups"
        );
        assert_eq!(err.kind(), "no_face");
        let err = Error::NoFace {
            path: None,
            reason: "x".into(),
        };
        assert!(err.to_string().starts_with("no face found: x;"));
    }
}

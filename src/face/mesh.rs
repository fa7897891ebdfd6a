//! The 468-point face mesh (MediaPipe Face Mesh; Kartynnik et al., "Real-time Facial Surface
//! Geometry from Monocular Video on Mobile GPUs", arXiv:1907.06724, 2019), the crop it runs
//! on, and the geometry derived from it: pupils, face width and head pose.

use image::Rgb32FImage;
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use super::anatomy::{
    BILATERAL_PAIRS, FACE_WIDTH_PAIR, LEFT_EYE_RING, MIDLINE_BOTTOM, MIDLINE_TOP, RIGHT_EYE_RING,
};
use super::detect::{FaceDetection, Keypoint, box_resize, sigmoid};
use crate::error::{Error, Result};
use crate::runtime::ModelSession;

/// Side of the mesh model's square input, pixels.
pub const MESH_INPUT: u32 = 192;
/// Number of mesh landmarks.
pub const LANDMARK_COUNT: usize = 468;
/// The mesh crop is this many times the detector box's longer side (MediaPipe's
/// `RectTransformationCalculator` `scale_x = scale_y = 1.5`, `square_long`): the box spans
/// brow to chin, the mesh needs the forehead and jaw line with margin.
pub const CROP_SCALE: f32 = 1.5;
/// Below this presence probability the mesh says the crop holds no face.
pub const MIN_PRESENCE: f32 = 0.5;

/// The square, rotated crop the mesh ran on, in photo pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MeshCrop {
    /// Centre `[x, y]`.
    pub center: [f32; 2],
    /// Side length.
    pub side: f32,
    /// Rotation of the crop's x axis from the photo's x axis, radians, clockwise on screen
    /// (photo y points down): the eye line's angle, so the eyes are level in the crop.
    pub angle: f32,
}

impl MeshCrop {
    /// The crop MediaPipe's face-landmark graph derives from a detection: centred on the box,
    /// side 1.5 × its longer side, rotated by the angle of the line from the subject's right
    /// eye to their left eye.
    pub fn from_detection(det: &FaceDetection) -> MeshCrop {
        let r = det.keypoint(Keypoint::RightEye);
        let l = det.keypoint(Keypoint::LeftEye);
        MeshCrop {
            center: det.center(),
            side: CROP_SCALE * det.width().max(det.height()),
            angle: (l[1] - r[1]).atan2(l[0] - r[0]),
        }
    }

    /// Crop coordinates (`0..192` on each axis, continuous) → photo pixels.
    pub fn to_photo(&self, p: [f32; 2]) -> [f32; 2] {
        let s = self.side / MESH_INPUT as f32;
        let (sin, cos) = self.angle.sin_cos();
        let (u, v) = (
            (p[0] - MESH_INPUT as f32 / 2.0) * s,
            (p[1] - MESH_INPUT as f32 / 2.0) * s,
        );
        [
            self.center[0] + u * cos - v * sin,
            self.center[1] + u * sin + v * cos,
        ]
    }

    /// Photo pixels → crop coordinates; the inverse of [`MeshCrop::to_photo`].
    pub fn to_crop(&self, p: [f32; 2]) -> [f32; 2] {
        let s = self.side / MESH_INPUT as f32;
        let (sin, cos) = self.angle.sin_cos();
        let (dx, dy) = (p[0] - self.center[0], p[1] - self.center[1]);
        [
            (dx * cos + dy * sin) / s + MESH_INPUT as f32 / 2.0,
            (-dx * sin + dy * cos) / s + MESH_INPUT as f32 / 2.0,
        ]
    }
}

/// Bilinear sample at continuous coordinates (pixel centres at `+0.5`); outside the image
/// counts as black, like MediaPipe's zero border.
fn bilinear(img: &Rgb32FImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (fx, fy) = (x - 0.5, y - 0.5);
    let (x0, y0) = (fx.floor() as i64, fy.floor() as i64);
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let mut out = [0.0f32; 3];
    for (dy, wy) in [(0, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0, 1.0 - tx), (1, tx)] {
            let (sx, sy) = (x0 + dx, y0 + dy);
            if sx < 0 || sy < 0 || sx >= w || sy >= h {
                continue;
            }
            let p = img.get_pixel(sx as u32, sy as u32).0;
            for c in 0..3 {
                out[c] += wx * wy * p[c];
            }
        }
    }
    out
}

/// Samples the crop into the mesh's 192×192 RGB `[0, 1]` NHWC input.
///
/// When one output pixel covers more than two photo pixels, the part of the photo under the
/// crop is first area-averaged by an integer factor so the bilinear warp that follows never
/// skips pixels (skipping would alias skin texture and make landmarks depend on resolution).
pub(crate) fn mesh_input(img: &Rgb32FImage, crop: &MeshCrop) -> Result<Array4<f32>> {
    let n = MESH_INPUT as usize;
    let step = crop.side / MESH_INPUT as f32;
    let factor = step.floor().max(1.0);
    // Bounding box of the rotated square, clipped to the photo.
    let corners =
        [[0.0, 0.0], [192.0, 0.0], [0.0, 192.0], [192.0, 192.0]].map(|c| crop.to_photo(c));
    let (w, h) = (img.width() as f32, img.height() as f32);
    let bx0 = corners
        .iter()
        .map(|c| c[0])
        .fold(f32::INFINITY, f32::min)
        .floor()
        .clamp(0.0, w);
    let by0 = corners
        .iter()
        .map(|c| c[1])
        .fold(f32::INFINITY, f32::min)
        .floor()
        .clamp(0.0, h);
    let bx1 = corners
        .iter()
        .map(|c| c[0])
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil()
        .clamp(0.0, w);
    let by1 = corners
        .iter()
        .map(|c| c[1])
        .fold(f32::NEG_INFINITY, f32::max)
        .ceil()
        .clamp(0.0, h);
    let mut input = Array4::<f32>::zeros((1, n, n, 3));
    if bx1 - bx0 < 1.0 || by1 - by0 < 1.0 {
        return Ok(input); // The crop misses the photo entirely: all black.
    }
    let (bw, bh) = ((bx1 - bx0) as u32, (by1 - by0) as u32);
    let region = image::imageops::crop_imm(img, bx0 as u32, by0 as u32, bw, bh).to_image();
    let (source, sx, sy) = if factor >= 2.0 {
        let (rw, rh) = (
            ((bw as f32 / factor).round() as u32).max(1),
            ((bh as f32 / factor).round() as u32).max(1),
        );
        let reduced = box_resize(&region, rw, rh)?;
        (reduced, bw as f32 / rw as f32, bh as f32 / rh as f32)
    } else {
        (region, 1.0, 1.0)
    };
    for j in 0..n {
        for i in 0..n {
            let p = crop.to_photo([i as f32 + 0.5, j as f32 + 0.5]);
            let v = bilinear(&source, (p[0] - bx0) / sx, (p[1] - by0) / sy);
            for c in 0..3 {
                input[[0, j, i, c]] = v[c];
            }
        }
    }
    Ok(input)
}

/// Runs the mesh on a prepared `[1, 192, 192, 3]` input and returns its raw outputs:
/// `(468·3 landmark coordinates in crop units, presence logit)`. Public so the ONNX file can be
/// checked against `models/face/reference_outputs.json`.
pub fn run_mesh(session: &mut ModelSession, input: Array4<f32>) -> Result<(Vec<f32>, f32)> {
    let err = |e: ort::Error| Error::Inference(format!("face mesh: {e}"));
    let tensor = ort::value::Tensor::from_array(input).map_err(err)?;
    let outputs = session
        .session
        .run(ort::inputs!["input_1" => tensor])
        .map_err(err)?;
    let landmarks: Vec<f32> = outputs["conv2d_21"]
        .try_extract_array::<f32>()
        .map_err(err)?
        .iter()
        .copied()
        .collect();
    let presence: Vec<f32> = outputs["conv2d_31"]
        .try_extract_array::<f32>()
        .map_err(err)?
        .iter()
        .copied()
        .collect();
    if landmarks.len() != LANDMARK_COUNT * 3 || presence.len() != 1 {
        return Err(Error::Inference(format!(
            "face mesh: expected {} coordinates and 1 presence logit, got {} and {}",
            LANDMARK_COUNT * 3,
            landmarks.len(),
            presence.len()
        )));
    }
    Ok((landmarks, presence[0]))
}

/// Head orientation in degrees. Signs are defined on the image, so a mirrored photo negates
/// yaw and roll and keeps pitch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pose {
    /// Turn about the vertical axis; positive when the nose points towards the image's right
    /// (in an unmirrored photo, the subject turned towards their own left).
    pub yaw_deg: f64,
    /// Nod about the ear-to-ear axis; positive when the chin is raised.
    pub pitch_deg: f64,
    /// In-plane tilt of the eye line (right pupil → left pupil) from the image's x axis,
    /// positive clockwise on screen (in an unmirrored photo: tilted towards the subject's left
    /// shoulder).
    pub roll_deg: f64,
}

/// The face mesh's landmarks in photo coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaceLandmarks {
    /// 468 points `[x, y, z]`: x, y in photo pixels; z is MediaPipe's relative depth (smaller is
    /// closer to the camera, origin near the head's centre) rescaled to photo pixels.
    pub points: Vec<[f32; 3]>,
    /// Face-presence probability from the mesh, 0..1 (always ≥ [`MIN_PRESENCE`] here).
    pub presence: f32,
    /// The crop the mesh ran on.
    pub crop: MeshCrop,
}

fn sub3(a: [f32; 3], b: [f32; 3]) -> [f64; 3] {
    [
        f64::from(a[0] - b[0]),
        f64::from(a[1] - b[1]),
        f64::from(a[2] - b[2]),
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Pose from landmark geometry; see [`FaceLandmarks::pose`].
pub(crate) fn pose_from_points(points: &[[f32; 3]]) -> Pose {
    // Ear-to-ear axis: the sum of (subject's left − subject's right) over bilateral pairs.
    let mut lateral = [0.0f64; 3];
    for &(r, l) in BILATERAL_PAIRS {
        let d = sub3(points[l], points[r]);
        for c in 0..3 {
            lateral[c] += d[c];
        }
    }
    let norm = dot(lateral, lateral).sqrt().max(f64::MIN_POSITIVE);
    let lateral = lateral.map(|v| v / norm);
    let yaw = lateral[2].atan2(lateral[0].hypot(lateral[1]));
    // Forehead → chin, made perpendicular to the lateral axis.
    let down = sub3(points[MIDLINE_BOTTOM], points[MIDLINE_TOP]);
    let along = dot(down, lateral);
    let down = [
        down[0] - along * lateral[0],
        down[1] - along * lateral[1],
        down[2] - along * lateral[2],
    ];
    let pitch = (-down[2]).atan2(down[0].hypot(down[1]));
    let (rp, lp) = (
        ring_center(points, RIGHT_EYE_RING),
        ring_center(points, LEFT_EYE_RING),
    );
    let roll = f64::from(lp[1] - rp[1]).atan2(f64::from(lp[0] - rp[0]));
    Pose {
        yaw_deg: yaw.to_degrees(),
        pitch_deg: pitch.to_degrees(),
        roll_deg: roll.to_degrees(),
    }
}

/// Mean `[x, y]` of the given landmarks.
pub(crate) fn ring_center(points: &[[f32; 3]], ring: &[usize]) -> [f32; 2] {
    let n = ring.len() as f32;
    let (sx, sy) = ring.iter().fold((0.0, 0.0), |(sx, sy), &i| {
        (sx + points[i][0], sy + points[i][1])
    });
    [sx / n, sy / n]
}

impl FaceLandmarks {
    /// Centre of the subject's right eye `[x, y]` (on the image's left in an unmirrored photo).
    ///
    /// The 468-point mesh has no iris points, so the pupil is taken as the mean of the 16
    /// landmarks on the eyelid margin. For a gaze into the camera the pupil sits near the
    /// palpebral fissure's centre; gaze to one side shifts the true pupil by up to ≈ 2 mm,
    /// which both eyes share, so the interpupillary distance changes far less.
    pub fn right_pupil(&self) -> [f32; 2] {
        ring_center(&self.points, RIGHT_EYE_RING)
    }

    /// Centre of the subject's left eye; see [`FaceLandmarks::right_pupil`].
    pub fn left_pupil(&self) -> [f32; 2] {
        ring_center(&self.points, LEFT_EYE_RING)
    }

    /// Distance between the two pupil estimates in the photo, pixels (not corrected for yaw).
    pub fn interpupillary_px(&self) -> f64 {
        let (r, l) = (self.right_pupil(), self.left_pupil());
        f64::from(l[0] - r[0]).hypot(f64::from(l[1] - r[1]))
    }

    /// Face width in the photo, pixels: the distance between the mesh's outermost silhouette
    /// points at cheekbone level (landmarks 234 and 454, just in front of the ears).
    pub fn face_width_px(&self) -> f64 {
        let (a, b) = (
            self.points[FACE_WIDTH_PAIR.0],
            self.points[FACE_WIDTH_PAIR.1],
        );
        f64::from(b[0] - a[0]).hypot(f64::from(b[1] - a[1]))
    }

    /// Head pose, estimated from the mesh's own 3-D points.
    ///
    /// Method (a geometric estimate, not a PnP fit: MediaPipe's canonical face model is not
    /// available offline):
    /// * the ear-to-ear axis `a` is the normalised sum of `left − right` over the bilateral
    ///   landmark pairs in [`super::anatomy::BILATERAL_PAIRS`] (mirror-image points, so every
    ///   difference is parallel to the head's transverse axis);
    ///   `yaw = atan2(a_z, hypot(a_x, a_y))`;
    /// * the forehead-to-chin vector `d` (landmarks 10 → 152) with its component along `a`
    ///   removed gives `pitch = atan2(−d_z, hypot(d_x, d_y))`. No offset is subtracted: on the
    ///   ten London-set studio portraits (camera at eye level) this reads −6.8° … +10.5°,
    ///   mean +0.9°, so a level head reads ≈ 0° to within the subjects' own variation;
    /// * roll is the angle of the pupil line (`atan2(Δy, Δx)`), as used for the mesh crop.
    ///
    /// Accuracy limits: the mesh's z is a learned single-image estimate (weak perspective,
    /// "roughly the same scale as x" per MediaPipe), so yaw and pitch are only as good as it:
    /// exact for ideal mirror-symmetric points (tested), on photos expect a few degrees of
    /// error and underestimation beyond ≈ 30°, where the far side's points are guessed.
    /// Pitch also carries the subject's facial profile (a sloping forehead reads as chin-up)
    /// beyond the fixed offset. Good enough to flag photos outside ±15°, not to measure pose.
    pub fn pose(&self) -> Pose {
        pose_from_points(&self.points)
    }
}

/// Runs the mesh on a detection's crop and maps the points back to the photo.
pub(crate) fn landmarks(
    session: &mut ModelSession,
    img: &Rgb32FImage,
    crop: MeshCrop,
) -> Result<FaceLandmarks> {
    let input = mesh_input(img, &crop)?;
    let (raw, logit) = run_mesh(session, input)?;
    let presence = sigmoid(logit);
    if presence.is_nan() || presence < MIN_PRESENCE {
        return Err(Error::NoFace {
            path: None,
            reason: format!(
                "the face mesh sees no face in the detected box (presence {presence:.2} < \
                 {MIN_PRESENCE})"
            ),
        });
    }
    let s = crop.side / MESH_INPUT as f32;
    let points = raw
        .chunks_exact(3)
        .map(|p| {
            let [x, y] = crop.to_photo([p[0], p[1]]);
            [x, y, p[2] * s]
        })
        .collect();
    Ok(FaceLandmarks {
        points,
        presence,
        crop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_transform_round_trips() {
        let crop = MeshCrop {
            center: [400.0, 300.0],
            side: 480.0,
            angle: 0.3,
        };
        for p in [[0.0, 0.0], [96.0, 96.0], [191.0, 12.5], [40.0, 170.0]] {
            let q = crop.to_crop(crop.to_photo(p));
            assert!(
                (q[0] - p[0]).abs() < 1e-3 && (q[1] - p[1]).abs() < 1e-3,
                "{p:?} {q:?}"
            );
        }
        assert_eq!(crop.to_photo([96.0, 96.0]), [400.0, 300.0]);
        // The crop's x axis runs along the rotated eye line.
        let a = crop.to_photo([96.0, 96.0]);
        let b = crop.to_photo([192.0, 96.0]);
        let angle = (b[1] - a[1]).atan2(b[0] - a[0]);
        assert!((angle - 0.3).abs() < 1e-5);
        assert!(((b[0] - a[0]).hypot(b[1] - a[1]) - 240.0).abs() < 1e-3);
    }

    #[test]
    fn crop_sampling_matches_the_photo_and_pads_black() {
        // A horizontal gradient; an unrotated crop 1:1 must reproduce it.
        let img = Rgb32FImage::from_fn(400, 400, |x, _| {
            let v = x as f32 / 400.0;
            image::Rgb([v, v, v])
        });
        let crop = MeshCrop {
            center: [200.0, 200.0],
            side: 192.0,
            angle: 0.0,
        };
        let input = mesh_input(&img, &crop).unwrap();
        for i in [0usize, 50, 191] {
            let expected = (104 + i) as f32 / 400.0;
            assert!((input[[0, 10, i, 1]] - expected).abs() < 1e-5);
        }
        // A crop hanging over the left edge is black there.
        let crop = MeshCrop {
            center: [0.0, 200.0],
            side: 192.0,
            angle: 0.0,
        };
        let input = mesh_input(&img, &crop).unwrap();
        assert_eq!(input[[0, 100, 10, 0]], 0.0);
        assert!(input[[0, 100, 150, 0]] > 0.0);
    }

    #[test]
    fn large_crops_are_area_averaged_first() {
        // A 1-px checkerboard averages to 0.5 under area averaging; point-sampling a
        // downscale by 5 would give 0 or 1.
        let img = Rgb32FImage::from_fn(2000, 2000, |x, y| {
            let v = ((x + y) % 2) as f32;
            image::Rgb([v, v, v])
        });
        let crop = MeshCrop {
            center: [1000.0, 1000.0],
            side: 960.0,
            angle: 0.2,
        };
        let input = mesh_input(&img, &crop).unwrap();
        for v in input.iter() {
            assert!((v - 0.5).abs() < 0.02, "{v}");
        }
    }

    /// Mirror-symmetric synthetic points posed by a known rotation.
    fn posed_points(yaw: f64, pitch: f64, roll: f64) -> Vec<[f32; 3]> {
        let mut base = vec![[0.0f64; 3]; LANDMARK_COUNT];
        // Bilateral pairs at mirrored positions; arbitrary but fixed geometry.
        for (k, &(r, l)) in BILATERAL_PAIRS.iter().enumerate() {
            let (x, y, z) = (
                20.0 + 7.0 * k as f64 % 60.0,
                -60.0 + 9.0 * k as f64 % 130.0,
                -(k as f64 % 5.0) * 6.0,
            );
            base[l] = [x, y, z];
            base[r] = [-x, y, z];
        }
        for &i in RIGHT_EYE_RING.iter().chain(LEFT_EYE_RING) {
            let side = if RIGHT_EYE_RING.contains(&i) {
                -1.0
            } else {
                1.0
            };
            base[i] = [side * 32.0, -20.0, -10.0];
        }
        base[MIDLINE_TOP] = [0.0, -90.0, 0.0];
        base[MIDLINE_BOTTOM] = [0.0, 110.0, 0.0];
        // Rotation: yaw about y (nose to +x gives left side +z), pitch about x (chin up gives
        // chin −z), roll about z (clockwise on screen).
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sp, cp) = pitch.to_radians().sin_cos();
        let (sr, cr) = roll.to_radians().sin_cos();
        base.iter()
            .map(|&[x, y, z]| {
                // Yaw: the left side (x > 0) moves away (+z) when the nose turns to +x.
                let (x, z) = (x * cy - z * sy, z * cy + x * sy);
                // Pitch: chin (y > 0) moves closer (−z) when raised.
                let (y, z) = (y * cp + z * sp, z * cp - y * sp);
                let (x, y) = (x * cr - y * sr, x * sr + y * cr);
                [x as f32, y as f32, z as f32]
            })
            .collect()
    }

    #[test]
    fn pose_is_exact_for_symmetric_points() {
        for (yaw, pitch, roll) in [
            (0.0, 0.0, 0.0),
            (20.0, 0.0, 0.0),
            (-35.0, 0.0, 0.0),
            (0.0, 12.0, 0.0),
            (0.0, -18.0, 0.0),
            (0.0, 0.0, 25.0),
            (10.0, -8.0, -15.0),
        ] {
            let p = pose_from_points(&posed_points(yaw, pitch, roll));
            assert!((p.yaw_deg - yaw).abs() < 0.5, "yaw {yaw}: {p:?}");
            assert!((p.pitch_deg - pitch).abs() < 0.5, "pitch {pitch}: {p:?}");
            // The eye ring is level in the head frame, so roll is exact when yaw = pitch = 0 and
            // close otherwise (the eye line's projection tilts slightly under combined turns).
            assert!((p.roll_deg - roll).abs() < 2.0, "roll {roll}: {p:?}");
        }
    }
}

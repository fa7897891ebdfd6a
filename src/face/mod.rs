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

pub mod anatomy;
pub mod detect;
pub mod mesh;

use std::path::Path;

use image::Rgb32FImage;
use serde::Deserialize;

pub use detect::{FaceDetection, Keypoint};
pub use mesh::{FaceLandmarks, MeshCrop, Pose};

use crate::error::{Error, Result};
use crate::io::Photo;
use crate::regions::{RegionMask, Scale, ScaleSource};
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

/// Placeholder until regions are built.
pub fn scale_from_ipd() {}

/// Placeholder until regions are built.
pub fn regions_from_landmarks() {}

/// Placeholder.
#[derive(Debug)]
pub struct FaceRegions;

impl FaceRegions {
    /// Placeholder.
    pub fn add_quality_checks(&self) {}
}

/// Placeholder.
pub fn face_regions(_models: &mut FaceModels, _photo: &Rgb32FImage) -> Result<FaceRegions> {
    let _ = (RegionMask::whole, ScaleSource::FaceIpd);
    let _: Option<Photo> = None;
    let _: Option<Scale> = None;
    Ok(FaceRegions)
}

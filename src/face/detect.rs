//! Face detection with MediaPipe's short-range BlazeFace detector.
//!
//! The model contract (input, anchors, decoding, NMS) is recorded in
//! `models/face/face_models.json` by the script that converted the model; this file implements
//! it. BlazeFace: Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on
//! Mobile GPUs", arXiv:1907.05047 (2019).
//!
//! Coordinates everywhere in [`crate::face`] are continuous photo pixels: pixel `(i, j)` covers
//! `[i, i+1) × [j, j+1)`, so its centre is `(i + 0.5, j + 0.5)`.

use fast_image_resize as fr;
use image::Rgb32FImage;
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::ModelSession;

/// Side of the detector's square input, pixels.
pub const DETECTOR_INPUT: u32 = 128;
/// Number of SSD anchors of the short-range model.
pub const ANCHOR_COUNT: usize = 896;
/// Anchor strides (SsdAnchorsCalculator `strides`); layers with equal stride share one grid.
const ANCHOR_STRIDES: [u32; 4] = [8, 16, 16, 16];
/// Anchor centre offset within a grid cell.
const ANCHOR_OFFSET: f32 = 0.5;
/// Detections below this probability are dropped (MediaPipe's `min_score_thresh`).
pub const DETECTION_SCORE_THRESHOLD: f32 = 0.5;
/// Logits are clipped to ±this before the sigmoid (MediaPipe's `score_clipping_thresh`).
const SCORE_CLIP: f32 = 100.0;
/// Boxes overlapping the cluster's best box by more than this IoU are merged into it.
pub const NMS_IOU: f32 = 0.3;

/// Index of each detector keypoint in [`FaceDetection::keypoints`].
///
/// "Right" and "left" are the subject's: in an unmirrored photo the subject's right eye is on
/// the image's left (verified on `london_038_neutral.jpg`, see `face_models.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keypoint {
    /// Centre of the subject's right eye.
    RightEye = 0,
    /// Centre of the subject's left eye.
    LeftEye = 1,
    /// Tip of the nose.
    NoseTip = 2,
    /// Centre of the mouth.
    MouthCenter = 3,
    /// The subject's right tragion (ear).
    RightEarTragion = 4,
    /// The subject's left tragion (ear).
    LeftEarTragion = 5,
}

/// One detected face, in photo pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceDetection {
    /// Detector probability (sigmoid of the best anchor's logit in the cluster), 0..1.
    pub score: f32,
    /// Face box `[x0, y0, x1, y1]`; BlazeFace boxes span roughly brow to chin, ear to ear.
    pub bbox: [f32; 4],
    /// Six keypoints `[x, y]`, indexed by [`Keypoint`].
    pub keypoints: [[f32; 2]; 6],
}

impl FaceDetection {
    /// One keypoint.
    pub fn keypoint(&self, k: Keypoint) -> [f32; 2] {
        self.keypoints[k as usize]
    }

    /// Box width in pixels.
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    /// Box height in pixels.
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    /// Box centre `[x, y]`.
    pub fn center(&self) -> [f32; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }
}

/// How the photo was placed into the detector's square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Letterbox {
    /// Input pixels per photo pixel, horizontally and vertically (equal up to rounding).
    pub scale: [f32; 2],
    /// Offset of the photo's top-left corner in the input, pixels.
    pub pad: [f32; 2],
}

impl Letterbox {
    /// Detector-normalised `[0, 1]` coordinates → photo pixels.
    pub fn to_photo(self, xy: [f32; 2]) -> [f32; 2] {
        let n = DETECTOR_INPUT as f32;
        [
            (xy[0] * n - self.pad[0]) / self.scale[0],
            (xy[1] * n - self.pad[1]) / self.scale[1],
        ]
    }
}

/// The detector's input tensor: the photo letterboxed (aspect kept, black padding — MediaPipe's
/// `keep_aspect_ratio` with `BORDER_ZERO`) into 128×128, RGB in `[-1, 1]`, NHWC.
///
/// Downscaling averages areas (box filter): a photo is typically 10× larger than the input, and
/// point sampling or a narrow bilinear kernel would alias skin texture and hair into noise the
/// model was not trained on.
pub(crate) fn detector_input(img: &Rgb32FImage) -> Result<(Array4<f32>, Letterbox)> {
    let (w, h) = img.dimensions();
    let n = DETECTOR_INPUT;
    let s = n as f64 / f64::from(w.max(h));
    let nw = ((f64::from(w) * s).round() as u32).clamp(1, n);
    let nh = ((f64::from(h) * s).round() as u32).clamp(1, n);
    let small = box_resize(img, nw, nh)?;
    let (px, py) = ((n - nw) / 2, (n - nh) / 2);
    let mut input = Array4::<f32>::from_elem((1, n as usize, n as usize, 3), -1.0);
    for (x, y, p) in small.enumerate_pixels() {
        for c in 0..3 {
            input[[0, (y + py) as usize, (x + px) as usize, c]] = p.0[c] * 2.0 - 1.0;
        }
    }
    let letterbox = Letterbox {
        scale: [nw as f32 / w as f32, nh as f32 / h as f32],
        pad: [px as f32, py as f32],
    };
    Ok((input, letterbox))
}

/// Area-averaging resize (box filter, which for downscaling averages each output pixel's
/// footprint) of gamma-encoded values, as the detector and mesh were trained on.
pub(crate) fn box_resize(img: &Rgb32FImage, w: u32, h: u32) -> Result<Rgb32FImage> {
    if img.dimensions() == (w, h) {
        return Ok(img.clone());
    }
    let mut dst = Rgb32FImage::new(w, h);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Box));
    fr::Resizer::new()
        .resize(img, &mut dst, &options)
        .map_err(|e| Error::Inference(format!("face detector resize failed: {e}")))?;
    Ok(dst)
}

/// Anchor centres in normalised input coordinates, in the model's output order
/// (SsdAnchorsCalculator with `fixed_anchor_size`: only centres matter). Each layer contributes
/// two anchors per cell; consecutive layers with the same stride share one grid, so the
/// stride-8 grid (16×16) has 2 anchors per cell and the stride-16 grid (8×8) has 6.
pub(crate) fn anchors() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(ANCHOR_COUNT);
    let mut layer = 0;
    while layer < ANCHOR_STRIDES.len() {
        let stride = ANCHOR_STRIDES[layer];
        let same = ANCHOR_STRIDES[layer..]
            .iter()
            .take_while(|&&s| s == stride)
            .count();
        let grid = DETECTOR_INPUT.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                let centre = [
                    (x as f32 + ANCHOR_OFFSET) / grid as f32,
                    (y as f32 + ANCHOR_OFFSET) / grid as f32,
                ];
                out.extend(std::iter::repeat_n(centre, 2 * same));
            }
        }
        layer += same;
    }
    debug_assert_eq!(out.len(), ANCHOR_COUNT);
    out
}

/// A decoded candidate in normalised input coordinates.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    bbox: [f32; 4],
    keypoints: [[f32; 2]; 6],
}

/// Logistic function with MediaPipe's logit clipping.
pub(crate) fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp())
}

/// Decodes the raw outputs (`regressors` `[896 × 16]`, `logits` `[896]`) into detections in
/// normalised input coordinates, after thresholding and weighted NMS.
fn decode(regressors: &[f32], logits: &[f32]) -> Vec<Candidate> {
    let n = DETECTOR_INPUT as f32;
    let mut candidates: Vec<Candidate> = anchors()
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let score = sigmoid(logits[i]);
            if score < DETECTION_SCORE_THRESHOLD || !score.is_finite() {
                return None;
            }
            let r = &regressors[i * 16..(i + 1) * 16];
            let (cx, cy) = (r[0] / n + a[0], r[1] / n + a[1]);
            let (w, h) = (r[2] / n, r[3] / n);
            let mut keypoints = [[0.0; 2]; 6];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[4 + 2 * k] / n + a[0], r[5 + 2 * k] / n + a[1]];
            }
            Some(Candidate {
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                keypoints,
            })
        })
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    weighted_nms(candidates)
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// MediaPipe's WEIGHTED non-maximum suppression: the best remaining candidate and every
/// candidate overlapping it by IoU > [`NMS_IOU`] form a cluster, replaced by the
/// score-weighted mean of their boxes and keypoints (the cluster keeps the best score).
/// Averaging the overlapping anchors' votes steadies the keypoints, which set the mesh crop.
/// `sorted` must be in decreasing score order.
fn weighted_nms(sorted: Vec<Candidate>) -> Vec<Candidate> {
    let mut remaining = sorted.into_iter();
    let mut out = Vec::new();
    while let Some(best) = remaining.next() {
        let (overlapping, rest): (Vec<Candidate>, Vec<Candidate>) =
            remaining.partition(|c| iou(&c.bbox, &best.bbox) > NMS_IOU);
        let members = std::iter::once(best).chain(overlapping);
        let mut merged = Candidate {
            score: best.score,
            bbox: [0.0; 4],
            keypoints: [[0.0; 2]; 6],
        };
        let mut total = 0.0;
        for c in members {
            total += c.score;
            for (m, v) in merged.bbox.iter_mut().zip(c.bbox) {
                *m += c.score * v;
            }
            for (m, v) in merged.keypoints.iter_mut().zip(c.keypoints) {
                m[0] += c.score * v[0];
                m[1] += c.score * v[1];
            }
        }
        merged.bbox = merged.bbox.map(|v| v / total);
        merged.keypoints = merged.keypoints.map(|[x, y]| [x / total, y / total]);
        out.push(merged);
        remaining = rest.into_iter();
    }
    out
}

/// Runs the detector on a prepared `[1, 128, 128, 3]` input and returns its raw outputs:
/// `(regressors [896·16], logits [896])`. Public so the ONNX file can be checked against
/// `models/face/reference_outputs.json`.
pub fn run_detector(
    session: &mut ModelSession,
    input: Array4<f32>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let err = |e: ort::Error| Error::Inference(format!("face detector: {e}"));
    let tensor = ort::value::Tensor::from_array(input).map_err(err)?;
    let outputs = session
        .session
        .run(ort::inputs!["input" => tensor])
        .map_err(err)?;
    let regressors: Vec<f32> = outputs["regressors"]
        .try_extract_array::<f32>()
        .map_err(err)?
        .iter()
        .copied()
        .collect();
    let logits: Vec<f32> = outputs["classificators"]
        .try_extract_array::<f32>()
        .map_err(err)?
        .iter()
        .copied()
        .collect();
    if regressors.len() != ANCHOR_COUNT * 16 || logits.len() != ANCHOR_COUNT {
        return Err(Error::Inference(format!(
            "face detector: expected {} regressors and {ANCHOR_COUNT} scores, got {} and {}",
            ANCHOR_COUNT * 16,
            regressors.len(),
            logits.len()
        )));
    }
    Ok((regressors, logits))
}

/// Detects faces in an sRGB photo; best score first.
pub(crate) fn detect(session: &mut ModelSession, img: &Rgb32FImage) -> Result<Vec<FaceDetection>> {
    let (input, letterbox) = detector_input(img)?;
    let (regressors, logits) = run_detector(session, input)?;
    Ok(decode(&regressors, &logits)
        .into_iter()
        .map(|c| {
            let p0 = letterbox.to_photo([c.bbox[0], c.bbox[1]]);
            let p1 = letterbox.to_photo([c.bbox[2], c.bbox[3]]);
            FaceDetection {
                score: c.score,
                bbox: [p0[0], p0[1], p1[0], p1[1]],
                keypoints: c.keypoints.map(|k| letterbox.to_photo(k)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_the_recorded_layout() {
        let a = anchors();
        assert_eq!(a.len(), ANCHOR_COUNT);
        // Stride 8: 16×16 cells, 2 anchors each; first cell centre (0.5/16, 0.5/16).
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[511], [15.5 / 16.0, 15.5 / 16.0]);
        // Stride 16: 8×8 cells, 6 anchors each.
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], [1.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn sigmoid_clips_extreme_logits() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(1e6).is_finite() && sigmoid(-1e6) >= 0.0);
        assert!(sigmoid(-1e6) < 1e-40);
    }

    fn candidate(score: f32, x0: f32) -> Candidate {
        Candidate {
            score,
            bbox: [x0, 0.0, x0 + 1.0, 1.0],
            keypoints: [[x0, 0.5]; 6],
        }
    }

    #[test]
    fn weighted_nms_merges_overlaps_by_score() {
        // Two overlapping boxes (IoU 0.6) and one far away.
        let out = weighted_nms(vec![
            candidate(0.9, 0.0),
            candidate(0.6, 0.25),
            candidate(0.55, 5.0),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let expected = (0.9 * 0.0 + 0.6 * 0.25) / 1.5;
        assert!((out[0].bbox[0] - expected).abs() < 1e-6, "{:?}", out[0]);
        assert!((out[0].keypoints[3][0] - expected).abs() < 1e-6);
        assert_eq!(out[1].bbox[0], 5.0);
    }

    #[test]
    fn weighted_nms_keeps_boxes_below_the_iou_limit() {
        // IoU of unit boxes shifted by 0.6 is 0.4/1.6 = 0.25 < 0.3: both kept.
        let out = weighted_nms(vec![candidate(0.9, 0.0), candidate(0.8, 0.6)]);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn letterbox_maps_input_back_to_the_photo() {
        // A 300×150 photo becomes 128×64, padded by 32 rows above and below.
        let img = Rgb32FImage::from_pixel(300, 150, image::Rgb([1.0, 1.0, 1.0]));
        let (input, lb) = detector_input(&img).unwrap();
        assert_eq!(input.shape(), &[1, 128, 128, 3]);
        assert_eq!(input[[0, 31, 64, 0]], -1.0);
        assert_eq!(input[[0, 32, 64, 0]], 1.0);
        assert_eq!(input[[0, 95, 64, 0]], 1.0);
        assert_eq!(input[[0, 96, 64, 0]], -1.0);
        let p = lb.to_photo([0.5, 0.5]);
        assert!(
            (p[0] - 150.0).abs() < 1e-3 && (p[1] - 75.0).abs() < 1e-3,
            "{p:?}"
        );
        let p = lb.to_photo([0.0, 32.0 / 128.0]);
        assert!(p[0].abs() < 1e-3 && p[1].abs() < 1e-3, "{p:?}");
    }
}

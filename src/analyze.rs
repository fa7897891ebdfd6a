//! The single-photo pipeline: path → [`Photo`] → [`CheckedPhoto`] → [`RegionSet`] →
//! [`SkinMaps`] → [`RegionMetrics`] → [`AnalysisDocument`].
//!
//! An [`Analyzer`] owns one ONNX session (sessions are not shareable across threads for
//! running), so a batch creates one analyzer per worker.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::face::{FaceModels, FaceRegions, FaceSummary, face_regions_in_photo};
use crate::io::{LoadOptions, Photo, load_photo};
use crate::metrics::{self, Detections, MetricSettings, RegionMetrics};
use crate::model::{SkinMaps, SkinModel, default_models_dir};
use crate::quality::{CheckedPhoto, check_photo};
use crate::regions::{RegionMask, RegionMode, RegionSet, Scale, ScaleSource};
use crate::report::{
    ANALYZE_SCHEMA_VERSION, AnalysisDocument, ErrorInfo, ImageInfo, ModelInfo, RegionReport,
    Settings, Status, ToolInfo,
};

/// Settings of one analysis. `AnalyzeOptions::default()` gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeOptions {
    /// Pixels per millimetre of the photos, when known. Default: unknown (estimated from
    /// the face, or the working scale is assumed and flagged).
    pub px_per_mm: Option<f64>,
    /// Which regions to measure. Default: `auto`.
    pub regions: RegionMode,
    /// A custom-regions JSON file (named polygons in pixel coordinates, see
    /// [`crate::regions::load_custom_regions`]); when set it replaces `regions`. Default: none.
    pub regions_file: Option<PathBuf>,
    /// Loading limits.
    pub load: LoadOptions,
    /// Folder holding the models and their manifests. Default: [`default_models_dir`].
    pub models_dir: PathBuf,
    /// Skin model name. Default: "skin-v1".
    pub skin_model: String,
    /// ONNX Runtime intra-op threads per analyzer. Default: 1 (batches parallelise across
    /// photos instead).
    pub intra_threads: usize,
    /// Detection thresholds and sizes. Default: [`MetricSettings::default`].
    pub metrics: MetricSettings,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            px_per_mm: None,
            regions: RegionMode::Auto,
            regions_file: None,
            load: LoadOptions::default(),
            models_dir: default_models_dir(),
            skin_model: "skin-v1".into(),
            intra_threads: 1,
            metrics: MetricSettings::default(),
        }
    }
}

impl AnalyzeOptions {
    /// The settings that influence the numbers, as recorded in reports and hashed into the
    /// batch store's keys (one definition, so the two never drift apart).
    pub fn settings(&self) -> Settings {
        Settings {
            regions: self.regions,
            regions_file: self.regions_file.clone(),
            px_per_mm: self.px_per_mm,
            max_pixels: self.load.max_pixels,
            metrics: self.metrics.clone(),
        }
    }

    /// Checks ranges; called by [`Analyzer::new`].
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.px_per_mm
            && !(s.is_finite() && (0.5..=500.0).contains(&s))
        {
            return Err(Error::InvalidSetting {
                name: "px-per-mm",
                message: format!("{s} is outside 0.5..=500 pixels per millimetre"),
            });
        }
        if self.load.max_pixels == 0 {
            return Err(Error::InvalidSetting {
                name: "max-pixels",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Everything measured on one photo, with the intermediate values kept for overlays.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The photo and its quality checks.
    pub checked: CheckedPhoto,
    /// Regions and scale.
    pub regions: RegionSet,
    /// The face found, when face regions were used.
    pub face: Option<FaceSummary>,
    /// The model's maps over the regions' bounding box.
    pub maps: SkinMaps,
    /// One entry per region, in the order of `regions.regions`.
    pub metrics: Vec<RegionMetrics>,
    /// What was detected in each region (working-scale masks), for overlays; `None` for
    /// regions that were not scored.
    pub detections: Vec<Option<Detections>>,
}

/// A photo whose regions are found but not yet measured ([`Analyzer::locate`]).
#[derive(Debug, Clone)]
pub struct Located {
    /// The photo and its pixel and face quality checks.
    pub checked: CheckedPhoto,
    /// Regions and scale.
    pub regions: RegionSet,
    /// The face with its landmarks, when face regions were used. Its `regions` field is empty:
    /// the masks were moved into `regions`.
    pub face: Option<FaceRegions>,
}

/// Runs the pipeline on photos, one at a time.
#[derive(Debug)]
pub struct Analyzer {
    options: AnalyzeOptions,
    skin: SkinModel,
    /// Loaded on first use: `whole`-only runs (phantoms, close-ups) never pay for it.
    face: Option<FaceModels>,
}

/// The working scale, flagged as assumed: used only when nothing better is known.
fn assumed_scale(working_px_per_mm: f64) -> Scale {
    Scale {
        px_per_mm: working_px_per_mm,
        source: ScaleSource::Assumed,
        relative_uncertainty: None,
    }
}

/// Narrowest icepick scars a report warns about, mm: icepick scars are narrow (under 2 mm
/// at the surface; Jacob, Dover & Kaminer 2001, J Am Acad Dermatol 45:109) and both phantom
/// renderers draw them 0.3–1.0 mm wide.
const ICEPICK_NOTE_MM: f64 = 0.3;

/// Notes when the photo's own pixels, not the settings, limit what is counted.
///
/// Why: resampling to the working scale adds no detail.
/// - On a photo coarser than one pixel per `pore_min_diameter_mm` the pore count covers fewer
///   pores (the bundled portraits, at ≈ 3.5 px/mm, count pores from 0.29 mm).
/// - Below [`metrics::narrowest_icepick_mm`] an icepick scar is told from a dark pore by its
///   darkness alone, and is often counted as a pore (see `ICEPICK_MIN_SOURCE_PX` in
///   `metrics`): the note appears below 8.3 px/mm.
///
/// Counts from photos at different scales are then not comparable, and the reader of one
/// report should know it.
fn resolution_notes(settings: &MetricSettings, px_per_mm: f64) -> Vec<String> {
    let smallest = metrics::smallest_pore_mm(settings, px_per_mm);
    let icepick = metrics::narrowest_icepick_mm(px_per_mm);
    let pores = (smallest > settings.pore_min_diameter_mm).then(|| {
        format!(
            "photo sampled at {px_per_mm:.2} px/mm: pores narrower than {smallest:.2} mm (one \
             photo pixel) are below its resolution and not counted; compare pore counts only \
             between photos of similar scale"
        )
    });
    let icepicks = (icepick > ICEPICK_NOTE_MM).then(|| {
        let pixels = icepick * px_per_mm;
        let finest = px_per_mm * icepick / ICEPICK_NOTE_MM;
        format!(
            "photo sampled at {px_per_mm:.2} px/mm: icepick scars narrower than {icepick:.2} mm \
             ({pixels:.1} photo pixels) look like dark pores at this resolution and may be \
             counted as pores, not scars; photograph at {finest:.1} px/mm or finer to count \
             those from {ICEPICK_NOTE_MM} mm"
        )
    });
    pores.into_iter().chain(icepicks).collect()
}

impl Analyzer {
    /// Validates the options, loads ONNX Runtime and the skin model.
    pub fn new(options: AnalyzeOptions) -> Result<Analyzer> {
        options.validate()?;
        let skin = SkinModel::load(
            &options.models_dir,
            &options.skin_model,
            options.intra_threads,
        )?;
        let mut analyzer = Analyzer {
            options,
            skin,
            face: None,
        };
        if analyzer.options.regions != RegionMode::Whole && analyzer.options.regions_file.is_none()
        {
            // Fail at start-up, not on the first photo, when the face models are missing.
            analyzer.face_models()?;
        }
        Ok(analyzer)
    }

    /// The options in force.
    pub fn options(&self) -> &AnalyzeOptions {
        &self.options
    }

    /// Changes settings that need no reloading (scale, region mode, metric settings) between
    /// photos. Validated again on the next analysis.
    pub fn options_mut(&mut self) -> &mut AnalyzeOptions {
        &mut self.options
    }

    /// The skin model (e.g. to change its tile size).
    pub fn skin_model_mut(&mut self) -> &mut SkinModel {
        &mut self.skin
    }

    /// Provenance of the model for reports.
    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            name: self.skin.manifest.name.clone(),
            sha256: self.skin.session.sha256.clone(),
            version: self.skin.manifest.version.clone(),
            working_px_per_mm: self.skin.manifest.input.working_px_per_mm,
            runtime: crate::runtime::runtime()
                .expect("a session exists, so the runtime is loaded")
                .clone(),
        }
    }

    /// Loads and analyses one photo file.
    pub fn analyze_path(&mut self, path: &Path) -> Result<Analysis> {
        let photo = load_photo(path, &self.options.load)?;
        self.analyze_photo(photo)
    }

    /// Analyses a photo already in memory.
    pub fn analyze_photo(&mut self, photo: Photo) -> Result<Analysis> {
        self.options.validate()?;
        let mut checked = check_photo(photo);
        let (regions, face) = self.find_regions(&mut checked)?;
        self.measure(checked, regions, face.as_ref().map(FaceRegions::summary))
    }

    /// Finds the regions of a photo (face, whole frame or custom, as the options say) and runs
    /// the pixel and face quality checks, without measuring: the first half of
    /// [`Analyzer::analyze_photo`], for callers that decide the regions themselves (e.g.
    /// `compare`, which maps the before photo's regions onto the after photo).
    pub fn locate(&mut self, photo: Photo) -> Result<Located> {
        self.options.validate()?;
        let mut checked = check_photo(photo);
        let (regions, face) = self.find_regions(&mut checked)?;
        Ok(Located {
            checked,
            regions,
            face,
        })
    }

    /// Measures a checked photo on given regions: adds the capture checks that need the regions
    /// and the scale (sharpness), runs the skin model over the regions' bounding box and scores
    /// every region.
    pub fn measure(
        &mut self,
        mut checked: CheckedPhoto,
        regions: RegionSet,
        face: Option<FaceSummary>,
    ) -> Result<Analysis> {
        crate::quality::add_capture_checks(&mut checked.quality, &checked.photo, &regions);
        let Some(crop) = regions.union_bbox() else {
            return Err(Error::Decode {
                path: checked.photo.path.clone(),
                message: "no visible region to measure".into(),
            });
        };
        let maps = self
            .skin
            .measure(&checked.photo.pixels, crop, regions.scale.px_per_mm)?;
        let (metrics, detections) = regions
            .regions
            .iter()
            .map(|r| metrics::measure_region(&maps, r, &self.options.metrics))
            .unzip();
        Ok(Analysis {
            checked,
            regions,
            face,
            maps,
            metrics,
            detections,
        })
    }

    fn face_models(&mut self) -> Result<&mut FaceModels> {
        if self.face.is_none() {
            self.face = Some(FaceModels::load(
                &self.options.models_dir,
                self.options.intra_threads,
            )?);
        }
        Ok(self.face.as_mut().expect("just loaded"))
    }

    /// Face regions (with pose checks added to the photo's quality report) or the whole
    /// frame, as the options ask; the scale is the user's, else the face's, else assumed.
    fn find_regions(
        &mut self,
        checked: &mut CheckedPhoto,
    ) -> Result<(RegionSet, Option<FaceRegions>)> {
        let photo = &checked.photo;
        let working = self.skin.manifest.input.working_px_per_mm;
        let user_scale = self.options.px_per_mm.map(|px_per_mm| Scale {
            px_per_mm,
            source: ScaleSource::User,
            relative_uncertainty: None,
        });
        let mut notes = Vec::new();
        let (regions, mode_used) = if let Some(file) = &self.options.regions_file {
            let regions = crate::regions::load_custom_regions(file, photo.width(), photo.height())?;
            (regions, "custom")
        } else {
            if self.options.regions != RegionMode::Whole {
                match face_regions_in_photo(self.face_models()?, photo) {
                    Ok(mut face) => {
                        face.add_quality_checks(&mut checked.quality);
                        if face.other_faces > 0 {
                            notes.push(format!(
                                "{} other face(s) in the frame were ignored; the largest was \
                                 measured",
                                face.other_faces
                            ));
                        }
                        let set = RegionSet {
                            scale: user_scale.unwrap_or(face.scale),
                            // Moved, not cloned: full-resolution masks are large.
                            regions: std::mem::take(&mut face.regions),
                            mode_used: "face".into(),
                            notes,
                        };
                        return Ok((set, Some(face)));
                    }
                    Err(Error::NoFace { reason, .. })
                        if self.options.regions == RegionMode::Auto =>
                    {
                        notes.push(format!(
                            "regions auto: no face found ({reason}); measured the whole frame"
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            (
                vec![RegionMask::whole(photo.width(), photo.height())],
                "whole",
            )
        };
        let scale = user_scale.unwrap_or_else(|| {
            notes.push(format!(
                "scale unknown: assumed the model's working scale of {working} px/mm; \
                 give --px-per-mm for physical sizes"
            ));
            assumed_scale(working)
        });
        let set = RegionSet {
            regions,
            scale,
            mode_used: mode_used.into(),
            notes,
        };
        Ok((set, None))
    }

    /// Analyses one file and always returns a document: failures are recorded in it.
    pub fn document(&mut self, path: &Path) -> AnalysisDocument {
        match self.analyze_path(path) {
            Ok(analysis) => self.document_for(&analysis),
            Err(error) => self.failed_document(path, &error),
        }
    }

    fn settings(&self) -> Settings {
        self.options.settings()
    }

    /// The document of a successful analysis.
    pub fn document_for(&self, analysis: &Analysis) -> AnalysisDocument {
        let photo = &analysis.checked.photo;
        let scale = analysis.regions.scale;
        let mut notes = analysis.regions.notes.clone();
        notes.extend(analysis.checked.quality.notes.iter().cloned());
        notes.extend(resolution_notes(&self.options.metrics, scale.px_per_mm));
        let mm2_per_px = 1.0 / (scale.px_per_mm * scale.px_per_mm);
        let regions = analysis
            .regions
            .regions
            .iter()
            .zip(&analysis.metrics)
            .map(|(r, m)| {
                let pixel_count = r.pixel_count();
                RegionReport {
                    name: r.name.clone(),
                    visible: r.visible,
                    area_mm2: pixel_count as f64 * mm2_per_px,
                    pixel_count,
                    metrics: m.clone(),
                }
            })
            .collect();
        AnalysisDocument {
            schema_version: ANALYZE_SCHEMA_VERSION,
            tool: ToolInfo::current(),
            status: Status::Ok,
            error: None,
            image: ImageInfo {
                path: photo.path.clone(),
                sha256: Some(photo.sha256.clone()),
                width: Some(photo.width()),
                height: Some(photo.height()),
                px_per_mm: Some(scale.px_per_mm),
                px_per_mm_source: Some(scale.source),
                px_per_mm_uncertainty: scale.relative_uncertainty,
                format: Some(photo.format.to_string()),
                bits_per_channel: Some(photo.bits_per_channel),
                source_color: Some(photo.source_color.clone()),
                exif_orientation: Some(photo.exif_orientation),
            },
            model: self.model_info(),
            settings: self.settings(),
            quality: analysis.checked.quality.clone(),
            regions_mode: Some(analysis.regions.mode_used.clone()),
            face: analysis.face.clone(),
            regions,
            notes,
        }
    }

    /// The document of a photo that could not be analysed.
    pub fn failed_document(&self, path: &Path, error: &Error) -> AnalysisDocument {
        AnalysisDocument {
            schema_version: ANALYZE_SCHEMA_VERSION,
            tool: ToolInfo::current(),
            status: Status::Failed,
            error: Some(ErrorInfo::from(error)),
            image: ImageInfo {
                path: path.to_path_buf(),
                sha256: crate::io::sha256_file(path).ok(),
                width: None,
                height: None,
                px_per_mm: self.options.px_per_mm,
                px_per_mm_source: self.options.px_per_mm.map(|_| ScaleSource::User),
                px_per_mm_uncertainty: None,
                format: None,
                bits_per_channel: None,
                source_color: None,
                exif_orientation: None,
            },
            model: self.model_info(),
            settings: self.settings(),
            quality: Default::default(),
            regions_mode: None,
            face: None,
            regions: Vec::new(),
            notes: Vec::new(),
        }
    }
}

//! The `dermatrack` command: parses arguments into the library's settings, runs, prints, and
//! folds per-photo outcomes into the exit code (0 all measured, 1 some input failed,
//! 2 usage or setup error).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use dermatrack::analyze::{AnalyzeOptions, Analyzer};
use dermatrack::io::LoadOptions;
use dermatrack::regions::RegionMode;
use dermatrack::report::Status;

#[derive(Parser, Debug)]
#[command(
    name = "dermatrack",
    version,
    about = "Measure skin in clinical photos and track change across sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure one photo and write the JSON analysis document.
    Analyze(AnalyzeArgs),
    /// Render synthetic skin images with exactly known truth (JSON and masks beside each).
    Phantom(PhantomArgs),
    /// Score a whole study (SUBJECT/SESSION/photo folders or a manifest CSV) incrementally and
    /// write per-subject progress reports and cohort tables.
    Run(RunArgs),
    /// Compare two photos of the same skin (before, after): register, normalise colour, check
    /// the pair, measure both on the same skin and judge each change against the noise floor.
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// The earlier photo; its regions are the reference.
    before: PathBuf,
    /// The later photo, registered onto BEFORE.
    after: PathBuf,
    #[command(flatten)]
    measure: MeasureArgs,
    /// Write the JSON here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT.json")]
    output: Option<PathBuf>,
    /// Also draw the aligned pair side by side with the changes highlighted, as a PNG.
    #[arg(long, value_name = "OUT.png")]
    overlay: Option<PathBuf>,
    /// Colour normalization (default: chart when both chart files are given, else skin).
    #[arg(long, value_enum)]
    normalize: Option<NormalizeArg>,
    /// Colour chart in BEFORE (JSON: patch rectangles and reference values or a named chart).
    #[arg(long, value_name = "FILE.json")]
    chart_before: Option<PathBuf>,
    /// Colour chart in AFTER.
    #[arg(long, value_name = "FILE.json")]
    chart_after: Option<PathBuf>,
    /// Minimal detectable changes per metric (default: MODELS/noise_floor.json for face and
    /// auto regions, MODELS/noise_floor_closeup.json for whole-frame and custom regions).
    #[arg(long, value_name = "FILE")]
    noise_floor: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum NormalizeArg {
    /// Leave colours as captured.
    None,
    /// Pin AFTER's pooled skin colour to BEFORE's.
    Skin,
    /// Map each photo to its colour chart's reference values.
    Chart,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The study: a folder (SUBJECT/SESSION/VIEW.jpg, or with a manifest.csv) or a manifest CSV.
    study: PathBuf,
    /// Output folder: photos/ (stored analyses), subjects/, scores.csv, changes.csv,
    /// cohort.json, run.json.
    #[arg(long, value_name = "DIR", default_value = "dermatrack-out")]
    out: PathBuf,
    /// Photos analysed in parallel (one analyzer per worker, ONNX Runtime single-threaded).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    measure: MeasureArgs,
    /// Minimal detectable changes per metric (default: MODELS/noise_floor.json for face and
    /// auto regions, MODELS/noise_floor_closeup.json for whole-frame and custom regions).
    #[arg(long, value_name = "FILE")]
    noise_floor: Option<PathBuf>,
    /// Folder with the models and their manifests.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Refuse images with more pixels than this (checked before decoding).
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().max_pixels)]
    max_pixels: u64,
}

#[derive(clap::Args, Debug)]
struct PhantomArgs {
    /// Output folder (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of every random choice; the same seed gives the same files.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Scenes (independent layouts) per tone.
    #[arg(long, value_name = "K", default_value_t = 1)]
    count: u32,
    /// Only this tone: very-light, light, intermediate, tan, brown, dark (default: all).
    #[arg(long, value_name = "T")]
    tone: Option<dermatrack::phantom::TonePreset>,
    /// Sampling density in pixels per millimetre.
    #[arg(long, value_name = "F", default_value_t = 10.0)]
    px_per_mm: f64,
    /// Side of the square phantom in millimetres.
    #[arg(long, value_name = "W", default_value_t = 50.0)]
    size_mm: f64,
    /// Only clean and blank variants (no exposure, white balance, gradient, noise, JPEG).
    #[arg(long)]
    no_nuisances: bool,
}

#[derive(clap::Args, Debug)]
struct AnalyzeArgs {
    /// The photo (JPEG, PNG 8/16-bit or TIFF).
    image: PathBuf,
    #[command(flatten)]
    measure: MeasureArgs,
    /// Write the JSON here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT.json")]
    output: Option<PathBuf>,
    /// Also draw what was counted (pores, pigment, scars, redness, region outlines) as a PNG.
    #[arg(long, value_name = "OUT.png")]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Where and at what scale to measure, shared by `analyze` and `run`.
#[derive(clap::Args, Debug)]
struct MeasureArgs {
    /// Pixels per millimetre on the skin, if known (ruler, calibrated rig). For `run`, the
    /// fallback for photos without a manifest `px_per_mm` value.
    #[arg(long, value_name = "F")]
    px_per_mm: Option<f64>,
    /// Which regions to measure.
    #[arg(long, value_enum, default_value_t = RegionsArg::Auto)]
    regions: RegionsArg,
    /// Measure these named polygons instead (JSON: {"regions": [{"name", "polygon": [[x,y],...]}]},
    /// pixel coordinates of the upright photo), e.g. a treated patch or a body site.
    #[arg(long, value_name = "FILE.json")]
    regions_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CommonArgs {
    /// Folder with the models and their manifests.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Refuse images with more pixels than this (checked before decoding).
    #[arg(long, value_name = "N", default_value_t = LoadOptions::default().max_pixels)]
    max_pixels: u64,
    /// ONNX Runtime threads (default: all cores for a single photo).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RegionsArg {
    Face,
    Whole,
    Auto,
}

impl From<RegionsArg> for RegionMode {
    fn from(r: RegionsArg) -> Self {
        match r {
            RegionsArg::Face => RegionMode::Face,
            RegionsArg::Whole => RegionMode::Whole,
            RegionsArg::Auto => RegionMode::Auto,
        }
    }
}

/// Why the program stopped without measuring: printed, exit code 2.
struct SetupError(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Phantom(args) => phantom(args),
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
    };
    match result {
        Ok(code) => code,
        Err(SetupError(e)) => {
            eprintln!("dermatrack: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode, SetupError> {
    use dermatrack::batch::{PhotoProgress, RunOptions, run_study};
    let study = dermatrack::study::Study::open(&args.study)
        .with_context(|| format!("cannot read the study {}", args.study.display()))
        .map_err(SetupError)?;
    for issue in &study.issues {
        eprintln!("dermatrack: {}: {}", issue.path, issue.message);
    }
    let defaults = RunOptions::new(&args.out);
    let options = RunOptions {
        analyze: AnalyzeOptions {
            px_per_mm: args.measure.px_per_mm,
            regions: args.measure.regions.into(),
            regions_file: args.measure.regions_file,
            models_dir: args.models.unwrap_or(defaults.analyze.models_dir.clone()),
            load: LoadOptions {
                max_pixels: args.max_pixels,
                ..LoadOptions::default()
            },
            ..defaults.analyze.clone()
        },
        jobs: args.jobs.unwrap_or(defaults.jobs),
        noise_floor: args.noise_floor,
        ..defaults
    };
    let progress = |p: &PhotoProgress<'_>| match p.error {
        None => eprintln!(
            "[{}/{}] {} ok {:.1}s",
            p.done, p.total, p.photo.display, p.seconds
        ),
        Some(e) => eprintln!(
            "[{}/{}] {} FAILED {:.1}s: {e}",
            p.done, p.total, p.photo.display, p.seconds
        ),
    };
    let summary = run_study(&study, &options, &progress)
        .context("the run stopped")
        .map_err(SetupError)?;
    eprintln!(
        "dermatrack: {} photos: {} analysed, {} reused, {} failed; {} issue(s) in the study; \
         {} subject report(s) in {} ({:.1}s)",
        summary.photos,
        summary.analysed,
        summary.reused,
        summary.failed,
        summary.issues,
        summary.subjects,
        args.out.display(),
        summary.seconds
    );
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn phantom(args: PhantomArgs) -> Result<ExitCode, SetupError> {
    let defaults = dermatrack::phantom::SetOptions::default();
    let options = dermatrack::phantom::SetOptions {
        count: args.count,
        tones: args.tone.map_or(defaults.tones, |t| vec![t]),
        px_per_mm: args.px_per_mm,
        size_mm: args.size_mm,
        nuisance_variants: !args.no_nuisances,
    };
    let written = dermatrack::phantom::generate_set(&args.out, args.seed, &options)
        .context("cannot render phantoms")
        .map_err(SetupError)?;
    eprintln!(
        "dermatrack: wrote {} files to {}",
        written.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn options(common: &CommonArgs) -> AnalyzeOptions {
    let defaults = AnalyzeOptions::default();
    AnalyzeOptions {
        models_dir: common.models.clone().unwrap_or(defaults.models_dir.clone()),
        load: LoadOptions {
            max_pixels: common.max_pixels,
            ..LoadOptions::default()
        },
        intra_threads: common
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        ..defaults
    }
}

fn analyze(args: AnalyzeArgs) -> Result<ExitCode, SetupError> {
    let options = AnalyzeOptions {
        px_per_mm: args.measure.px_per_mm,
        regions: args.measure.regions.into(),
        regions_file: args.measure.regions_file.clone(),
        ..options(&args.common)
    };
    let mut analyzer = Analyzer::new(options)
        .context("cannot start the analysis")
        .map_err(SetupError)?;
    let document = match analyzer.analyze_path(&args.image) {
        Ok(analysis) => {
            if let Some(path) = &args.overlay {
                save_png(path, &dermatrack::overlay::render(&analysis)).map_err(SetupError)?;
            }
            analyzer.document_for(&analysis)
        }
        Err(error) => analyzer.failed_document(&args.image, &error),
    };
    let failed = document.status == Status::Failed;
    if let Some(error) = &document.error {
        eprintln!("dermatrack: {}", error.message);
    }
    write_json(args.output.as_deref(), &document).map_err(SetupError)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn compare(args: CompareArgs) -> Result<ExitCode, SetupError> {
    use dermatrack::compare::{CompareOptions, Normalization, compare_paths, failed_document};
    use dermatrack::progress_report::NoiseFloor;
    let normalization = match args.normalize {
        Some(NormalizeArg::None) => Normalization::None,
        Some(NormalizeArg::Skin) => Normalization::Skin,
        Some(NormalizeArg::Chart) => Normalization::Chart,
        None if args.chart_before.is_some() && args.chart_after.is_some() => Normalization::Chart,
        None => Normalization::Skin,
    };
    if (args.chart_before.is_some() != args.chart_after.is_some())
        || (normalization == Normalization::Chart && args.chart_before.is_none())
    {
        return Err(SetupError(anyhow::anyhow!(
            "chart normalization needs both --chart-before and --chart-after"
        )));
    }
    let analyze_options = AnalyzeOptions {
        px_per_mm: args.measure.px_per_mm,
        regions: args.measure.regions.into(),
        regions_file: args.measure.regions_file.clone(),
        ..options(&args.common)
    };
    let floor_path = args.noise_floor.clone().unwrap_or_else(|| {
        dermatrack::progress_report::default_noise_floor(
            &analyze_options.models_dir,
            analyze_options.regions,
            analyze_options.regions_file.is_some(),
        )
    });
    let floor = NoiseFloor::load(&floor_path)
        .context("cannot read the noise floor")
        .map_err(SetupError)?;
    let floor_info = floor.describe(&floor_path);
    let mut analyzer = Analyzer::new(analyze_options)
        .context("cannot start the analysis")
        .map_err(SetupError)?;
    let options = CompareOptions {
        normalization,
        chart_before: args.chart_before.clone(),
        chart_after: args.chart_after.clone(),
        ..CompareOptions::default()
    };
    let document = match compare_paths(&mut analyzer, &args.before, &args.after, &options, &floor) {
        Ok(comparison) => {
            if let Some(path) = &args.overlay {
                let picture = dermatrack::compare::render_overlay(&comparison, 1200);
                save_png(path, &picture).map_err(SetupError)?;
            }
            comparison.document(&analyzer, &options, floor_info)
        }
        // A bad setting (e.g. an unreadable chart file) is a usage error, not a bad photo.
        Err(e @ dermatrack::Error::InvalidSetting { .. }) => {
            return Err(SetupError(anyhow::Error::new(e)));
        }
        Err(error) => failed_document(
            &analyzer,
            &args.before,
            &args.after,
            &options,
            floor_info,
            &error,
        ),
    };
    if let Some(error) = &document.error {
        eprintln!("dermatrack: {}", error.message);
    } else {
        for reason in &document.unreliable_reasons {
            eprintln!("dermatrack: warning: unreliable pair: {reason}");
        }
        for region in &document.regions {
            if !region.significant.is_empty() {
                eprintln!(
                    "dermatrack: {}: significant change in {}",
                    region.name,
                    region.significant.join(", ")
                );
            }
        }
    }
    let failed = document.status == Status::Failed;
    write_json(args.output.as_deref(), &document).map_err(SetupError)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes a PNG atomically (temp file then rename), creating the folder.
fn save_png(path: &Path, image: &image::RgbImage) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("png.part");
    image
        .save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes pretty JSON to a file (atomically: temp file then rename) or to standard output.
fn write_json(path: Option<&Path>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    match path {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to standard output"),
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let tmp = path.with_extension("json.part");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
        }
    }
}

//! The prepare stage's command line, shared by its binary and `cargo xtask prepare`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use stoker_artifact::{DatasetManifest, InputManifest, SourceConfig, TaskConfig};
use stoker_cli::TaskArgs;

use crate::apply::{ApplyRequest, apply};
use crate::prepare::prepare;
use crate::request::{PrepareRequest, check_input};
use crate::synthetic::{SyntheticSpec, write_pm25_csv, write_synthetic_anc};

#[derive(Debug, Clone, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Raw data file (ANC: the noise recording, a WAV); overrides `data.input` of the config.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub anc: AncPathArgs,
}

/// The acoustic paths of an ANC source, overriding the config's.
#[derive(Debug, Clone, Default, Args)]
pub struct AncPathArgs {
    /// ANC: impulse response of the primary path (text or WAV); overrides
    /// `data.source.primary_path`.
    #[arg(long, value_name = "FILE")]
    pub primary_path: Option<PathBuf>,
    /// ANC: impulse response of the secondary path (text or WAV); overrides
    /// `data.source.secondary_path`.
    #[arg(long, value_name = "FILE")]
    pub secondary_path: Option<PathBuf>,
}

/// Puts the flags' paths into an ANC source's config and checks that both paths are set and
/// exist; the flags are an error for any other source.
fn apply_anc_paths(
    config: &mut TaskConfig,
    paths: &AncPathArgs,
    config_path: &std::path::Path,
) -> Result<()> {
    let SourceConfig::Anc(source) = &mut config.data.source else {
        if paths.primary_path.is_some() || paths.secondary_path.is_some() {
            bail!(
                "{}: --primary-path and --secondary-path apply only to an `anc` data source",
                config_path.display()
            );
        }
        return Ok(());
    };
    for (flag, key, slot, value) in [
        (
            "--primary-path",
            "primary_path",
            &mut source.primary_path,
            &paths.primary_path,
        ),
        (
            "--secondary-path",
            "secondary_path",
            &mut source.secondary_path,
            &paths.secondary_path,
        ),
    ] {
        if value.is_some() {
            slot.clone_from(value);
        }
        let path = slot.as_deref().with_context(|| {
            format!(
                "{}: no {} path: pass {flag} or set `data.source.{key}`",
                config_path.display(),
                key.trim_end_matches("_path")
            )
        })?;
        check_input(path)?;
    }
    Ok(())
}

pub fn run_prepare(args: &PrepareArgs) -> Result<DatasetManifest> {
    let mut config = args.task.load_config()?;
    apply_anc_paths(&mut config, &args.anc, &args.task.config)?;
    let input = args
        .input
        .clone()
        .or_else(|| config.data.input.clone())
        .with_context(|| {
            format!(
                "{}: no input: pass --input or set `data.input`",
                args.task.config.display()
            )
        })?;
    check_input(&input)?;
    let layout = args.task.layout();
    let manifest = prepare(&PrepareRequest {
        config,
        input,
        out_dir: layout.data_dir(),
    })?;
    let windows: Vec<String> = manifest
        .quality
        .windows
        .iter()
        .map(|(split, n)| format!("{split} {n}"))
        .collect();
    match &manifest.anc {
        Some(anc) => println!(
            "prepared {} samples at {} Hz{} (x, d; primary path {} taps, secondary {} taps) → {} (windows: {}; chunk {} samples)",
            manifest.rows,
            anc.sample_rate,
            if anc.source_rate == anc.sample_rate {
                String::new()
            } else {
                format!(", resampled from {} Hz", anc.source_rate)
            },
            anc.primary_taps,
            anc.secondary_path.len(),
            layout.data_dir().display(),
            windows.join(", "),
            manifest.window.output_len
        ),
        None => println!(
            "prepared {} rows × {} features → {} (windows: {}; interpolated cells: {})",
            manifest.rows,
            manifest.features.len(),
            layout.data_dir().display(),
            windows.join(", "),
            manifest.quality.interpolated_cells
        ),
    }
    Ok(manifest)
}

/// Apply mode: a new file, read, checked, gap-filled and normalised as the training data was.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The training `data/` directory (its manifest decides reader, columns and statistics).
    #[arg(long, value_name = "DATA_DIR")]
    pub data: PathBuf,
    /// The new raw file, in the training data's format.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the applied input (predict reads it with `--input-data`), e.g.
    /// `artifacts/<task>/input`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// ANC: impulse response of the primary path (text or WAV); by default the training
    /// data's, if unchanged.
    #[arg(long, value_name = "FILE")]
    pub primary_path: Option<PathBuf>,
    /// ANC: refuse a recording at another rate instead of resampling it to the trained rate.
    #[arg(long)]
    pub no_resample: bool,
}

/// Runs the apply mode; prints its notes and a summary.
pub fn run_apply(args: &ApplyArgs) -> Result<InputManifest> {
    let applied = apply(&ApplyRequest {
        data_dir: args.data.clone(),
        input: args.input.clone(),
        out_dir: args.out.clone(),
        primary_path: args.primary_path.clone(),
        no_resample: args.no_resample,
    })?;
    for note in &applied.notes {
        println!("note: {note}");
    }
    let m = &applied.manifest;
    match &m.anc {
        Some(anc) => println!(
            "applied {} samples of {} ({} Hz, at {} Hz for the model) through the training plant of {}",
            m.rows,
            args.input.display(),
            anc.source_rate,
            anc.sample_rate,
            args.data.display(),
        ),
        None => println!(
            "applied {} rows of {} with the training statistics of {} (interpolated cells: {})",
            m.rows,
            args.input.display(),
            args.data.display(),
            m.interpolated_cells
        ),
    }
    Ok(applied.manifest)
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Where to write the CSV (the synthetic PM2.5-format series).
    #[arg(long, required_unless_present = "anc", conflicts_with = "anc")]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 2010)]
    pub start_year: i32,
    #[arg(long, default_value_t = 3)]
    pub years: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub anc: SynthAncArgs,
}

/// `--anc DIR`: a synthetic ANC setup instead of the CSV.
#[derive(Debug, Clone, Args)]
pub struct SynthAncArgs {
    /// Write a synthetic ANC setup into DIR instead: noise.wav (16-bit mono),
    /// primary_path.csv (128 taps) and secondary_path.csv (32 taps).
    #[arg(id = "anc", long = "anc", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Length of the ANC recording in seconds.
    #[arg(long, default_value_t = 4.0, requires = "anc", conflicts_with = "out")]
    pub seconds: f64,
    /// Sample rate of the ANC recording in Hz.
    #[arg(
        long,
        default_value_t = 16_000,
        requires = "anc",
        conflicts_with = "out"
    )]
    pub rate: u32,
}

impl Default for SynthAncArgs {
    fn default() -> Self {
        Self {
            dir: None,
            seconds: 4.0,
            rate: 16_000,
        }
    }
}

/// Writes the synthetic data; returns its rows (ANC: samples).
pub fn run_synth(args: &SynthArgs) -> Result<usize> {
    if let Some(dir) = &args.anc.dir {
        let (seconds, rate) = (args.anc.seconds, args.anc.rate);
        let (wav, primary, secondary) = write_synthetic_anc(dir, seconds, rate, args.seed)?;
        let samples = (seconds * f64::from(rate)).round() as usize;
        println!(
            "wrote a synthetic ANC setup → {}: {} ({samples} samples at {} Hz), {} (128 taps), {} (32 taps)",
            dir.display(),
            wav.display(),
            rate,
            primary.display(),
            secondary.display()
        );
        return Ok(samples);
    }
    let out = args
        .out
        .as_deref()
        .context("synth: pass --out FILE or --anc DIR")?;
    let rows = write_pm25_csv(
        out,
        &SyntheticSpec {
            start_year: args.start_year,
            years: args.years,
            seed: args.seed,
        },
    )?;
    println!("wrote {rows} synthetic hourly rows → {}", out.display());
    Ok(rows)
}

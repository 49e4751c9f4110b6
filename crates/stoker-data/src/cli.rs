//! The prepare stage's command line, shared by its binary and `cargo xtask prepare`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use stoker_artifact::{ArtifactLayout, DatasetManifest, TaskConfig};

use crate::prepare::{PrepareRequest, check_input, prepare};
use crate::synthetic::{SyntheticSpec, write_pm25_csv};

#[derive(Debug, Clone, Args)]
pub struct PrepareArgs {
    /// Task config (TOML), e.g. configs/pm25-cnn2d.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Raw data file; overrides `data.input` of the config.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Artifacts directory [default: artifacts/<config name>].
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

pub fn run_prepare(args: &PrepareArgs) -> Result<DatasetManifest> {
    let config = TaskConfig::load(&args.config)?;
    let input = args
        .input
        .clone()
        .or_else(|| config.data.input.clone())
        .with_context(|| {
            format!(
                "{}: no input: pass --input or set `data.input`",
                args.config.display()
            )
        })?;
    check_input(&input)?;
    let layout = args
        .artifacts
        .clone()
        .map(ArtifactLayout::new)
        .unwrap_or_else(|| ArtifactLayout::for_task(&TaskConfig::name_of(&args.config)));
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
    println!(
        "prepared {} rows × {} features → {} (windows: {}; interpolated cells: {})",
        manifest.rows,
        manifest.features.len(),
        layout.data_dir().display(),
        windows.join(", "),
        manifest.quality.interpolated_cells
    );
    Ok(manifest)
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Where to write the CSV.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2010)]
    pub start_year: i32,
    #[arg(long, default_value_t = 3)]
    pub years: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run_synth(args: &SynthArgs) -> Result<usize> {
    let rows = write_pm25_csv(
        &args.out,
        &SyntheticSpec {
            start_year: args.start_year,
            years: args.years,
            seed: args.seed,
        },
    )?;
    println!(
        "wrote {rows} synthetic hourly rows → {}",
        args.out.display()
    );
    Ok(rows)
}

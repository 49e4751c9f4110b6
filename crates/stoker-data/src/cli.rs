//! The prepare stage's command line, shared by its binary and `cargo xtask prepare`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use stoker_artifact::DatasetManifest;
use stoker_cli::TaskArgs;

use crate::prepare::{PrepareRequest, check_input, prepare};
use crate::synthetic::{SyntheticSpec, write_pm25_csv};

#[derive(Debug, Clone, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Raw data file; overrides `data.input` of the config.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

pub fn run_prepare(args: &PrepareArgs) -> Result<DatasetManifest> {
    let config = args.task.load_config()?;
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

//! `cargo xtask …`: runs stoker's stages. It only orchestrates: every stage is a library call
//! with the same flags as the stage's own binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use stoker_artifact::atomic::StagingDir;
use stoker_artifact::{ArtifactLayout, ForecastMetrics, TaskConfig};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_data::cli::{ApplyArgs, PrepareArgs, SynthArgs, run_apply, run_prepare, run_synth};
use stoker_data::{PrepareRequest, prepare};
use stoker_infer::cli::{PredictArgs, run_predict};
use stoker_infer::export::cli::{ExportArgs, run_export};
use stoker_train::BoxError;
use stoker_train::cli::{TrainArgs, TuneArgs, run_train, run_tune};

use stoker_bench::{BenchArgs, WorkerArgs, run_bench, run_worker};
use stoker_train::sweep::{Prepare, SweepArgs, run_sweep};

mod launch;
mod seeds;

stoker_cli::global_allocator!();

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    version,
    about = "stoker: prepare, train and predict"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Raw data → Parquet shards + window store + manifest (artifacts/<task>/data).
    Prepare(PrepareArgs),
    /// Prepared data → checkpoints, metrics log, run summary (artifacts/<task>/train);
    /// --ranks N trains data-parallel on N processes (a build with --features mpi).
    Train(launch::XTrainArgs),
    /// Checkpoint → predictions and metrics (artifacts/<task>/predict); prints the metrics path
    /// last. With --input FILE: forecasts past FILE's end (predict/forecast.parquet), or an
    /// ANC controller on a new recording.
    Predict(XPredictArgs),
    /// Checkpoint → export/model.safetensors (PyTorch names and layouts) + export/model.json.
    Export(ExportArgs),
    /// Prepare, train and predict in one go.
    Run(RunArgs),
    /// The default job: generate the embedded synthetic data set, then prepare, train, predict.
    Demo(DemoArgs),
    /// Write the synthetic PM2.5-format series (--out FILE), or a synthetic ANC setup (--anc DIR).
    Synth(SynthArgs),
    /// Train every combination of a parameter grid; rank by validation loss.
    Sweep(SweepArgs),
    /// Probe batch sizes with real training steps; write <config>.tuned.toml and the table.
    Tune(TuneArgs),
    /// Throughput of every zoo model, the loader and prepare; --json writes the figures.
    Bench(BenchArgs),
    /// One rank's timed training steps for `bench --only distributed` (run by the bench).
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
}

#[derive(Args)]
struct RunArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    input: Option<PathBuf>,
    #[arg(long)]
    artifacts: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Model seed (the config's by default); with --seeds, the first of them.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Train and score N seeds on one prepared data set and report the test metric's mean ±
    /// std (`<artifacts>/seeds/seeds.json`).
    #[arg(long, value_name = "N")]
    seeds: Option<usize>,
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value = "configs/demo.toml")]
    config: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seed of the generated data (the model seed is the config's).
    #[arg(long, default_value_t = 42)]
    data_seed: u64,
}

/// `predict`, plus `--input FILE`: apply FILE to the trained model (prepare's apply mode into
/// `<artifacts>/input/`), then forecast from it.
#[derive(Args)]
struct XPredictArgs {
    #[command(flatten)]
    predict: PredictArgs,
    /// New data in the training data's format: forecast past its last row
    /// (predict/forecast.parquet); for an ANC model, a new recording (WAV) to run the controller on.
    #[arg(long, value_name = "FILE", conflicts_with = "input_data")]
    input: Option<PathBuf>,
    /// ANC with --input: the primary path's impulse response (default: the training data's).
    #[arg(long, value_name = "FILE", requires = "input")]
    primary_path: Option<PathBuf>,
    /// ANC with --input: refuse a recording at another rate instead of resampling it.
    #[arg(long, requires = "input")]
    no_resample: bool,
}

/// Predict; with `--input`, the file is applied into a staging directory that becomes
/// `<artifacts>/input/` only once predict succeeded, so a failed run leaves every artifact as it was.
fn predict(args: &XPredictArgs) -> Result<()> {
    let Some(file) = &args.input else {
        return run_predict(&args.predict).map(drop);
    };
    let layout = args.predict.task.layout();
    let staging = StagingDir::new(&layout.input_dir())?;
    run_apply(&ApplyArgs {
        data: layout.data_dir(),
        input: file.clone(),
        out: staging.path().into(),
        primary_path: args.primary_path.clone(),
        no_resample: args.no_resample,
    })?;
    let mut predict = args.predict.clone();
    predict.input_data = Some(staging.path().into());
    run_predict(&predict)?;
    staging.commit()?;
    Ok(())
}

/// The demo's input: generated, so the default job downloads nothing (not an artifact: the
/// series is the demo's raw data, read by prepare like any other CSV).
const DEMO_DATA: &str = "data/generated/synthetic-pm25.csv";

fn run_all(args: &RunArgs) -> Result<()> {
    let task = TaskArgs::new(&args.config, args.artifacts.clone());
    run_prepare(&PrepareArgs {
        task: task.clone(),
        input: args.input.clone(),
        anc: Default::default(),
    })?;
    if let Some(count) = args.seeds {
        return seeds::run_seeds(&task, &args.device, args.seed, count, args.epochs);
    }
    run_train(&TrainArgs {
        task: task.clone(),
        device: args.device.clone(),
        seed: args.seed,
        epochs: args.epochs,
        batch_size: None,
        lr: None,
        accumulate: None,
        precision: None,
        resume: false,
    })?;
    run_predict(&PredictArgs {
        task,
        device: args.device.clone(),
        batch_size: None,
        last: false,
        per_sample: false,
        stream: false,
        stream_block: 16,
        stream_weights: stoker_infer::StreamWeights::F32,
        model_from_checkpoint: false,
        input_data: None,
        all_windows: false,
        csv: false,
    })?;
    Ok(())
}

fn demo(args: &DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    run_synth(&SynthArgs {
        out: Some(DEMO_DATA.into()),
        start_year: 2010,
        years: 3,
        seed: args.data_seed,
        anc: Default::default(),
    })?;
    let run = RunArgs {
        config: args.config.clone(),
        input: Some(DEMO_DATA.into()),
        artifacts: None,
        device: args.device.clone(),
        seed: None,
        epochs: None,
        seeds: None,
    };
    run_all(&run)?;
    let layout = ArtifactLayout::for_config(&run.config, run.artifacts.as_deref());
    let metrics = ForecastMetrics::load(&layout.predict_metrics())?;
    // The naive forecast is the bar a newcomer's first result has to clear.
    let gain = 100.0 * (1.0 - metrics.rmse / metrics.persistence_rmse);
    println!(
        "demo done in {:.0}s: test RMSE {:.2} {u}, {gain:.1} % below persistence's {:.2} {u} \
         (next hour := this hour); artifacts in {}/ (data/, train/, predict/)",
        started.elapsed().as_secs_f64(),
        metrics.rmse,
        metrics.persistence_rmse,
        layout.root().display(),
        u = metrics.unit
    );
    Ok(())
}

/// The prepare stage as the sweep calls it (the train stage does not depend on the data stage).
struct DataStage;

impl Prepare for DataStage {
    fn prepare_task(&self, task: &TaskArgs, input: Option<&Path>) -> Result<(), BoxError> {
        run_prepare(&PrepareArgs {
            task: task.clone(),
            input: input.map(PathBuf::from),
            anc: Default::default(),
        })?;
        Ok(())
    }

    fn prepare(&self, config: &TaskConfig, input: &Path, out_dir: &Path) -> Result<(), BoxError> {
        prepare(&PrepareRequest {
            config: config.clone(),
            input: input.into(),
            out_dir: out_dir.into(),
        })?;
        Ok(())
    }
}

fn main() -> ExitCode {
    stoker_cli::exit(match Cli::parse().command {
        Command::Prepare(args) => run_prepare(&args).map(drop),
        Command::Train(args) => launch::train(&args),
        Command::Predict(args) => predict(&args),
        Command::Export(args) => run_export(&args).map(drop),
        Command::Run(args) => run_all(&args),
        Command::Demo(args) => demo(&args),
        Command::Synth(args) => run_synth(&args).map(drop),
        Command::Sweep(args) => run_sweep(&args, &DataStage).map(drop).map_err(Into::into),
        Command::Tune(args) => run_tune(&args).map(drop),
        Command::Bench(args) => run_bench(&args),
        Command::BenchWorker(args) => run_worker(&args),
    })
}

//! The predict stage's command line, shared by its binary and `cargo xtask predict`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use stoker_artifact::layout::PREDICT_METRICS_FILE;
use stoker_artifact::{CheckpointChoice, ForecastMetrics};
use stoker_cli::TaskArgs;
use stoker_zoo::device::parse_device;

use crate::predictor::{PredictRequest, predict};

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Compute device: cpu (default), wgpu or cuda when built with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Overrides `predict.batch_size`.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Evaluate the `last` checkpoint instead of the configured one (`best` by default).
    #[arg(long)]
    pub last: bool,
}

/// Runs predict; prints a summary and, as the last line, the path of `metrics.json`.
pub fn run_predict(args: &PredictArgs) -> Result<(ForecastMetrics, PathBuf)> {
    let config = args.task.load_config()?;
    let device = parse_device(&args.device).map_err(|e| anyhow!(e))?;
    let layout = args.task.layout();
    let metrics = predict(&PredictRequest {
        data_dir: layout.data_dir(),
        train_dir: layout.train_dir(),
        out_dir: layout.predict_dir(),
        checkpoint: if args.last {
            CheckpointChoice::Last
        } else {
            config.predict.checkpoint
        },
        batch_size: args.batch_size.unwrap_or(config.predict.batch_size),
        device,
    })?;
    let path = layout.predict_dir().join(PREDICT_METRICS_FILE);
    println!(
        "{} windows of the {} split: RMSE {:.3} {u}, MAE {:.3} {u} (persistence RMSE {:.3}, MAE {:.3}); {:.0} windows/s; checkpoint {}",
        metrics.windows,
        metrics.split,
        metrics.rmse,
        metrics.mae,
        metrics.persistence_rmse,
        metrics.persistence_mae,
        metrics.infer_samples_per_s,
        metrics.checkpoint,
        u = metrics.unit,
    );
    println!("{}", path.display());
    Ok((metrics, path))
}

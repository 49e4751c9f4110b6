//! The train stage's command line, shared by its binary and `cargo xtask train`.

use anyhow::{Result, anyhow};
use clap::Args;
use stoker_artifact::RunSummary;
use stoker_artifact::layout::SUMMARY_FILE;
use stoker_cli::TaskArgs;
use stoker_zoo::device::parse_device;

use crate::trainer::{TrainRequest, train};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Compute device: cpu (default), wgpu or cuda when built with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Overrides `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides `train.epochs`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Overrides `train.batch_size`.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Overrides `train.lr`.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Overrides `train.accumulate`: gradient accumulation over K micro-batches per batch.
    #[arg(long)]
    pub accumulate: Option<usize>,
}

pub fn run_train(args: &TrainArgs) -> Result<RunSummary> {
    let mut config = args.task.load_config()?;
    config.seed = args.seed.unwrap_or(config.seed);
    config.train.epochs = args.epochs.unwrap_or(config.train.epochs);
    config.train.batch_size = args.batch_size.unwrap_or(config.train.batch_size);
    config.train.lr = args.lr.unwrap_or(config.train.lr);
    config.train.accumulate = args.accumulate.unwrap_or(config.train.accumulate);
    let device = parse_device(&args.device).map_err(|e| anyhow!(e))?;
    let layout = args.task.layout();
    let summary = train(&TrainRequest {
        config,
        task: args.task.task(),
        data_dir: layout.data_dir(),
        out_dir: layout.train_dir(),
        device,
        device_name: args.device.clone(),
    })?;
    println!(
        "trained {} ({} parameters) for {} epochs: best val loss {:.5} at epoch {}, {:.0} samples/s, data stall {:.1} % → {}",
        summary.model,
        summary.parameters,
        summary.epochs,
        summary.best_val_loss,
        summary.best_epoch,
        summary.samples_per_s,
        summary.data_stall_fraction * 100.0,
        layout.train_dir().join(SUMMARY_FILE).display()
    );
    Ok(summary)
}

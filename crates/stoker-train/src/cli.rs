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
    /// Continue the run in `train/` from its newest resumable checkpoint.
    #[arg(long)]
    pub resume: bool,
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
        resume: args.resume,
    })?;
    print_summary(&summary, &layout.train_dir().join(SUMMARY_FILE));
    Ok(summary)
}

/// The run summary as people read it at the end of training.
pub fn print_summary(s: &RunSummary, path: &std::path::Path) {
    let t = &s.step_time;
    let total = (t.data_wait_s + t.compute_s + t.optimizer_s).max(1e-12);
    println!(
        "trained {} ({} parameters, {}) for {} epochs on {}: best val loss {:.5} at epoch {}",
        s.model, s.parameters, s.precision, s.epochs, s.device, s.best_val_loss, s.best_epoch
    );
    println!(
        "  {:.0} samples/s, batch {} ({} micro-batch{}); step time: data wait {:.1} %, forward+backward {:.1} %, optimizer {:.1} %",
        s.samples_per_s,
        s.batch_size,
        s.accumulate,
        if s.accumulate == 1 { "" } else { "es" },
        100.0 * t.data_wait_s / total,
        100.0 * t.compute_s / total,
        100.0 * t.optimizer_s / total,
    );
    println!(
        "  utilisation {:.0} ± {:.0} %, peak memory {:.0} MiB; bound by {}: {}",
        s.utilisation_mean_percent,
        s.utilisation_std_percent,
        s.peak_memory_bytes as f64 / (1 << 20) as f64,
        s.diagnosis.bound,
        s.diagnosis.advice
    );
    println!("  → {}", path.display());
}

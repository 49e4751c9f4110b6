//! The predict stage's command line, shared by its binary and `cargo xtask predict`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use stoker_artifact::{AncMetrics, CheckpointChoice, ForecastMetrics};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_runtime::device::open;

use crate::{PredictRequest, Prediction, predict};

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Overrides `predict.batch_size`.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Evaluate the `last` checkpoint instead of the configured one (`best` by default).
    #[arg(long)]
    pub last: bool,
    /// ANC: run the controller one sample at a time (only to compare with batched prediction).
    #[arg(long)]
    pub per_sample: bool,
}

/// Runs predict; prints a summary and, as the last line, the path of `metrics.json`.
pub fn run_predict(args: &PredictArgs) -> Result<(Prediction, PathBuf)> {
    let mut config = args.task.load_config()?;
    config.predict.batch_size = args.batch_size.unwrap_or(config.predict.batch_size);
    config.validate(&args.task.config)?;
    let device = open(&args.device.device, !args.device.no_fusion)?;
    let layout = args.task.layout();
    let prediction = predict(&PredictRequest {
        data_dir: layout.data_dir(),
        train_dir: layout.train_dir(),
        out_dir: layout.predict_dir(),
        checkpoint: if args.last {
            CheckpointChoice::Last
        } else {
            config.predict.checkpoint
        },
        batch_size: config.predict.batch_size,
        device,
        per_sample: args.per_sample,
        fxnlms_taps: config.predict.fxnlms_taps,
        fxnlms_step: config.predict.fxnlms_step,
    })?;
    let path = layout.predict_metrics();
    match &prediction {
        Prediction::Forecast(m) => print_forecast(m),
        Prediction::Anc(m) => print_anc(m),
    }
    println!("{}", path.display());
    Ok((prediction, path))
}

fn print_anc(m: &AncMetrics) {
    let bands: Vec<String> = m
        .band_nr_db
        .iter()
        .map(|b| format!("{:.0}–{:.0} Hz {:.1} dB", b.low_hz, b.high_hz, b.nr_db))
        .collect();
    println!(
        "noise reduction over the {} split ({} samples): network {:.2} dB, FxNLMS {:.2} dB, \
         least-squares FIR {:.2} dB; bands: {}; {:.0} samples/s ({}); checkpoint {}",
        m.split,
        m.samples,
        m.nr_db,
        m.fxnlms_nr_db,
        m.wiener_nr_db,
        bands.join(", "),
        m.infer_samples_per_s,
        m.mode,
        m.checkpoint
    );
}

fn print_forecast(m: &ForecastMetrics) {
    let errors = if m.unit == "normalised" {
        format!(
            "MSE {:.4}, MAE {:.4} (repeat-last-value MSE {:.4})",
            m.mse, m.mae, m.repeat_mse
        )
    } else {
        format!(
            "RMSE {:.3} {u}, MAE {:.3} {u} (persistence RMSE {:.3}, MAE {:.3})",
            m.rmse,
            m.mae,
            m.persistence_rmse,
            m.persistence_mae,
            u = m.unit
        )
    };
    println!(
        "{} windows of the {} split: {errors}; {:.0} windows/s; checkpoint {}",
        m.windows, m.split, m.infer_samples_per_s, m.checkpoint
    );
}

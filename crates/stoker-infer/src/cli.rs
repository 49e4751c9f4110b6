//! The predict stage's command line, shared by its binary and `cargo xtask predict`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use stoker_artifact::diff::{Side, describe};
use stoker_artifact::layout::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use stoker_artifact::{AncMetrics, CheckpointChoice, CheckpointMeta, ForecastMetrics, ModelSpec};
use stoker_cli::{DeviceArgs, TaskArgs};
use stoker_runtime::device::open;

use crate::{
    AncMode, InputForecast, InputOptions, PredictRequest, Prediction, StreamWeights, predict,
};

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
    #[arg(long, conflicts_with = "stream")]
    pub per_sample: bool,
    /// ANC: run the streaming controller on one thread, fed blocks as an audio callback
    /// would, and report the blocks that missed their deadline.
    #[arg(long)]
    pub stream: bool,
    /// ANC `--stream`: samples per block.
    #[arg(long, default_value_t = 16, requires = "stream")]
    pub stream_block: usize,
    /// ANC `--stream`: the weights' type in the products.
    #[arg(long, value_enum, default_value_t = StreamWeights::F32, requires = "stream")]
    pub stream_weights: StreamWeights,
    /// Run the checkpoint's model even where the config's `[model]` differs from it.
    #[arg(long)]
    pub model_from_checkpoint: bool,
    /// Forecast past the end of new data applied to the model (`stoker-data apply --data
    /// DATA_DIR --input FILE --out DIR`; `cargo xtask predict --input FILE` does both) instead
    /// of scoring the test split: writes `predict/forecast.parquet`.
    #[arg(long, value_name = "DIR")]
    pub input_data: Option<PathBuf>,
    /// With applied input: forecast from every complete window, not only the last one.
    #[arg(long)]
    pub all_windows: bool,
    /// With applied input: also write `predict/forecast.csv`.
    #[arg(long)]
    pub csv: bool,
}

/// Runs predict; prints a summary and, as the last line, the path of `metrics.json` (with
/// `--input-data`: of `forecast.parquet`).
pub fn run_predict(args: &PredictArgs) -> Result<(Prediction, PathBuf)> {
    if args.input_data.is_none() && (args.all_windows || args.csv) {
        bail!("--all-windows and --csv apply to forecasts from new data: pass --input-data DIR");
    }
    let mut config = args.task.load_config()?;
    config.predict.batch_size = args.batch_size.unwrap_or(config.predict.batch_size);
    config.validate(&args.task.config)?;
    let device = open(&args.device.device, !args.device.no_fusion)?;
    let layout = args.task.layout();
    let checkpoint = if args.last {
        CheckpointChoice::Last
    } else {
        config.predict.checkpoint
    };
    if !args.model_from_checkpoint {
        let name = match checkpoint {
            CheckpointChoice::Best => BEST_CHECKPOINT,
            CheckpointChoice::Last => LAST_CHECKPOINT,
        };
        let meta = layout.train_dir().join(format!("{name}.json"));
        check_model(&config.model, &args.task.config, &meta)?;
    }
    let prediction = predict(&PredictRequest {
        data_dir: layout.data_dir(),
        train_dir: layout.train_dir(),
        out_dir: layout.predict_dir(),
        checkpoint,
        batch_size: config.predict.batch_size,
        device,
        anc_mode: if args.stream {
            AncMode::Stream {
                block: args.stream_block,
                weights: args.stream_weights,
            }
        } else if args.per_sample {
            AncMode::PerSample
        } else {
            AncMode::Batched
        },
        fxnlms_taps: config.predict.fxnlms_taps,
        fxnlms_step: config.predict.fxnlms_step,
        input: args.input_data.as_ref().map(|dir| InputOptions {
            dir: dir.clone(),
            all_windows: args.all_windows,
            csv: args.csv,
        }),
    })?;
    let mut path = layout.predict_metrics();
    match &prediction {
        Prediction::Forecast(m) => print_forecast(m),
        Prediction::Anc(m) => print_anc(m),
        Prediction::Input(f) => {
            print_input(f);
            path.clone_from(&f.forecast);
        }
    }
    println!("{}", path.display());
    Ok((prediction, path))
}

/// Predict runs the model the checkpoint `meta` records: a config (`config_path`) asking for
/// another `model` is refused, naming each difference, rather than ignored without a word. A
/// checkpoint that cannot be read is left for predict to report.
fn check_model(model: &ModelSpec, config_path: &Path, meta: &Path) -> Result<()> {
    let Ok(checkpoint) = CheckpointMeta::load(meta) else {
        return Ok(());
    };
    let diffs = model.differences(&checkpoint.model);
    if diffs.is_empty() {
        return Ok(());
    }
    bail!(
        "{}: {} but checkpoint {} has {}; pass --model-from-checkpoint to use the checkpoint's model",
        config_path.display(),
        describe(&diffs, Side::Left, " = "),
        meta.display(),
        describe(&diffs, Side::Right, " = "),
    )
}

fn print_anc(m: &AncMetrics) {
    let bands: Vec<String> = m
        .band_nr_db
        .iter()
        .map(|b| format!("{:.0}–{:.0} Hz {:.1} dB", b.low_hz, b.high_hz, b.nr_db))
        .collect();
    let linear_only = m
        .linear_only_nr_db
        .map(|db| format!(" (its linear FIR alone {db:.2} dB)"))
        .unwrap_or_default();
    // On a new recording the FIR is fitted on the recording it is scored on: a bound.
    let fitted = if m.split == "input" {
        " fitted on it"
    } else {
        ""
    };
    println!(
        "noise reduction over the {} split ({} samples): network {:.2} dB{linear_only}, FxNLMS \
         {:.2} dB, least-squares FIR{fitted} {:.2} dB; bands: {}; {:.0} samples/s ({}); checkpoint {}",
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

fn print_input(f: &InputForecast) {
    println!(
        "forecast {} step(s) from {} window(s) of {}: the last from {} on (its window ends {})",
        f.steps,
        f.windows,
        f.file.display(),
        crate::forecast_input::format_time(f.first_forecast),
        crate::forecast_input::format_time(f.last_window_end),
    );
    if let Some(m) = &f.metrics {
        print_forecast(m);
    }
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
    let linear_only = match (m.linear_only_mse, m.linear_only_rmse) {
        (Some(mse), _) if m.unit == "normalised" => format!("; its linear part alone MSE {mse:.4}"),
        (_, Some(rmse)) => format!("; its linear part alone RMSE {rmse:.3} {}", m.unit),
        _ => String::new(),
    };
    println!(
        "{} windows of the {} split: {errors}{linear_only}; {:.0} windows/s; checkpoint {}",
        m.windows, m.split, m.infer_samples_per_s, m.checkpoint
    );
}

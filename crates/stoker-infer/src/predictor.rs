//! Batched inference over a whole split, metrics in the target's unit, and the output files.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Array, StringArray, TimestampSecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use burn::prelude::*;
use stoker_artifact::atomic::{self, StagingDir};
use stoker_artifact::layout::{PREDICT_METRICS_FILE, PREDICTIONS_FILE};
use stoker_artifact::manifest::MANIFEST_FILE;
use stoker_artifact::{
    AncMetrics, CheckpointChoice, ForecastMetrics, MetricScale, PreparedData, RunLock, Split,
    TaskFamily, WindowSpec, WindowStore,
};
use stoker_runtime::batch::{fitting_batch, inputs_tensor, try_to_host};
use stoker_zoo::Model;

use crate::ablation::linear_only_errors;
use crate::anc::{AncMode, AncOptions};
use crate::error::{Error, Result};
use crate::forecast_input::{InputForecast, InputOptions};
use crate::loaded::{Expected, Loaded};

#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub data_dir: PathBuf,
    pub train_dir: PathBuf,
    pub out_dir: PathBuf,
    pub checkpoint: CheckpointChoice,
    pub batch_size: usize,
    pub device: Device,
    /// ANC: batched, one forward pass per sample, or the streaming controller.
    pub anc_mode: AncMode,
    /// ANC baselines: FxNLMS / least-squares FIR taps and the FxNLMS step size.
    pub fxnlms_taps: usize,
    pub fxnlms_step: f64,
    /// Forecast from an applied input (a new file) instead of the test split; `data_dir` is
    /// then unused.
    pub input: Option<InputOptions>,
}

impl PredictRequest {
    /// How an ANC checkpoint runs and which baselines it is scored against.
    pub(crate) fn anc_options(&self) -> AncOptions {
        AncOptions {
            batch_size: self.batch_size,
            mode: self.anc_mode,
            baseline_taps: self.fxnlms_taps,
            fxnlms_step: self.fxnlms_step as f32,
        }
    }
}

/// What predict measured: forecast errors, or an ANC task's noise reduction; or, on applied
/// input, the forecasts written.
#[derive(Debug, Clone)]
pub enum Prediction {
    Forecast(ForecastMetrics),
    Anc(AncMetrics),
    Input(InputForecast),
}

/// Forecasts of every window, flattened window-major, then step, then target; in the metric
/// scale (raw units or normalised).
pub(crate) struct Forecasts {
    pub truth: Vec<f32>,
    pub prediction: Vec<f32>,
    pub persistence: Vec<f32>,
    /// Attention weights per window over the recurrent steps, for models that have them.
    pub attention: Option<Attention>,
}

pub fn predict(req: &PredictRequest) -> Result<Prediction> {
    if let Some(input) = &req.input {
        return crate::forecast_input::predict(req, input);
    }
    if req.batch_size == 0 {
        return Err(Error::BatchSize);
    }
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    let data = PreparedData::open(&req.data_dir)?;
    let loaded = Loaded::load(
        &req.train_dir,
        req.checkpoint,
        &req.device,
        Expected {
            manifest_sha256: &data.manifest_sha256,
            features: data.manifest.features.len(),
            targets: &data.manifest.targets,
        },
        |checkpoint| Error::StaleCheckpoint {
            checkpoint,
            manifest: data.dir.join(MANIFEST_FILE),
        },
    )?;
    let (model, meta, name) = (&loaded.model, &loaded.meta, loaded.name);
    if meta.model.family() == TaskFamily::Control {
        let recording = crate::anc::Recording::test_split(&data)?;
        return crate::anc::predict_into(req, &loaded, &recording).map(Prediction::Anc);
    }
    let spec = meta.window;
    let windows = data.windows(Split::Test, spec);
    if windows.is_empty() {
        return Err(Error::NoTestWindows {
            data_dir: data.dir.clone(),
        });
    }
    let started = Instant::now();
    let (normalised, attention) =
        fitting_batch(&Cell::new(req.batch_size), "prediction", |batch_size| {
            infer(model, &data, spec, &windows, batch_size)
        })?;
    let infer_seconds = started.elapsed().as_secs_f64();
    let forecasts = forecasts(&data, spec, &windows, normalised, attention);
    let mut metrics = metrics(
        &forecasts,
        &data,
        windows.len(),
        name,
        meta.epoch,
        infer_seconds,
    );
    let linear = linear_only_errors(
        model,
        &data,
        spec,
        &windows,
        req.batch_size,
        &forecasts.truth,
    )?;
    if let Some((mse, mae)) = linear {
        metrics.linear_only_mse = Some(mse);
        metrics.linear_only_rmse = Some(mse.sqrt());
        metrics.linear_only_mae = Some(mae);
    }
    let staging = StagingDir::new(&req.out_dir)?;
    write_predictions(
        &staging.path().join(PREDICTIONS_FILE),
        &data,
        spec,
        &windows,
        &forecasts,
    )?;
    if let Some((steps, weights)) = &forecasts.attention {
        crate::attention::write(staging.path(), &data, spec, &windows, *steps, weights)?;
    }
    atomic::write_json(&staging.path().join(PREDICT_METRICS_FILE), &metrics)?;
    staging.commit()?;
    Ok(Prediction::Forecast(metrics))
}

/// Attention weights of every window: (steps per window, [windows × steps]).
type Attention = (usize, Vec<f32>);

/// The input windows starting at `starts`, as one [windows, input_len, cols] batch.
pub(crate) fn window_batch(
    store: &WindowStore,
    spec: WindowSpec,
    starts: &[usize],
    device: &Device,
) -> Tensor<3> {
    let mut inputs = Vec::new();
    store.gather_inputs(starts, spec, &mut inputs);
    inputs_tensor(inputs, [starts.len(), spec.input_len, store.cols()], device)
}

/// Batched inference: normalised predictions [windows × outputs] and attention if any.
fn infer(
    model: &Model,
    data: &PreparedData,
    spec: WindowSpec,
    windows: &[usize],
    batch_size: usize,
) -> Result<(Vec<f32>, Option<Attention>)> {
    let device = model.devices().into_iter().next().ok_or(Error::NoDevice)?;
    let mut predictions = Vec::new();
    let mut attention: Option<Attention> = None;
    for chunk in windows.chunks(batch_size) {
        let (output, weights) =
            model.forward_explained(window_batch(&data.store, spec, chunk, &device));
        if let Some(weights) = weights {
            let steps = weights.dims()[1];
            attention
                .get_or_insert_with(|| (steps, Vec::new()))
                .1
                .extend(try_to_host(weights)?);
        }
        predictions.extend(try_to_host(output)?);
    }
    Ok((predictions, attention))
}

fn forecasts(
    data: &PreparedData,
    spec: WindowSpec,
    windows: &[usize],
    prediction: Vec<f32>,
    attention: Option<Attention>,
) -> Forecasts {
    let targets = &data.manifest.targets;
    let mut truth = Vec::with_capacity(prediction.len());
    data.store
        .gather_targets(windows, spec, targets, &mut truth);
    let mut persistence = Vec::with_capacity(prediction.len());
    for &s in windows {
        let last = s + spec.input_len - 1;
        for _ in 0..spec.output_len {
            persistence.extend(targets.iter().map(|&c| data.store.value(last, c)));
        }
    }
    let mut f = Forecasts {
        truth,
        prediction,
        persistence,
        attention,
    };
    for values in [&mut f.truth, &mut f.prediction, &mut f.persistence] {
        to_metric_scale(data, values);
    }
    f
}

/// Normalised values, flattened window-major then step then target, into the metric scale:
/// the target's own unit when the manifest says so.
pub(crate) fn to_metric_scale(data: &PreparedData, values: &mut [f32]) {
    if data.manifest.metric_scale != MetricScale::Raw {
        return;
    }
    let features: Vec<_> = data.manifest.target_features().collect();
    for (i, v) in values.iter_mut().enumerate() {
        *v = features[i % features.len()].denormalize(f64::from(*v)) as f32;
    }
}

fn metrics(
    f: &Forecasts,
    data: &PreparedData,
    windows: usize,
    checkpoint: &str,
    epoch: usize,
    infer_seconds: f64,
) -> ForecastMetrics {
    let (mse, mae) = errors(&f.truth, &f.prediction);
    let (persistence_mse, persistence_mae) = errors(&f.truth, &f.persistence);
    ForecastMetrics {
        split: Split::Test.name().into(),
        unit: data.manifest.target_unit.clone(),
        windows,
        mse,
        rmse: mse.sqrt(),
        mae,
        persistence_mse,
        persistence_rmse: persistence_mse.sqrt(),
        persistence_mae,
        repeat_mse: persistence_mse,
        checkpoint: format!("{checkpoint} (epoch {epoch})"),
        infer_samples_per_s: windows as f64 / infer_seconds,
        linear_only_mse: None,
        linear_only_rmse: None,
        linear_only_mae: None,
    }
}

/// (MSE, MAE) of `predicted` against `truth`.
pub(crate) fn errors(truth: &[f32], predicted: &[f32]) -> (f64, f64) {
    let n = truth.len().max(1) as f64;
    let (mut sq, mut abs) = (0.0, 0.0);
    for (&t, &p) in truth.iter().zip(predicted) {
        let d = f64::from(p) - f64::from(t);
        sq += d * d;
        abs += d.abs();
    }
    (sq / n, abs / n)
}

/// One row per window, step and target: time of the target row, step (1-based), target name,
/// truth, prediction and persistence.
fn write_predictions(
    path: &Path,
    data: &PreparedData,
    spec: WindowSpec,
    windows: &[usize],
    f: &Forecasts,
) -> Result<()> {
    let names: Vec<&str> = data
        .manifest
        .target_features()
        .map(|t| t.name.as_str())
        .collect();
    let (mut time, mut step, mut target) = (Vec::new(), Vec::new(), Vec::new());
    for &s in windows {
        for (k, row) in spec.target_rows(s).enumerate() {
            for name in &names {
                time.push(data.store.timestamps()[row]);
                step.push(k as u32 + 1);
                target.push(*name);
            }
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
        Field::new("step", DataType::UInt32, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("truth", DataType::Float32, false),
        Field::new("prediction", DataType::Float32, false),
        Field::new("persistence", DataType::Float32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(time).with_timezone("UTC")),
        Arc::new(UInt32Array::from(step)),
        Arc::new(StringArray::from(target)),
        Arc::new(Float32Array::from(f.truth.clone())),
        Arc::new(Float32Array::from(f.prediction.clone())),
        Arc::new(Float32Array::from(f.persistence.clone())),
    ];
    let unit = data.manifest.target_unit.clone();
    stoker_artifact::table::write_batch(path, schema, columns, vec![("unit".into(), unit)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::errors;

    #[test]
    fn mse_and_mae() {
        let (mse, mae) = errors(&[0.0, 0.0], &[3.0, -4.0]);
        assert!((mse - 12.5).abs() < 1e-12);
        assert!((mae - 3.5).abs() < 1e-12);
    }
}

//! Predict on applied input (`--input-data`): forecasts past the end of a new file, for the
//! window that ends at its last row (or every complete window), in the targets' own units with
//! their future timestamps; metrics where the file holds the truth.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float32Array, StringArray, TimestampSecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use burn::prelude::*;
use stoker_artifact::atomic::{self, StagingDir};
use stoker_artifact::layout::{FORECAST_CSV_FILE, FORECAST_FILE, PREDICT_METRICS_FILE};
use stoker_artifact::{
    AppliedInput, FeatureKind, ForecastMetrics, INPUT_OK, MetricScale, RunLock, TARGET_OK,
    TaskFamily, WindowSpec,
};
use stoker_runtime::batch::{fitting_batch, try_to_host};
use stoker_zoo::Model;

use crate::error::{Error, Result};
use crate::loaded::{Expected, Loaded};
use crate::predictor::window_batch;
use crate::predictor::{PredictRequest, Prediction, errors};

/// Predict on an applied input instead of the test split.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// The applied input (`stoker-data apply … --out DIR`; `cargo xtask predict --input FILE`
    /// writes `<artifacts>/input/`).
    pub dir: PathBuf,
    /// Forecast from every complete window, not only the one ending at the last row.
    pub all_windows: bool,
    /// Also write `forecast.csv`.
    pub csv: bool,
}

/// What predict wrote for an applied input.
#[derive(Debug, Clone)]
pub struct InputForecast {
    /// The file the input was applied from.
    pub file: PathBuf,
    pub windows: usize,
    /// Forecast steps per window.
    pub steps: usize,
    /// The last window's last input row and its first forecast, seconds since the epoch (UTC).
    pub last_window_end: i64,
    pub first_forecast: i64,
    /// `forecast.parquet` in the committed output directory.
    pub forecast: PathBuf,
    /// Errors where the file holds the truth of some forecast steps (`split` = `input`).
    pub metrics: Option<ForecastMetrics>,
}

/// Forecasts past the input's end, or, for an ANC model, the controller on the new recording.
pub(crate) fn predict(req: &PredictRequest, opts: &InputOptions) -> Result<Prediction> {
    if req.batch_size == 0 {
        return Err(Error::BatchSize);
    }
    let _lock = RunLock::for_stage_dir(&req.out_dir)?;
    let input = AppliedInput::open(&opts.dir)?;
    let m = &input.manifest;
    let file = m.file().to_path_buf();
    let loaded = Loaded::load(
        &req.train_dir,
        req.checkpoint,
        &req.device,
        Expected {
            manifest_sha256: &m.training_manifest_sha256,
            features: m.features.len(),
            targets: &m.targets,
        },
        |checkpoint| Error::InputMismatch {
            checkpoint,
            file: file.clone(),
        },
    )?;
    let (model, meta) = (&loaded.model, &loaded.meta);
    if meta.model.family() == TaskFamily::Control {
        let recording = crate::anc::Recording::applied(&input)?;
        return crate::anc::predict_into(req, &loaded, &recording).map(Prediction::Anc);
    }
    let spec = meta.window;
    let starts = window_starts(&input, spec, opts.all_windows)?;

    let started = Instant::now();
    let normalised = fitting_batch(&Cell::new(req.batch_size), "prediction", |batch_size| {
        infer(model, &input, spec, &starts, batch_size)
    })?;
    let infer_seconds = started.elapsed().as_secs_f64();
    let table = ForecastTable::build(&input, spec, &starts, &normalised);
    let metrics = table.scored.metrics(
        m.target_unit.clone(),
        loaded.label(),
        starts.len() as f64 / infer_seconds,
    );

    let staging = StagingDir::new(&req.out_dir)?;
    table.write_parquet(&staging.path().join(FORECAST_FILE), &input)?;
    if opts.csv {
        table.write_csv(&staging.path().join(FORECAST_CSV_FILE), &input)?;
    }
    if let Some(metrics) = &metrics {
        atomic::write_json(&staging.path().join(PREDICT_METRICS_FILE), metrics)?;
    }
    staging.commit()?;
    let last = *starts.last().unwrap_or(&0);
    let step = m.time_step_seconds;
    let last_end = input.store.timestamps()[last + spec.input_len - 1];
    Ok(Prediction::Input(InputForecast {
        file,
        windows: starts.len(),
        steps: spec.output_len,
        last_window_end: last_end,
        first_forecast: last_end + step * spec.horizon as i64,
        forecast: req.out_dir.join(FORECAST_FILE),
        metrics,
    }))
}

/// The window ending at the last row (an error naming the missing cell if one of its inputs is
/// missing), or every window whose inputs are all present.
fn window_starts(input: &AppliedInput, spec: WindowSpec, all: bool) -> Result<Vec<usize>> {
    let m = &input.manifest;
    let rows = m.rows;
    if rows < spec.input_len {
        return Err(Error::ShortHistory {
            file: m.file().into(),
            needed: spec.input_len,
            found: rows,
        });
    }
    let flags = input.store.flags();
    let last = rows - spec.input_len;
    if !all {
        if let Some(row) = (last..rows).find(|&r| flags[r] & INPUT_OK == 0) {
            return Err(Error::MissingInWindow {
                file: m.file().into(),
                row: row + 1,
                time: format_time(input.store.timestamps()[row]),
                column: missing_column(input, row),
                window: format!("{}..{}", last + 1, rows),
            });
        }
        return Ok(vec![last]);
    }
    let mut starts = Vec::new();
    let mut clean_run = 0usize;
    for (r, &f) in flags.iter().enumerate() {
        clean_run = if f & INPUT_OK != 0 { clean_run + 1 } else { 0 };
        if clean_run >= spec.input_len {
            starts.push(r + 1 - spec.input_len);
        }
    }
    if starts.is_empty() {
        return Err(Error::NoInputWindows {
            file: m.file().into(),
            needed: spec.input_len,
        });
    }
    Ok(starts)
}

/// The store column a row lacks: a NaN numeric column, or a categorical column none of whose
/// one-hot columns is set.
fn missing_column(input: &AppliedInput, row: usize) -> String {
    let features = &input.manifest.features;
    if let Some(f) = (0..features.len())
        .find(|&c| input.store.value(row, c).is_nan())
        .map(|c| &features[c])
    {
        return f.name.clone();
    }
    features
        .iter()
        .enumerate()
        .filter_map(|(c, f)| match &f.kind {
            FeatureKind::OneHot { column, .. } => Some((c, column)),
            _ => None,
        })
        .fold(Vec::<(&String, f32)>::new(), |mut groups, (c, column)| {
            let v = input.store.value(row, c);
            match groups.iter_mut().find(|(g, _)| *g == column) {
                Some((_, sum)) => *sum += v,
                None => groups.push((column, v)),
            }
            groups
        })
        .into_iter()
        .find(|&(_, sum)| sum == 0.0)
        .map_or_else(|| "?".into(), |(column, _)| column.clone())
}

/// Normalised forecasts [windows × output_len·targets], batched.
fn infer(
    model: &Model,
    input: &AppliedInput,
    spec: WindowSpec,
    starts: &[usize],
    batch_size: usize,
) -> Result<Vec<f32>> {
    let device = model.devices().into_iter().next().ok_or(Error::NoDevice)?;
    let mut out = Vec::with_capacity(starts.len() * spec.output_len);
    for chunk in starts.chunks(batch_size) {
        let (output, _) = model.forward_explained(window_batch(&input.store, spec, chunk, &device));
        out.extend(try_to_host(output)?);
    }
    Ok(out)
}

/// Cells of the forecast table whose truth the input holds, in the metric scale.
#[derive(Default)]
struct Scored {
    truth: Vec<f32>,
    prediction: Vec<f32>,
    persistence: Vec<f32>,
    windows: usize,
}

impl Scored {
    fn metrics(&self, unit: String, checkpoint: String, rate: f64) -> Option<ForecastMetrics> {
        if self.truth.is_empty() {
            return None;
        }
        let (mse, mae) = errors(&self.truth, &self.prediction);
        let (p_mse, p_mae) = errors(&self.truth, &self.persistence);
        Some(ForecastMetrics {
            split: "input".into(),
            unit,
            windows: self.windows,
            mse,
            rmse: mse.sqrt(),
            mae,
            persistence_mse: p_mse,
            persistence_rmse: p_mse.sqrt(),
            persistence_mae: p_mae,
            repeat_mse: p_mse,
            checkpoint,
            infer_samples_per_s: rate,
            linear_only_mse: None,
            linear_only_rmse: None,
            linear_only_mae: None,
        })
    }
}

/// One row per window, step and target: the window's last input time, the forecast's time,
/// the step (1-based), the target and the forecast in the target's own unit.
struct ForecastTable {
    window_end: Vec<i64>,
    time: Vec<i64>,
    step: Vec<u32>,
    target: Vec<usize>,
    forecast: Vec<f32>,
    scored: Scored,
}

impl ForecastTable {
    fn build(input: &AppliedInput, spec: WindowSpec, starts: &[usize], normalised: &[f32]) -> Self {
        let m = &input.manifest;
        let (ts, flags) = (input.store.timestamps(), input.store.flags());
        let targets: Vec<_> = m.target_features().collect();
        let raw = m.metric_scale == MetricScale::Raw;
        let in_scale = |t: usize, v: f32| {
            if raw {
                targets[t].denormalize(f64::from(v)) as f32
            } else {
                v
            }
        };
        let mut table = Self {
            window_end: Vec::new(),
            time: Vec::new(),
            step: Vec::new(),
            target: Vec::new(),
            forecast: Vec::new(),
            scored: Scored::default(),
        };
        let per_window = spec.output_len * targets.len();
        for (w, &s) in starts.iter().enumerate() {
            let end = s + spec.input_len - 1;
            let mut scored = false;
            for (k, row) in spec.target_rows(s).enumerate() {
                for (t, &col) in m.targets.iter().enumerate() {
                    let v = normalised[w * per_window + k * targets.len() + t];
                    table.window_end.push(ts[end]);
                    table
                        .time
                        .push(ts[end] + (row as i64 - end as i64) * m.time_step_seconds);
                    table.step.push(k as u32 + 1);
                    table.target.push(t);
                    table
                        .forecast
                        .push(targets[t].denormalize(f64::from(v)) as f32);
                    if row < m.rows && flags[row] & TARGET_OK != 0 {
                        let sc = &mut table.scored;
                        sc.truth.push(in_scale(t, input.store.value(row, col)));
                        sc.prediction.push(in_scale(t, v));
                        sc.persistence
                            .push(in_scale(t, input.store.value(end, col)));
                        scored = true;
                    }
                }
            }
            table.scored.windows += usize::from(scored);
        }
        table
    }

    fn target_names<'a>(&self, input: &'a AppliedInput) -> Vec<&'a str> {
        input
            .manifest
            .target_features()
            .map(|f| f.name.as_str())
            .collect()
    }

    fn write_parquet(&self, path: &Path, input: &AppliedInput) -> Result<()> {
        let names = self.target_names(input);
        let utc = || DataType::Timestamp(TimeUnit::Second, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_end", utc(), false),
            Field::new("timestamp", utc(), false),
            Field::new("step", DataType::UInt32, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("forecast", DataType::Float32, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampSecondArray::from(self.window_end.clone()).with_timezone("UTC")),
            Arc::new(TimestampSecondArray::from(self.time.clone()).with_timezone("UTC")),
            Arc::new(UInt32Array::from(self.step.clone())),
            Arc::new(StringArray::from_iter_values(
                self.target.iter().map(|&t| names[t]),
            )),
            Arc::new(Float32Array::from(self.forecast.clone())),
        ];
        let m = &input.manifest;
        let metadata = vec![
            ("unit".into(), unit(input)),
            ("source".into(), m.source.path.clone()),
        ];
        stoker_artifact::table::write_batch(path, schema, columns, metadata)?;
        Ok(())
    }

    fn write_csv(&self, path: &Path, input: &AppliedInput) -> Result<()> {
        let names = self.target_names(input);
        let mut text = String::from("window_end,timestamp,step,target,forecast\n");
        for i in 0..self.forecast.len() {
            text.push_str(&format!(
                "{},{},{},{},{}\n",
                format_time(self.window_end[i]),
                format_time(self.time[i]),
                self.step[i],
                csv_field(names[self.target[i]]),
                self.forecast[i]
            ));
        }
        atomic::write_bytes(path, text.as_bytes())?;
        Ok(())
    }
}

/// The forecasts' unit: the targets' raw unit, or, where metrics are on the normalised scale
/// (ETT), the unit of the file's own columns.
fn unit(input: &AppliedInput) -> String {
    match input.manifest.metric_scale {
        MetricScale::Raw => input.manifest.target_unit.clone(),
        MetricScale::Normalised => "as in the input file".into(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// ISO 8601 in UTC (`2014-12-31T23:00:00Z`); the raw seconds if chrono cannot represent them.
pub(crate) fn format_time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).map_or_else(
        || seconds.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

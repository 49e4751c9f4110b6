//! A trained model for programs that embed it: the artifacts directory opened once (checkpoint,
//! manifest, train normalisation), then forecasts from raw history rows, or the ANC controller
//! over a reference signal, in the units of the training data.

use std::path::Path;

use burn::prelude::*;
use stoker_artifact::encode::{RowEncoder, StoreColumns};
use stoker_artifact::manifest::{MANIFEST_FILE, sha256_file};
use stoker_artifact::{
    AncSignals, ArtifactLayout, CheckpointChoice, DatasetManifest, INPUT_OK, TaskFamily, WindowSpec,
};
use stoker_runtime::batch::{inputs_tensor, try_to_host};
use stoker_zoo::{Model, Network};

use crate::anc::{AncMode, AncOptions, control_signal};
use crate::error::{Error, Result};
use crate::forecast_input::format_time;
use crate::loaded::{Expected, Loaded};

/// One row of history as the training file had it: its time (seconds since the epoch, UTC),
/// the values of [`TrainedModel::input_columns`] in that order, in their own units, and the
/// category of the categorical column if the model has one (PM2.5's wind direction).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub timestamp: i64,
    pub values: Vec<f32>,
    pub category: Option<String>,
}

/// One forecast value: for `target`, `step` (1-based) steps of the sampling interval past the
/// last history row, at `timestamp`, in the target's own unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastValue {
    pub timestamp: i64,
    pub step: usize,
    pub target: String,
    pub value: f32,
}

/// A trained model and what it needs to read raw data: opened once, called many times.
///
/// ```no_run
/// use burn::prelude::Device;
/// use stoker_artifact::CheckpointChoice;
/// use stoker_infer::{HistoryRow, TrainedModel};
///
/// let model = TrainedModel::open("artifacts/etth1-lstm-attention", CheckpointChoice::Best, &Device::flex())?;
/// // The last `window_len()` rows (or more: the latest are used), one value per input column.
/// let history: Vec<HistoryRow> = (0..model.window_len() as i64)
///     .map(|h| HistoryRow {
///         timestamp: 1_530_403_200 + 3_600 * h,
///         values: vec![1.0; model.input_columns().len()],
///         category: None,
///     })
///     .collect();
/// for f in model.forecast(&history)? {
///     println!("{} +{}h: {} = {:.3}", f.timestamp, f.step, f.target, f.value);
/// }
/// # Ok::<(), stoker_infer::Error>(())
/// ```
pub struct TrainedModel {
    model: Model,
    family: TaskFamily,
    window: WindowSpec,
    manifest: DatasetManifest,
    columns: StoreColumns,
}

impl TrainedModel {
    /// Opens the checkpoint `choice` of the task whose artifacts are under `artifacts`
    /// (`data/manifest.json`, `train/best.*`), refusing one trained on other data.
    pub fn open(
        artifacts: impl AsRef<Path>,
        choice: CheckpointChoice,
        device: &Device,
    ) -> Result<Self> {
        let layout = ArtifactLayout::new(artifacts.as_ref());
        let data_dir = layout.data_dir();
        let manifest = DatasetManifest::load(&data_dir)?;
        let manifest_path = data_dir.join(MANIFEST_FILE);
        let (manifest_sha256, _) = sha256_file(&manifest_path)?;
        let columns = StoreColumns::of(&manifest, &manifest_path)?;
        let loaded = Loaded::load(
            &layout.train_dir(),
            choice,
            device,
            Expected {
                manifest_sha256: &manifest_sha256,
                features: manifest.features.len(),
                targets: &manifest.targets,
            },
            |checkpoint| Error::StaleCheckpoint {
                checkpoint,
                manifest: manifest_path.clone(),
            },
        )?;
        Ok(Self {
            family: loaded.meta.model.family(),
            window: loaded.meta.window,
            model: loaded.model,
            manifest,
            columns,
        })
    }

    /// Opens `best` on the CPU: the common case.
    pub fn open_best(artifacts: impl AsRef<Path>) -> Result<Self> {
        Self::open(artifacts, CheckpointChoice::Best, &Device::flex())
    }

    pub fn family(&self) -> TaskFamily {
        self.family
    }

    /// The numeric columns a [`HistoryRow`]'s values are, in order.
    pub fn input_columns(&self) -> &[String] {
        &self.columns.numeric
    }

    /// The categorical column and its known categories, if the model reads one.
    pub fn categorical_column(&self) -> Option<(&str, &[String])> {
        let (column, categories) = self.columns.categorical.as_ref()?;
        Some((column, categories))
    }

    /// Rows of history a forecast reads.
    pub fn window_len(&self) -> usize {
        self.window.input_len
    }

    /// The sampling interval of the rows, in seconds.
    pub fn time_step_seconds(&self) -> i64 {
        self.manifest.time_step_seconds
    }

    /// The forecast from the latest [`window_len`](Self::window_len) rows of `history`: every
    /// step and target, with its future timestamp. The rows must be consecutive at the
    /// sampling interval and complete (no gap filling here: a NaN is an error naming its row
    /// and column).
    pub fn forecast(&self, history: &[HistoryRow]) -> Result<Vec<ForecastValue>> {
        if self.family != TaskFamily::Forecast {
            return Err(Error::NotForecaster);
        }
        let spec = self.window;
        let Some(first) = history.len().checked_sub(spec.input_len) else {
            return Err(bad_history(format!(
                "{} rows, the model's window needs {}",
                history.len(),
                spec.input_len
            )));
        };
        let window = &history[first..];
        let features = &self.manifest.features;
        let encoder = RowEncoder::new(features, &self.columns);
        let mut inputs = vec![0f32; spec.input_len * features.len()];
        for (k, (row, out)) in window
            .iter()
            .zip(inputs.chunks_mut(features.len()))
            .enumerate()
        {
            self.check_row(first + k, row, window.get(k.wrapping_sub(1)))?;
            let flags = encoder
                .encode(
                    row.timestamp,
                    &row.values,
                    row.category.as_deref(),
                    true,
                    out,
                )
                .ok_or_else(|| {
                    bad_history(format!(
                        "row {}: timestamp {} is outside the calendar",
                        first + k,
                        row.timestamp
                    ))
                })?;
            if flags & INPUT_OK == 0 {
                return Err(bad_history(format!(
                    "row {} ({}): {}",
                    first + k,
                    format_time(row.timestamp),
                    self.missing(row)
                )));
            }
        }
        let device = self
            .model
            .devices()
            .into_iter()
            .next()
            .ok_or(Error::NoDevice)?;
        let x = inputs_tensor(inputs, [1, spec.input_len, features.len()], &device);
        let normalised = try_to_host(self.model.forward(x))?;
        let end = window.last().map_or(0, |r| r.timestamp);
        let last_input = spec.input_len as i64 - 1;
        let targets: Vec<_> = self.manifest.target_features().collect();
        let mut out = Vec::with_capacity(normalised.len());
        for (k, row) in spec.target_rows(0).enumerate() {
            for (t, target) in targets.iter().enumerate() {
                let v = normalised[k * targets.len() + t];
                out.push(ForecastValue {
                    timestamp: end + (row as i64 - last_input) * self.manifest.time_step_seconds,
                    step: k + 1,
                    target: target.name.clone(),
                    value: target.denormalize(f64::from(v)) as f32,
                });
            }
        }
        Ok(out)
    }

    /// The ANC plant the controller was trained for: its sample rate and acoustic paths.
    pub fn anc_plant(&self) -> Option<&AncSignals> {
        self.manifest.anc.as_ref()
    }

    /// The control signal (the loudspeaker's drive, in the disturbance's units) for every
    /// sample of `reference` (the reference microphone, in the recording's units, at the
    /// trained rate; silence before it).
    pub fn control(&self, reference: &[f32]) -> Result<Vec<f32>> {
        let (Network::MultibandAnc(net), Some(plant)) = (&self.model.net, self.anc_plant()) else {
            return Err(Error::NotAnc);
        };
        let scale_in = 1.0 / plant.reference_rms as f32;
        let x: Vec<f32> = reference.iter().map(|&v| v * scale_in).collect();
        let opts = AncOptions {
            batch_size: 4096,
            mode: AncMode::Batched,
            baseline_taps: 0,
            fxnlms_step: 0.0,
        };
        let scale_out = plant.disturbance_rms as f32;
        Ok(control_signal(net, &x, opts)?
            .into_iter()
            .map(|y| y * scale_out)
            .collect())
    }

    /// Row `index` has the model's number of values and follows `previous` by one interval.
    fn check_row(
        &self,
        index: usize,
        row: &HistoryRow,
        previous: Option<&HistoryRow>,
    ) -> Result<()> {
        let expected = self.columns.numeric.len();
        if row.values.len() != expected {
            return Err(bad_history(format!(
                "row {index}: {} values, the model reads {expected} ({})",
                row.values.len(),
                self.columns.numeric.join(", ")
            )));
        }
        let step = self.manifest.time_step_seconds;
        if let Some(previous) = previous
            && row.timestamp - previous.timestamp != step
        {
            return Err(bad_history(format!(
                "row {index} ({}) is not {step} s after the row before it ({})",
                format_time(row.timestamp),
                format_time(previous.timestamp)
            )));
        }
        Ok(())
    }

    /// What makes a row incomplete: a NaN column, or a category the model does not know.
    fn missing(&self, row: &HistoryRow) -> String {
        if let Some(c) = row.values.iter().position(|v| v.is_nan()) {
            return format!("`{}` is NaN", self.columns.numeric[c]);
        }
        match (&self.columns.categorical, &row.category) {
            (Some((column, _)), None) => format!("no `{column}`"),
            (Some((column, known)), Some(found)) => format!(
                "`{column}` = `{found}` is none of the trained categories ({})",
                known.join(", ")
            ),
            _ => "incomplete".into(),
        }
    }
}

fn bad_history(message: String) -> Error {
    Error::History(message)
}

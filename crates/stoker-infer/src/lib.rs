//! # stoker-infer — the predict stage
//!
//! Loads a checkpoint from `train/`, refuses it unless it was trained on the prepared data at
//! hand (manifest hash), runs batched inference over every test window of the window store and
//! writes `predict/`: `predictions.parquet` (timestamp, truth, prediction, persistence, in the
//! target's unit) and `metrics.json` ([`ForecastMetrics`](stoker_artifact::ForecastMetrics)).
//! An ANC checkpoint runs its controller over the whole recording instead ([`control_signal`])
//! and reports noise reduction beside the linear baselines
//! ([`AncMetrics`](stoker_artifact::AncMetrics)), with `residual.wav`, `anti_noise.wav` and
//! `spectrum.png`. With [`InputOptions`] (`--input-data`), a forecaster runs instead on new data
//! applied by prepare's apply mode and writes `forecast.parquet`: the forecasts past its end,
//! with their future timestamps ([`InputForecast`]); an ANC controller runs on the applied
//! recording and is scored on all of it.
//!
//! Principal types:
//! - [`PredictRequest`]: where the data, checkpoint and outputs are, and the device;
//! - [`Prediction`]: the metrics written, forecast or ANC;
//! - [`Error`]: what went wrong, naming the artifact (a stale checkpoint, an empty test split,
//!   a device failure, whose out-of-memory case [`predict`] handles by halving the batch);
//! - [`TrainedModel`]: for programs that embed a trained model — the artifacts opened once,
//!   then forecasts from raw rows or the control signal of a reference;
//! - [`cli`]: the stage's flags and entry point, shared by its binary and `cargo xtask`.
//! - [`export`]: a checkpoint → `export/model.safetensors` under the PyTorch peers' names and
//!   `export/model.json` (`cargo xtask export`, binary `stoker-export`).
//!
//! The controller of an ANC model over a whole signal, batched (random weights here; predict
//! loads them from a checkpoint):
//!
//! ```
//! use burn::prelude::Device;
//! use stoker_artifact::{AncSignals, MultibandAncSpec};
//! use stoker_infer::{AncMode, AncOptions, control_signal};
//! use stoker_zoo::MultibandAnc;
//!
//! let plant = AncSignals {
//!     sample_rate: 16_000,
//!     source_rate: 16_000,
//!     secondary_path: vec![0.0, 0.6, 0.2],
//!     primary_taps: 8,
//!     saturation: 0.0,
//!     reference_rms: 1.0,
//!     disturbance_rms: 1.0,
//! };
//! let spec = MultibandAncSpec { filter_taps: 9, taps: 12, hidden: 6, ..Default::default() };
//! let model = MultibandAnc::new(&spec, &plant, &Device::flex())?;
//! let reference: Vec<f32> = (0..3_000).map(|n| (n as f32 * 0.05).sin()).collect();
//! let opts = AncOptions { batch_size: 1024, mode: AncMode::Batched, baseline_taps: 16, fxnlms_step: 0.1 };
//! let y = control_signal(&model, &reference, opts)?;
//! assert_eq!(y.len(), reference.len()); // one control sample per reference sample
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A whole predict stage over the artifacts of a trained task:
//!
//! ```no_run
//! use stoker_infer::{predict, PredictRequest, Prediction};
//! use stoker_artifact::CheckpointChoice;
//! use burn::prelude::Device;
//!
//! let prediction = predict(&PredictRequest {
//!     data_dir: "artifacts/pm25-cnn2d/data".into(),
//!     train_dir: "artifacts/pm25-cnn2d/train".into(),
//!     out_dir: "artifacts/pm25-cnn2d/predict".into(),
//!     checkpoint: CheckpointChoice::Best,
//!     batch_size: 2048,
//!     device: Device::flex(),
//!     anc_mode: Default::default(),
//!     fxnlms_taps: 512,
//!     fxnlms_step: 0.1,
//!     input: None,
//! })?;
//! if let Prediction::Forecast(m) = prediction {
//!     println!("test RMSE {:.2} {}", m.rmse, m.unit);
//! }
//! # Ok::<(), stoker_infer::Error>(())
//! ```

mod ablation;
mod anc;
mod attention;
pub mod cli;
mod error;
pub mod export;
mod forecast_input;
mod loaded;
mod plot;
mod predictor;
mod stream;
mod trained;

pub use anc::{AncMode, AncOptions, control_signal};
pub use error::{Error, Result};
pub use forecast_input::{InputForecast, InputOptions};
pub use predictor::{PredictRequest, Prediction, predict};
pub use stream::{MAX_BLOCK, StreamWeights, StreamingController};
pub use trained::{ForecastValue, HistoryRow, TrainedModel};

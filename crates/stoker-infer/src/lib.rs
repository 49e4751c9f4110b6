//! # stoker-infer — the predict stage
//!
//! Loads a checkpoint from `train/`, refuses it unless it was trained on the prepared data at
//! hand (manifest hash), runs batched inference over every test window of the window store and
//! writes `predict/`: `predictions.parquet` (timestamp, truth, prediction, persistence, in the
//! target's unit) and `metrics.json` ([`ForecastMetrics`](stoker_artifact::ForecastMetrics)).
//!
//! ```no_run
//! use stoker_infer::predictor::{predict, PredictRequest, Prediction};
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
//!     per_sample: false,
//!     fxnlms_taps: 512,
//!     fxnlms_step: 0.1,
//! })?;
//! if let Prediction::Forecast(m) = prediction {
//!     println!("test RMSE {:.2} {}", m.rmse, m.unit);
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod anc;
pub mod attention;
pub mod cli;
pub mod plot;
pub mod predictor;

//! # stoker-train — the train stage
//!
//! Reads prepared data (`data/manifest.json` + the window store), trains the model a task
//! config names, and writes `train/`: `best` and `last` checkpoints (weights + metadata), the
//! per-epoch `metrics.jsonl` and `summary.json`. [`trainer::train`] is the loop;
//! [`loader`] feeds it from the memory-mapped store on a background thread.
//!
//! ```no_run
//! use stoker_train::trainer::{train, TrainRequest};
//! use stoker_artifact::TaskConfig;
//! use burn::prelude::Device;
//!
//! let summary = train(&TrainRequest {
//!     config: TaskConfig::load("configs/pm25-cnn2d.toml".as_ref())?,
//!     task: "pm25-cnn2d".into(),
//!     data_dir: "artifacts/pm25-cnn2d/data".into(),
//!     out_dir: "artifacts/pm25-cnn2d/train".into(),
//!     device: Device::flex(),
//!     device_name: "cpu".into(),
//!     resume: false,
//! })?;
//! println!("best validation loss {}", summary.best_val_loss);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod adam;
pub mod cli;
pub mod diagnosis;
pub mod loader;
pub mod monitor;
#[cfg(feature = "nvml")]
mod nvml;
pub mod progress;
pub mod resume;
pub mod step;
pub mod timing;
pub mod trainer;
pub mod tune;

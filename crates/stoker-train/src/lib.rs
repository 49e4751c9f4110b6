//! # stoker-train — the train stage
//!
//! Reads prepared data (`data/manifest.json` + the window store), trains the model a task
//! config names, and writes `train/`: `best` and `last` checkpoints (weights + metadata),
//! resumable checkpoints (`ckpt-*.bpk` + `state.json`), the per-evaluation `metrics.jsonl` and
//! `summary.json`.
//!
//! Principal types:
//! - [`TrainRequest`] → [`train`] → [`RunSummary`](stoker_artifact::RunSummary): the training
//!   loop, written out in `trainer.rs` as a `for` over epochs and batches;
//! - [`Loader`]: worker threads that gather batches from the memory-mapped store; a
//!   [`Loader::pass`] is an iterator of [`HostBatch`]es in an order fixed by (seed, epoch);
//! - [`TuneRequest`] → [`tune`]: batch sizes probed with real steps; [`sweep::run_sweep`]: a
//!   parameter grid, ranked by validation loss;
//! - [`Team`] → [`train_in`]: the same loop as one rank of a data-parallel MPI job (feature
//!   `mpi`; `docs/DISTRIBUTED.md`);
//! - [`Error`]: what went wrong, naming the file, setting or device.
//!
//! [`cli`] holds the command lines of the `stoker-train` binary and `cargo xtask train|tune`.
//!
//! ```no_run
//! use burn::prelude::Device;
//! use stoker_artifact::TaskConfig;
//! use stoker_train::{TrainRequest, train};
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
//! # Ok::<(), stoker_train::Error>(())
//! ```
//!
//! For benchmarks and device comparisons, the parts of a step are public too: [`optimizer`]
//! (the trainer's Adam) and [`batch_gradients`] (a batch's loss and gradients).
//!
//! ```
//! use stoker_train::epoch_order;
//!
//! // Every epoch visits every window once, in an order fixed by (seed, epoch).
//! let windows: Vec<usize> = (0..100).collect();
//! let order = epoch_order(&windows, 42, 1);
//! assert_eq!(order, epoch_order(&windows, 42, 1));
//! assert_ne!(order, epoch_order(&windows, 42, 2));
//! ```

mod adam;
mod allreduce;
mod checkpoints;
pub mod cli;
mod clock;
mod diagnosis;
mod error;
mod evaluator;
mod loader;
mod monitor;
#[cfg(feature = "nvml")]
mod nvml;
mod progress;
mod step;
mod step_log;
mod summary;
pub mod sweep;
mod team;
#[cfg(test)]
mod testing;
mod trainer;
mod tune;
mod validation;

pub use adam::optimizer;
pub use error::{BoxError, Error, Result};
pub use loader::{HostBatch, Loader, Pass, epoch_order};
pub use step::batch_gradients;
pub use team::{MPI, Team, mpirun};
pub use trainer::{TrainRequest, train, train_in};
pub use tune::{Probe, TuneReport, TuneRequest, tune};

//! # stoker-data — the prepare stage
//!
//! Turns a raw file into what training memory-maps: [`prepare`] streams the input through gap
//! filling into zstd Parquet shards while fitting normalisation on the train split, then
//! writes the normalised window store and the [`DatasetManifest`](stoker_artifact::DatasetManifest)
//! (formats in `stoker-artifact`). Memory is bounded by the shard size, not the input. An
//! active-noise-control source reads a WAV recording and the acoustic paths' impulse
//! responses and shares the shards, window store and manifest machinery.
//!
//! Principal types:
//! - [`PrepareRequest`]: the task config, the input file and the `data/` directory to write;
//! - [`ApplyRequest`] / [`apply`]: prepare's apply mode: a new file read, checked, gap-filled and
//!   normalised exactly as the training data was (its manifest decides), into a window store and
//!   an [`InputManifest`](stoker_artifact::InputManifest) that predict forecasts from;
//! - [`Error`]: what went wrong, naming the file and the line, column or sample;
//! - [`SyntheticSpec`]: the embedded synthetic PM2.5 series ([`write_pm25_csv`]), the default
//!   job's data; [`write_synthetic_anc`] writes a small ANC setup;
//! - [`cli`]: the stage's flags and entry points, shared by its binary and `cargo xtask`.
//!
//! ```
//! use stoker_artifact::TaskConfig;
//! use stoker_data::{PrepareRequest, SyntheticSpec, prepare, write_pm25_csv};
//!
//! let dir = tempfile::tempdir()?;
//! let csv = dir.path().join("pm25.csv");
//! let spec = SyntheticSpec { start_year: 2010, years: 3, seed: 1 };
//! assert_eq!(write_pm25_csv(&csv, &spec)?, 26_304);
//! let config = dir.path().join("task.toml");
//! std::fs::write(&config, r#"
//! [data]
//! input_len = 24
//! source = { kind = "pm25", val_start_year = 2011, test_start_year = 2012 }
//! [model]
//! kind = "cnn2d"
//! "#)?;
//! let manifest = prepare(&PrepareRequest {
//!     config: TaskConfig::load(&config)?,
//!     input: csv,
//!     out_dir: dir.path().join("data"),
//! })?;
//! assert_eq!(manifest.rows, 26_304);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod anc;
mod apply;
pub mod cli;
mod error;
mod ett;
mod finish;
mod gapfill;
mod impulse;
mod pm25;
mod prepare;
mod request;
mod resample;
mod shards;
mod source;
mod stats;
mod synthetic;
mod wav;

pub use apply::{Applied, ApplyRequest, apply};
pub use error::{Error, Result};
pub use impulse::read_impulse_response;
pub use prepare::prepare;
pub use request::PrepareRequest;
pub use synthetic::{
    ANC_NOISE_WAV, ANC_PRIMARY_CSV, ANC_SECONDARY_CSV, SyntheticSpec, write_pm25_csv,
    write_pm25_hours, write_synthetic_anc,
};

//! # stoker-data — the prepare stage
//!
//! Turns a raw file into what training memory-maps: [`prepare::prepare`] streams the input
//! through gap filling ([`gapfill`]) into zstd Parquet shards ([`shards`]) while fitting
//! normalisation on the train split ([`stats`]), then writes the normalised window store and
//! the manifest (formats in `stoker-artifact`). Memory is bounded by the shard size, not the
//! input. [`synthetic`] generates the embedded default data set.
//!
//! An active-noise-control source ([`anc`]) reads a WAV recording ([`wav`], resampled by
//! [`resample`]) and the acoustic paths' impulse responses ([`impulse`]) and shares the
//! shards, window store and manifest machinery.
//!
//! ```no_run
//! use stoker_data::prepare::{prepare, PrepareRequest};
//! use stoker_artifact::TaskConfig;
//!
//! let config = TaskConfig::load("configs/pm25-cnn2d.toml".as_ref())?;
//! let manifest = prepare(&PrepareRequest {
//!     config,
//!     input: "../shared/datasets/PRSA_data_2010.1.1-2014.12.31.csv".into(),
//!     out_dir: "artifacts/pm25-cnn2d/data".into(),
//! })?;
//! println!("{} rows, {} features", manifest.rows, manifest.features.len());
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod anc;
pub mod cli;
pub mod ett;
pub mod gapfill;
pub mod impulse;
pub mod pm25;
pub mod prepare;
pub mod resample;
pub mod shards;
pub mod source;
pub mod stats;
pub mod synthetic;
pub mod wav;

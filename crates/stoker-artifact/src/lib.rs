//! # stoker-artifact
//!
//! The on-disk contracts between stoker's stages, and nothing else. Stages never call each
//! other: prepare writes a [`DatasetManifest`] and a [`WindowStore`], train reads them and
//! writes checkpoints ([`CheckpointMeta`]) and a [`RunSummary`], predict reads those and writes
//! [`ForecastMetrics`]. Every writer goes through [`atomic`], so an artifact is whole or absent.
//!
//! ```
//! use stoker_artifact::{WindowSpec, WindowStore, WindowStoreWriter, INPUT_OK, TARGET_OK};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("windows.bin");
//! let mut writer = WindowStoreWriter::create(&path, 2)?;
//! for t in 0..5 {
//!     writer.push_row(&[t as f32, 0.5], t * 3600, INPUT_OK | TARGET_OK)?;
//! }
//! writer.finish()?;
//!
//! let store = WindowStore::open(&path)?;
//! let spec = WindowSpec { input_len: 2, horizon: 1, output_len: 1, stride: 1 };
//! assert_eq!(store.window_starts(spec, 0..5), vec![0, 1, 2]);
//! assert_eq!(store.window(1, spec), &[1.0, 0.5, 2.0, 0.5]); // borrowed from the map
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod atomic;
pub mod config;
pub mod diff;
pub mod encode;
pub mod error;
pub mod export;
pub mod family;
pub mod identity;
pub mod input;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod model;
pub mod prepared;
pub mod run;
pub mod table;
pub mod window_store;

pub use config::{
    AncSourceConfig, CheckpointChoice, DataConfig, Interval, IntervalUnit, LossKind, Precision,
    SourceConfig, TaskConfig, TrainConfig,
};
pub use error::{ArtifactError, Result};
pub use export::{ExportMeta, NamedTensor};
pub use family::TaskFamily;
pub use identity::RunIdentity;
pub use input::{AppliedInput, InputManifest};
pub use layout::ArtifactLayout;
pub use lock::RunLock;
pub use manifest::{
    AncSignals, DatasetManifest, Feature, FeatureKind, MetricScale, Split, Splits, WindowSpec,
};
pub use model::{Cnn2dSpec, LstmAttentionSpec, ModelSpec, MultibandAncSpec};
pub use prepared::PreparedData;
pub use run::{
    AncMetrics, BandNr, CheckpointMeta, DistributedSummary, EpochRecord, ForecastMetrics,
    RunSummary, StepRecord, StreamTiming,
};
pub use window_store::{INPUT_OK, TARGET_OK, WindowStore, WindowStoreWriter};

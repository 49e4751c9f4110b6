//! Where each stage reads and writes under an artifacts directory: [`ArtifactLayout`] names
//! every directory and file, so no stage, binary or tool joins artifact paths by hand.

use std::path::{Path, PathBuf};

use crate::config::TaskConfig;
use crate::manifest::MANIFEST_FILE;

/// The directory that holds one directory per task unless `--artifacts` says otherwise.
pub const DEFAULT_ROOT: &str = "artifacts";

/// `artifacts/<task>/` with `data/`, `train/` and `predict/` below it.
///
/// ```
/// use std::path::Path;
/// use stoker_artifact::ArtifactLayout;
///
/// let layout = ArtifactLayout::for_config(Path::new("configs/demo.toml"), None);
/// assert_eq!(layout.root(), Path::new("artifacts/demo"));
/// assert_eq!(layout.predict_metrics(), Path::new("artifacts/demo/predict/metrics.json"));
/// let moved = ArtifactLayout::for_config(Path::new("configs/demo.toml"), Some(Path::new("/tmp/a")));
/// assert_eq!(moved.summary(), Path::new("/tmp/a/train/summary.json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLayout {
    root: PathBuf,
}

impl ArtifactLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default for a task: `artifacts/<task>/`, relative to the working directory.
    pub fn for_task(task: &str) -> Self {
        Self::new(Path::new(DEFAULT_ROOT).join(task))
    }

    /// The layout of the task `config` describes: `artifacts` when given (the `--artifacts`
    /// flag), else `artifacts/<config file stem>/`.
    pub fn for_config(config: &Path, artifacts: Option<&Path>) -> Self {
        match artifacts {
            Some(dir) => Self::new(dir),
            None => Self::for_task(&TaskConfig::name_of(config)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Prepare's output: the manifest, the Parquet shards and the window store.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Train's output: checkpoints, the metrics log and the run summary.
    pub fn train_dir(&self) -> PathBuf {
        self.root.join("train")
    }

    /// Predict's output: predictions and their metrics.
    pub fn predict_dir(&self) -> PathBuf {
        self.root.join("predict")
    }

    /// A new file applied to the trained model (prepare's apply mode), which predict reads
    /// with `--input-data`.
    pub fn input_dir(&self) -> PathBuf {
        self.root.join("input")
    }

    /// Export's output: the weights under PyTorch's names and their description.
    pub fn export_dir(&self) -> PathBuf {
        self.root.join("export")
    }

    pub fn manifest(&self) -> PathBuf {
        self.data_dir().join(MANIFEST_FILE)
    }

    pub fn store(&self) -> PathBuf {
        self.data_dir().join(STORE_FILE)
    }

    pub fn metrics_log(&self) -> PathBuf {
        self.train_dir().join(METRICS_LOG_FILE)
    }

    pub fn summary(&self) -> PathBuf {
        self.train_dir().join(SUMMARY_FILE)
    }

    pub fn predictions(&self) -> PathBuf {
        self.predict_dir().join(PREDICTIONS_FILE)
    }

    pub fn predict_metrics(&self) -> PathBuf {
        self.predict_dir().join(PREDICT_METRICS_FILE)
    }
}

pub const STORE_FILE: &str = "windows.bin";
pub const METRICS_LOG_FILE: &str = "metrics.jsonl";
/// Every step's training loss, when `train.log_steps` is on.
pub const STEP_LOG_FILE: &str = "steps.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const PREDICT_METRICS_FILE: &str = "metrics.json";
/// Predict on applied input: forecasts past the input's end (and the same as CSV with `--csv`).
pub const FORECAST_FILE: &str = "forecast.parquet";
pub const FORECAST_CSV_FILE: &str = "forecast.csv";

/// Checkpoint names inside `train/`: `<name>.json` (metadata) beside `<name>.bpk` (weights).
pub const BEST_CHECKPOINT: &str = "best";
pub const LAST_CHECKPOINT: &str = "last";

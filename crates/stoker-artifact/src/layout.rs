//! Where each stage reads and writes under an artifacts directory.

use std::path::{Path, PathBuf};

/// `artifacts/<task>/` with `data/`, `train/` and `predict/` below it.
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
        Self::new(Path::new("artifacts").join(task))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn train_dir(&self) -> PathBuf {
        self.root.join("train")
    }

    pub fn predict_dir(&self) -> PathBuf {
        self.root.join("predict")
    }
}

pub const STORE_FILE: &str = "windows.bin";
pub const METRICS_LOG_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const PREDICT_METRICS_FILE: &str = "metrics.json";

/// Checkpoint names inside `train/`: `<name>.json` (metadata) beside `<name>.bpk` (weights).
pub const BEST_CHECKPOINT: &str = "best";
pub const LAST_CHECKPOINT: &str = "last";

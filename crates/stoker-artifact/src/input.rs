//! New data applied to a trained model (`<artifacts>/input/`): the file's rows, normalised with
//! the training data's train statistics, in a window store, and a small manifest that ties them
//! to the prepared data they must match. Prepare's apply mode writes it; predict reads it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::error::{ArtifactError, Result};
use crate::layout::STORE_FILE;
use crate::manifest::{
    AncSignals, DatasetManifest, Feature, MANIFEST_FILE, MetricScale, SourceFile,
};
use crate::prepared::{check_file_name, check_targets, open_store};
use crate::window_store::WindowStore;

pub const INPUT_MANIFEST_VERSION: u32 = 1;

/// `input/manifest.json`. Every row forms one split; the columns, targets and statistics are
/// copies of the training manifest's, so predict needs nothing else to read the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputManifest {
    pub format_version: u32,
    /// The file applied, with its hash.
    pub source: SourceFile,
    /// Source kind of the reader that read it (as the training manifest's).
    pub source_kind: String,
    /// SHA-256 of the training `manifest.json`: a checkpoint trained on other data is refused.
    pub training_manifest_sha256: String,
    pub features: Vec<Feature>,
    pub targets: Vec<usize>,
    pub target_unit: String,
    pub metric_scale: MetricScale,
    pub time_step_seconds: i64,
    pub rows: usize,
    pub store_file: String,
    /// Columns of the file the model was not trained on (ignored).
    pub ignored_columns: Vec<String>,
    /// Missing cells per trained column before gap filling, and the cells filled.
    pub missing_cells: Vec<(String, usize)>,
    pub interpolated_cells: usize,
    /// ANC: the plant of the training data with the applied recording's own source rate
    /// (store columns x and d, d = primary * x, both divided by the train RMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anc: Option<AncSignals>,
}

impl InputManifest {
    /// The manifest of `rows` rows of `source` applied with `training` (whose `manifest.json`
    /// hashes to `training_manifest_sha256`): its columns, targets and statistics, in a store
    /// named as prepare names it; no ignored or missing columns, no plant.
    pub fn applied(
        training: &DatasetManifest,
        training_manifest_sha256: String,
        source: SourceFile,
        rows: usize,
    ) -> Self {
        Self {
            format_version: INPUT_MANIFEST_VERSION,
            source,
            source_kind: training.source_kind.clone(),
            training_manifest_sha256,
            features: training.features.clone(),
            targets: training.targets.clone(),
            target_unit: training.target_unit.clone(),
            metric_scale: training.metric_scale,
            time_step_seconds: training.time_step_seconds,
            rows,
            store_file: STORE_FILE.into(),
            ignored_columns: Vec::new(),
            missing_cells: Vec::new(),
            interpolated_cells: 0,
            anc: None,
        }
    }

    pub fn load(dir: &Path) -> Result<Self> {
        atomic::read_versioned_json(&dir.join(MANIFEST_FILE), INPUT_MANIFEST_VERSION)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        atomic::write_json(&dir.join(MANIFEST_FILE), self)
    }

    /// The applied file, as the errors about its rows name it.
    pub fn file(&self) -> &Path {
        Path::new(&self.source.path)
    }

    pub fn target_features(&self) -> impl Iterator<Item = &Feature> {
        self.targets.iter().map(|&i| &self.features[i])
    }
}

/// An applied input as predict opens it: the manifest and its window store, checked against
/// each other.
pub struct AppliedInput {
    pub dir: PathBuf,
    pub manifest: InputManifest,
    pub store: WindowStore,
}

impl AppliedInput {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(ArtifactError::invalid(
                &manifest_path,
                "not found: apply a file first (stoker-data apply --data DIR --input FILE --out DIR)",
            ));
        }
        let manifest = InputManifest::load(dir)?;
        check_targets(&manifest_path, &manifest.targets, manifest.features.len())?;
        check_file_name(&manifest_path, "store_file", &manifest.store_file)?;
        let store = open_store(
            &dir.join(&manifest.store_file),
            manifest.rows,
            manifest.features.len(),
            "apply the file again",
        )?;
        Ok(Self {
            dir: dir.into(),
            manifest,
            store,
        })
    }
}

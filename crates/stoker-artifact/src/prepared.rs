//! Prepared data as train and predict open it: the manifest and its window store, checked
//! against each other.

use std::path::{Path, PathBuf};

use crate::error::{ArtifactError, Result};
use crate::manifest::{DatasetManifest, MANIFEST_FILE, Split, WindowSpec, sha256_file};
use crate::window_store::WindowStore;

pub struct PreparedData {
    pub dir: PathBuf,
    pub manifest: DatasetManifest,
    /// SHA-256 of `manifest.json`: checkpoints record it so weights meet only their own data.
    pub manifest_sha256: String,
    pub store: WindowStore,
}

impl PreparedData {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(ArtifactError::invalid(
                &manifest_path,
                "not found: run the prepare stage first (cargo xtask prepare --config …)",
            ));
        }
        let manifest = DatasetManifest::load(dir)?;
        check_targets(&manifest_path, &manifest.targets, manifest.features.len())?;
        let (manifest_sha256, _) = sha256_file(&manifest_path)?;
        let store = WindowStore::open(&dir.join(&manifest.store_file))?;
        if store.cols() != manifest.features.len() || store.rows() != manifest.rows {
            return Err(ArtifactError::invalid(
                store.path(),
                format!(
                    "holds {} rows × {} cols but the manifest says {} × {}: re-run prepare",
                    store.rows(),
                    store.cols(),
                    manifest.rows,
                    manifest.features.len()
                ),
            ));
        }
        Ok(Self {
            dir: dir.into(),
            manifest,
            manifest_sha256,
            store,
        })
    }

    /// Starts of the usable windows of `split` for `spec`, in time order. Any window spec
    /// works on the same prepared data: validity comes from the store's row flags.
    pub fn windows(&self, split: Split, spec: WindowSpec) -> Vec<usize> {
        self.store
            .window_starts(spec, self.manifest.splits.rows(split))
    }
}

/// Target indices name columns: every one must exist, or the models would index past the
/// store's rows. `file` is the metadata that holds them.
pub fn check_targets(file: &Path, targets: &[usize], columns: usize) -> Result<()> {
    if targets.is_empty() {
        return Err(ArtifactError::invalid(file, "`targets` is empty"));
    }
    match targets.iter().find(|&&t| t >= columns) {
        Some(t) => Err(ArtifactError::invalid(
            file,
            format!(
                "target column {t} does not exist: there are {columns} columns (0…{})",
                columns.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}
